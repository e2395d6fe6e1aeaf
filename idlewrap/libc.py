"""The few libc calls the standard library lacks (prctl, POSIX timers, timerfd, inotify).

ctypes rather than a compiled extension: idlewrap installs as pure Python, and these
calls are made a handful of times per session, never per byte.
"""

from __future__ import annotations

import ctypes
import os
import struct

libc = ctypes.CDLL(None, use_errno=True)


class Timespec(ctypes.Structure):
    """struct timespec."""

    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class ITimerSpec(ctypes.Structure):
    """struct itimerspec: a one-shot expiry `it_value` (all zero: disarmed)."""

    _fields_ = (("it_interval", Timespec), ("it_value", Timespec))


def one_shot(seconds: float | None) -> ITimerSpec:
    """An itimerspec firing once at `seconds` (relative or absolute); None disarms."""
    if seconds is None:
        return ITimerSpec()
    # A zero it_value would disarm: the earliest expiry is 1 ns.
    value = Timespec(int(seconds), int(seconds % 1 * 1e9) or (0 if int(seconds) else 1))
    return ITimerSpec(it_interval=Timespec(0, 0), it_value=value)


def errno() -> int:
    """errno of the last failed call made through `libc`."""
    return ctypes.get_errno()


_PR_SET_NAME = 15


def name_process(name: str) -> None:
    """Set this process's name (``comm``: /proc/PID/comm, ps, top; at most 15 bytes).

    Best effort: a name is a label, never a reason to refuse a session.
    """
    libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


IN_MODIFY = 0x2
_IN_NONBLOCK_CLOEXEC = os.O_NONBLOCK | os.O_CLOEXEC
_INOTIFY_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len


def inotify_init() -> int:
    """A non-blocking inotify fd (the watchdog: a cgroup's `populated` changed)."""
    fd = int(libc.inotify_init1(_IN_NONBLOCK_CLOEXEC))
    if fd < 0:
        raise OSError(errno(), "inotify_init1 failed")
    return fd


def inotify_watch(fd: int, path: str, mask: int) -> int:
    """Watch `path` for `mask` events; the watch descriptor."""
    wd = int(libc.inotify_add_watch(fd, os.fsencode(path), mask))
    if wd < 0:
        raise OSError(errno(), os.strerror(errno()), path)
    return wd


def inotify_read(fd: int) -> list[int]:
    """The watch descriptors of the events waiting on `fd` (none: [])."""
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return []
    found, pos = [], 0
    while pos + _INOTIFY_HEADER.size <= len(data):
        wd, _, _, length = _INOTIFY_HEADER.unpack_from(data, pos)
        found.append(wd)
        pos += _INOTIFY_HEADER.size + length
    return found


def inotify_unwatch(fd: int, wd: int) -> None:
    """Stop the watch `wd` (gone already: nothing to do)."""
    libc.inotify_rm_watch(fd, wd)
