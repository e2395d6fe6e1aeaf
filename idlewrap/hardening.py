"""What keeps the user (who owns the wrapper process) from switching it off.

- Not dumpable: no ptrace, no /proc/PID/mem or environ for the same uid. The entry
  points (`python -I -m idlewrap`, the login-shell launcher) turn it on first thing
  (`forbid_ptrace`), but between execve and that line the interpreter starts up (about
  15 ms) and, without Yama (`kernel.yama.ptrace_scope` 0 or absent), any process of the
  user may attach in that window and keep control. So the wrapper then checks that
  nobody traces it (`tracer`) and refuses to run a session if someone does; the
  watchdog refuses to register a traced wrapper too. docs/security.md has the residue.
- Child subreaper: orphaned descendants stay below the wrapper, so teardown finds them.
  A command session execs the program instead, which must not inherit the flag
  (`drop_subreaper`): it would collect every orphan below it as a zombie it never waits for.
- Dead man's switch: a kernel timer that SIGKILLs the wrapper a little after the
  idle deadline. The wrapper re-arms it while it runs; if it is stopped (SIGSTOP
  cannot be caught) it cannot, the timer fires, the pty master closes and the
  kernel hangs up the session. A stopped wrapper thus ends the session, not frees it.
  It runs on CLOCK_MONOTONIC, which stands still while the machine is suspended: it
  is there for a stopped or starved wrapper, and after a resume past the deadline
  the wrapper (woken by its CLOCK_BOOTTIME alarm) ends the session the normal way,
  with its message, its `timeout` event and its teardown.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time

from idlewrap.environment import keep_start_environment
from idlewrap.libc import errno, libc, one_shot

EXIT_TRACED = 77  # EX_NOPERM (sysexits.h): another process controls this one
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_SIGEV_SIGNAL = 0


class HardeningError(Exception):
    """The kernel refused a protection the wrapper will not run without."""


def _prctl(option: int, value: int) -> None:
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise HardeningError(f"prctl({option}) failed: {os.strerror(errno())}")


def forbid_ptrace() -> None:
    """Become non-dumpable now: the first thing the entry points do.

    /proc/self/environ turns root's with it, so the block sshd passed is read first.
    """
    keep_start_environment()
    _prctl(_PR_SET_DUMPABLE, 0)


def tracer() -> int:
    """The pid of the process that traces this one (TracerPid), 0 if none."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"TracerPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


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


class DeadMansSwitch:
    """A CLOCK_MONOTONIC timer whose expiry SIGKILLs this process."""

    def __init__(self) -> None:
        event = _SigEvent(sigev_signo=signal.SIGKILL, sigev_notify=_SIGEV_SIGNAL)
        self._timer = ctypes.c_void_p()
        if libc.timer_create(time.CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(self._timer)):
            raise HardeningError(f"timer_create failed: {os.strerror(errno())}")

    def arm(self, seconds: float) -> None:
        """Fire in `seconds` (replacing any earlier arming)."""
        spec = one_shot(max(seconds, 0.001))
        if libc.timer_settime(self._timer, 0, ctypes.byref(spec), None):
            raise HardeningError(f"timer_settime failed: {os.strerror(errno())}")

    def disarm(self) -> None:
        """Never fire (teardown has begun, or the session is exempt)."""
        libc.timer_settime(self._timer, 0, ctypes.byref(one_shot(None)), None)

    def hold(self) -> None:
        """No deadline for now (locked with no end: a stopped wrapper leaves it locked)."""
        self.disarm()
