"""End every process of a session: hang up, then SIGTERM, then SIGKILL.

The wrapper is a child subreaper (see hardening.py), so processes that
double-fork or call setsid() stay below it in the process tree; "every process
of the session" is therefore "every descendant of the wrapper".

Finding them takes new file descriptors (/proc). The user owns the wrapper and may
lower its limits (`prlimit --pid $PPID --nofile=1:1`), so a scan that fails is not
taken for "nothing left": `end_all` says why it could not finish, the wrapper logs
`teardown_failed` and does not tell the watchdog it ended cleanly, and the watchdog
ends the connection's processes (its cgroup needs no help from the wrapper).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable

# a process or thread that exited while being read: it has no children left to find
_GONE = (errno.ENOENT, errno.ESRCH)


def descendants(pid: int) -> list[int]:
    """Pids of every process below `pid`, read from /proc/PID/task/TID/children.

    OSError when /proc cannot be read (out of file descriptors): the list would be short.
    """
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError as err:
            if err.errno in _GONE:
                continue
            raise
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError as err:
                if err.errno in _GONE:
                    continue
                raise
            found.extend(kids)
            stack.extend(kids)
    return found


def end_all(reap: Callable[[], None], grace: float = 0.25) -> str | None:
    """Signal every descendant until none is left; `reap` collects exit statuses.

    A process we may not signal (a setuid program) is left to its owner and not
    waited for, so the user's client is never kept waiting by it. Returns None when
    none is left, else why not: an errno name when /proc could not be read, or
    "survivors".
    """
    try:
        if _end_all(reap, grace):
            return None
    except OSError as err:
        return errno.errorcode.get(err.errno or 0, str(err))
    return "survivors"  # still there after three rounds of SIGKILL (stuck in the kernel)


def _end_all(reap: Callable[[], None], grace: float) -> bool:
    me = os.getpid()
    untouchable: set[int] = set()
    stages: list[tuple[tuple[signal.Signals, ...], float]] = [
        ((signal.SIGHUP, signal.SIGCONT), grace),
        ((signal.SIGTERM, signal.SIGCONT), grace),
        ((signal.SIGKILL,), 0.1),
        ((signal.SIGKILL,), 0.1),
        ((signal.SIGKILL,), 0.1),
    ]
    for signals, wait in stages:
        for pid in descendants(me):
            if pid in untouchable:
                continue
            for signum in signals:
                try:
                    os.kill(pid, signum)
                except PermissionError:
                    untouchable.add(pid)
                except ProcessLookupError:
                    pass
        if _wait_gone(me, untouchable, reap, wait):
            return True
    return False


def _wait_gone(me: int, untouchable: set[int], reap: Callable[[], None], wait: float) -> bool:
    end = time.monotonic() + wait
    while True:
        reap()
        if not set(descendants(me)) - untouchable:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.005)
