"""Read a file only if nobody but root can have written it.

The file must be a regular file owned by root and not writable by group or others, and
so must every directory met on the way to it, including the directories that hold the
symbolic links followed on the way (a link in a writable directory could be swapped).

The path is walked one component at a time with ``openat``-style calls: each directory
is opened with ``O_NOFOLLOW`` relative to the already checked parent, checked with
``fstat`` on that descriptor, and the file itself is opened the same way and checked with
``fstat`` on the descriptor it is then read from. Nothing is checked by name and then
opened again by name, so a rename or a swapped symlink between check and use cannot
slip an untrusted file in.
"""

import os
import stat

MAX_BYTES = 1 << 20
# Same limit as the kernel's (MAXSYMLINKS on Linux).
_MAX_SYMLINKS = 40
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO that slipped in must not hang the login.
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK


class TrustError(Exception):
    """A file or directory that someone other than root could have written."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path} is {reason}")
        self.path = path
        self.reason = reason


def read_trusted(path: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES) -> bytes:
    """Return the contents of ``path`` if root owns it and every directory leading to it.

    Raises :class:`TrustError` naming the offending path and why (``owned by uid 1001``,
    ``writable by group``, ``not a regular file``, ``larger than ...``), and ``OSError``
    (``FileNotFoundError`` for a missing file) when the path cannot be opened at all.
    """
    fd = _open_trusted(os.fspath(path))
    try:
        chunks = []
        size = 0
        while size <= max_bytes and (chunk := os.read(fd, 65536)):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > max_bytes:
        raise TrustError(os.fspath(path), f"larger than {max_bytes} bytes")
    return b"".join(chunks)


def _components(path: str) -> list[str]:
    """The names in ``path``, reversed so that ``pop()`` yields them in order."""
    return [name for name in reversed(path.split("/")) if name not in ("", ".")]


def _open_trusted(path: str) -> int:
    """Walk ``path`` from ``/``, checking each step; return an fd of the trusted file."""
    if not path.startswith("/"):
        path = os.path.join(os.getcwd(), path)
    pending = _components(path)
    dirs = [(_open_dir("/", "/", None), "/")]
    links = 0
    try:
        while pending:
            name = pending.pop()
            if name == "..":
                if len(dirs) > 1:
                    os.close(dirs.pop()[0])
                continue
            parent_fd, parent = dirs[-1]
            here = os.path.join(parent, name)
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_SYMLINKS:
                    raise TrustError(path, "a chain of too many symbolic links")
                target = os.readlink(name, dir_fd=parent_fd)
                if target.startswith("/"):
                    while len(dirs) > 1:
                        os.close(dirs.pop()[0])
                pending.extend(_components(target))
            elif pending:
                dirs.append((_open_dir(name, here, parent_fd), here))
            else:
                return _open_file(name, here, parent_fd, st)
        raise TrustError(path, "a directory, not a regular file")
    finally:
        for fd, _ in dirs:
            os.close(fd)


def _open_dir(name: str, here: str, parent_fd: int | None) -> int:
    fd = os.open(name, _OPEN_DIR, dir_fd=parent_fd)
    try:
        _check_writers(os.fstat(fd), here)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_file(name: str, here: str, parent_fd: int, st: os.stat_result) -> int:
    # Checked before opening too: opening a device can have side effects.
    _check_regular(st, here)
    fd = os.open(name, _OPEN_FILE, dir_fd=parent_fd)
    try:
        st = os.fstat(fd)
        _check_regular(st, here)
        _check_writers(st, here)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_regular(st: os.stat_result, path: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a special file"
        raise TrustError(path, f"{kind}, not a regular file")


def _check_writers(st: os.stat_result, path: str) -> None:
    if st.st_uid != 0:
        raise TrustError(path, f"owned by uid {st.st_uid}, not root")
    writers = [who for bit, who in ((stat.S_IWGRP, "group"), (stat.S_IWOTH, "others"))
               if st.st_mode & bit]
    if writers:
        raise TrustError(path, "writable by " + " and ".join(writers))
