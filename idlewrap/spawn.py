"""Start the user's program in a session of its own: on a new pty, or on pipes.

`posix_spawn` rather than fork: no Python runs in the child, and glibc does
setsid() before the file actions, so opening the pty slave by name makes it the
child's controlling terminal. Signal dispositions are reset to defaults, since
Python ignores SIGPIPE and SIGXFSZ and `yes | head -1` would then say "Broken pipe".
"""

from __future__ import annotations

import os
import signal
import termios

from idlewrap.hardening import drop_subreaper
from idlewrap.records import NamedTuple
from idlewrap.terminal import set_size

TYPE_CHECKING = False  # not typing's: a session never imports typing (records.py)
if TYPE_CHECKING:
    from typing import Any

_DEFAULT_SIGNALS = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}


class Child(NamedTuple):
    """A started program: its pid and the wrapper's end of its input (and output, on a pty)."""

    pid: int
    fd: int
    pty: bool


def spawn_in_pty(
    path: str, argv: list[str], env: dict[str, str], size: tuple[int, int], attrs: list[Any]
) -> Child:
    """Run `path` as the session leader of a new pty of `size` (rows, cols).

    `attrs` (termios.tcgetattr) are the user's terminal settings: the program must see
    the erase and interrupt keys, flags and speed the client sent, not a fresh pty's.
    """
    master, slave = os.openpty()
    try:
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        set_size(slave, *size)
        slave_name = os.ttyname(slave)
        pid = _spawn_session(
            path,
            argv,
            env,
            [
                (os.POSIX_SPAWN_OPEN, 0, slave_name, os.O_RDWR, 0),
                (os.POSIX_SPAWN_DUP2, 0, 1),
                (os.POSIX_SPAWN_DUP2, 0, 2),
            ],
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return Child(pid=pid, fd=master, pty=True)


def spawn_on_pipe(path: str, argv: list[str], env: dict[str, str]) -> Child:
    """Run `path` in a new session reading a pipe; its output goes straight to ours."""
    read_end, write_end = os.pipe()
    try:
        pid = _spawn_session(path, argv, env, [(os.POSIX_SPAWN_DUP2, read_end, 0)])
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return Child(pid=pid, fd=write_end, pty=False)


def spawn_without_terminal(path: str, argv: list[str], env: dict[str, str]) -> int:
    """Run `path` in a new session with no controlling terminal, keeping our fds 0-2; its pid."""
    return _spawn_session(path, argv, env, [])


class PipedChild(NamedTuple):
    """A command started on three pipes: its pid and the wrapper's ends of them."""

    pid: int
    stdin: int  # the wrapper writes here
    stdout: int  # and reads these
    stderr: int


def spawn_on_pipes(path: str, argv: list[str], env: dict[str, str]) -> PipedChild:
    """Run `path` in a new session on three fresh pipes (a command without a pty).

    As sshd does for such a command (setsid, pipes for fds 0, 1 and 2): the wrapper
    then relays each stream and sees every byte move. All ends are close-on-exec, so
    the child holds only its own (posix_spawn's dup2 clears the flag on fds 0-2).
    """
    fds: list[int] = []
    try:
        for _ in range(3):
            fds.extend(os.pipe2(os.O_CLOEXEC))
        in_r, in_w, out_r, out_w, err_r, err_w = fds
        pid = _spawn_session(path, argv, env, [
            (os.POSIX_SPAWN_DUP2, in_r, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
        ])
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    return PipedChild(pid=pid, stdin=in_w, stdout=out_r, stderr=err_r)


def _spawn_session(
    path: str, argv: list[str], env: dict[str, str], file_actions: list[tuple[int | str, ...]]
) -> int:
    """posix_spawn into a new session, with default signal handling and nothing blocked."""
    return os.posix_spawn(
        path,
        argv,
        env,
        file_actions=file_actions,
        setsid=True,
        setsigmask=(),
        setsigdef=_DEFAULT_SIGNALS,
    )


def reap_children(pid: int) -> int | None:
    """Collect every exited child (orphans too: the wrapper is their subreaper).

    Returns the wait status of `pid` if it is among them. Never `waitpid(pid)` alone:
    orphans would stay zombies until the end of the session.
    """
    found = None
    while True:
        try:
            child, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if child == 0:
            return found
        if child == pid:
            found = status


def exec_replacing(path: str, argv: list[str], env: dict[str, str]) -> None:
    """Become the program (command mode): the byte stream is then sshd's and the program's alone.

    What the wrapper set for itself and execve keeps goes back to what a program
    expects: default SIGPIPE and SIGXFSZ, and no child subreaper flag.
    """
    drop_subreaper()
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_DFL)
    os.execve(path, argv, env)
