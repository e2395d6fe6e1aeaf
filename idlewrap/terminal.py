"""The user's terminal: raw mode, non-blocking I/O, window size."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct
import termios
import time
import tty
from collections.abc import Iterator

DRAWING_SIZE = (24, 80)  # what the warning assumes when the terminal says 0x0 or has no size


def get_size(fd: int) -> tuple[int, int]:
    """(rows, cols) of the terminal on `fd`, as it reports them (0x0 included).

    Passed on to the program unchanged: some clients and automation report 0x0, and
    the program must see what it would see without idlewrap. (0, 0) when `fd` is no
    terminal.
    """
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return 0, 0
    return rows, cols


def drawing_size(fd: int) -> tuple[int, int]:
    """(rows, cols) to draw in: the terminal's size, or 24x80 where it reports none."""
    rows, cols = get_size(fd)
    return (rows, cols) if rows and cols else DRAWING_SIZE


def set_size(fd: int, rows: int, cols: int) -> None:
    """Give the pty on `fd` a window size; the kernel sends SIGWINCH to its foreground group."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def write_all(fd: int, data: bytes, timeout: float) -> bytes:
    """Write `data` to a (non-blocking) `fd`, waiting for room for up to `timeout` seconds.

    Returns what could not be written in time (b"" when all of it was), so a client
    that stopped reading never holds the caller longer than `timeout`. Errors other
    than EAGAIN are raised.
    """
    end = time.monotonic() + timeout
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            left = end - time.monotonic()
            if left <= 0:
                break
            select.select([], [fd], [], left)
    return bytes(view)


def set_nonblocking(fd: int) -> int:
    """Make `fd` non-blocking and return its previous flags (for `restore_flags`)."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    return flags


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Raw mode on the terminal `fd`, restored on every way out.

    The user's terminal must pass every byte (Ctrl-C, Ctrl-Z, ...) to the inner
    pty, whose own line discipline then does what the user's would have done.
    """
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def nonblocking(*fds: int) -> Iterator[None]:
    """O_NONBLOCK on `fds` (file descriptions shared with sshd), restored afterwards."""
    saved = [(fd, set_nonblocking(fd)) for fd in fds]
    try:
        yield
    finally:
        for fd, flags in saved:
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)
