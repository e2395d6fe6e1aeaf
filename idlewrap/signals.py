"""Signals as events in the relay's poll loop, scoped to the session.

A Python-level handler only has to exist; `signal.set_wakeup_fd` writes each signal's
number to a non-blocking pipe that the loop polls with everything else, so the loop
acts on signals between two polls, never inside a handler. Like asciinema's
`SignalFD`, `SignalWakeup` is a context manager: on every way out it puts back the
old wakeup fd and every handler it replaced.
"""

from __future__ import annotations

import contextlib
import os
import signal
from types import FrameType, TracebackType

# The ones that end a session: the user's own kill(1) included, and SIGHUP (the
# client went away). The loop decides what each means.
ENDING = (
    signal.SIGHUP,
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
)
# `idlewrap lock` asks the wrapper of its session for the lock with this one: a
# real-time signal, which nothing sends by accident (and not one of ENDING).
LOCK = signal.SIGRTMIN + 11
# Job control aimed at the wrapper would stop it while the session runs on: ignored.
IGNORED = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
WATCHED = (signal.SIGCHLD, signal.SIGWINCH, signal.SIGCONT, LOCK, *ENDING)

_Handler = signal.Handlers | int | None | object


class SignalWakeup:
    """Route `WATCHED` signals to a pipe the loop polls; ignore `IGNORED`."""

    def __init__(self) -> None:
        self._saved: dict[int, _Handler] = {}
        self._saved_fd = -1
        self._read = self._write = -1

    def __enter__(self) -> SignalWakeup:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            for signum in WATCHED:
                self._saved[signum] = signal.signal(signum, _wake_only)
            for signum in IGNORED:
                self._saved[signum] = signal.signal(signum, signal.SIG_IGN)
            self._saved_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._restore()

    def fileno(self) -> int:
        """The fd to poll for POLLIN."""
        return self._read

    def received(self) -> list[int]:
        """The signals that arrived since the last call, once each, in arrival order."""
        try:
            numbers = os.read(self._read, 256)
        except BlockingIOError:
            return []
        return list(dict.fromkeys(numbers))

    def ignore_ending(self) -> None:
        """From now on the ending signals do nothing.

        Called once the session is over and its end is logged: a SIGTERM or SIGHUP
        during the goodbye and the teardown must not cut the teardown short (that
        would leave processes behind); the wrapper exits right after it anyway.
        """
        for signum in ENDING:
            signal.signal(signum, signal.SIG_IGN)

    def _restore(self) -> None:
        if self._write >= 0:
            signal.set_wakeup_fd(self._saved_fd)
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._saved.clear()
        for fd in (self._read, self._write):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._read = self._write = -1


def _wake_only(signum: int, frame: FrameType | None) -> None:
    """set_wakeup_fd needs a Python handler to exist; the loop does the work."""
