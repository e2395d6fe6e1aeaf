"""End every process of a session: hang up, then SIGTERM, then SIGKILL.

The wrapper is a child subreaper (see hardening.py), so processes that
double-fork or call setsid() stay below it in the process tree; "every process
of the session" is therefore "every descendant of the wrapper".
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable


def descendants(pid: int) -> list[int]:
    """Pids of every process below `pid`, read from /proc/PID/task/TID/children."""
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            found.extend(kids)
            stack.extend(kids)
    return found


def end_all(reap: Callable[[], None], grace: float = 0.25) -> None:
    """Signal every descendant until none is left; `reap` collects exit statuses.

    A process we may not signal (a setuid program) is left to its owner and not
    waited for, so the user's client is never kept waiting by it.
    """
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
            return


def _wait_gone(me: int, untouchable: set[int], reap: Callable[[], None], wait: float) -> bool:
    end = time.monotonic() + wait
    while True:
        reap()
        if not set(descendants(me)) - untouchable:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.005)
