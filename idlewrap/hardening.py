"""What keeps the user (who owns the wrapper process) from switching it off.

- Not dumpable: no ptrace, no /proc/PID/mem or environ for the same uid.
- Child subreaper: orphaned descendants stay below the wrapper, so teardown finds them.
  A command session execs the program instead, which must not inherit the flag
  (`drop_subreaper`): it would collect every orphan below it as a zombie it never waits for.
- Dead man's switch: a kernel timer that SIGKILLs the wrapper a little after the
  idle deadline. The wrapper re-arms it while it runs; if it is stopped (SIGSTOP
  cannot be caught) it cannot, the timer fires, the pty master closes and the
  kernel hangs up the session. A stopped wrapper thus ends the session, not frees it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time

_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_SIGEV_SIGNAL = 0

_libc = ctypes.CDLL(None, use_errno=True)


class HardeningError(Exception):
    """The kernel refused a protection the wrapper will not run without."""


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise HardeningError(f"prctl({option}) failed: {os.strerror(errno)}")


def protect_process() -> None:
    """Make this process non-dumpable and a subreaper for its descendants."""
    _prctl(_PR_SET_DUMPABLE, 0)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def drop_subreaper() -> None:
    """Stop collecting orphaned descendants (before exec: the kernel keeps the flag)."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 0)


class _SigEvent(ctypes.Structure):
    _fields_ = (
        ("sigev_value", ctypes.c_void_p),
        ("sigev_signo", ctypes.c_int),
        ("sigev_notify", ctypes.c_int),
        ("_pad", ctypes.c_int * 12),
    )


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _ITimerSpec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


class DeadMansSwitch:
    """A CLOCK_BOOTTIME timer whose expiry SIGKILLs this process."""

    def __init__(self) -> None:
        event = _SigEvent(sigev_signo=signal.SIGKILL, sigev_notify=_SIGEV_SIGNAL)
        self._timer = ctypes.c_void_p()
        if _libc.timer_create(time.CLOCK_BOOTTIME, ctypes.byref(event), ctypes.byref(self._timer)):
            raise HardeningError(f"timer_create failed: {os.strerror(ctypes.get_errno())}")

    def arm(self, seconds: float) -> None:
        """Fire in `seconds` (replacing any earlier arming)."""
        seconds = max(seconds, 0.001)
        value = _Timespec(int(seconds), int((seconds % 1) * 1e9))
        spec = _ITimerSpec(it_interval=_Timespec(0, 0), it_value=value)
        if _libc.timer_settime(self._timer, 0, ctypes.byref(spec), None):
            raise HardeningError(f"timer_settime failed: {os.strerror(ctypes.get_errno())}")

    def disarm(self) -> None:
        """Never fire (teardown has begun, or the session is exempt)."""
        spec = _ITimerSpec()
        _libc.timer_settime(self._timer, 0, ctypes.byref(spec), None)
