"""The idle deadline: the one place that knows when a session expires, and its clock.

Only bytes the input classifier calls user activity move it (`IdleGuard` calls
`touch`). Time comes from CLOCK_BOOTTIME: wall-clock changes do not move it, and
time spent suspended counts as idle time. The relay sleeps on an `Alarm` on the
same clock, so a machine that resumes after the deadline ends the session at once
instead of when poll's own (monotonic, suspend-blind) timeout would have run out.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import time

from idlewrap.libc import errno, libc, one_shot

TYPE_CHECKING = False  # not typing's: a session never imports typing (records.py)
if TYPE_CHECKING:
    from collections.abc import Callable

CLOCK = time.CLOCK_BOOTTIME

_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_TIMER_ABSTIME = 1


# Seconds on the clock every idle decision uses. clock_gettime itself, bound to CLOCK,
# not a Python function around it: the relay reads it at every key.
now: Callable[[], float] = functools.partial(time.clock_gettime, CLOCK)


class IdleDeadline:
    """When the session is warned and when it expires, given the last user input."""

    def __init__(self, idle_timeout: float, warn_before: float, start: float) -> None:
        self.idle_timeout = idle_timeout
        self.warn_before = warn_before
        self.last_input = start

    def touch(self, at: float) -> None:
        """The user acted at `at`: the deadline starts over."""
        self.last_input = at

    @property
    def expires_at(self) -> float:
        """When the session ends unless the user acts first."""
        return self.last_input + self.idle_timeout

    @property
    def warn_at(self) -> float:
        """When the warning goes up."""
        return self.expires_at - self.warn_before

    def idle_for(self, at: float) -> float:
        """Seconds without user input at `at`."""
        return at - self.last_input


class Alarm:
    """A timerfd on `CLOCK`: readable once the time it was set to has come.

    Set to an absolute time, so a suspend that outlasts it makes it readable at
    resume. Poll its `fileno()` with the other fds; `clear()` after it fired.
    """

    def __init__(self) -> None:
        fd = libc.timerfd_create(CLOCK, _TFD_CLOEXEC | _TFD_NONBLOCK)
        if fd < 0:
            raise OSError(errno(), "timerfd_create failed")
        self._fd = int(fd)
        self.at: float | None = None

    def fileno(self) -> int:
        """The fd to poll for POLLIN."""
        return self._fd

    def set(self, at: float | None) -> None:
        """Fire at `at` on `CLOCK` (a time already past fires at once); None disarms."""
        if at == self.at:
            return
        self.at = at
        spec = one_shot(at)
        if libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None):
            raise OSError(errno(), "timerfd_settime failed")

    def clear(self) -> None:
        """Consume the expiry so poll stops reporting it; the alarm is then unset."""
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)
        self.at = None

    def close(self) -> None:
        """Release the fd."""
        os.close(self._fd)

    def __enter__(self) -> Alarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
