"""``idlewrap lock``: lock the session this command runs in, at once.

"This session" is the nearest idlewrap wrapper among the command's ancestors (parents
read from ``/proc/PID/stat``; a wrapper is a process named ``idlewrap``). The wrapper
is a child subreaper, so a tmux or screen server started inside the session, which
detaches itself, still hangs below it: the walk from a tmux pane finds it too. The
wrapper is asked with a real-time signal (signals.LOCK) sent through a pidfd, so the
pid cannot be reused between the check and the signal. Only the wrapper's own user
may ask (the kernel would let root signal it anyway; root gets a clear no instead).
"""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import sys
from typing import NamedTuple

from idlewrap.signals import LOCK
from idlewrap.unlock import PAM_SERVICE_FILE, service_installed
from idlewrap.wrapper import WRAPPER_NAME


class Process(NamedTuple):
    """What /proc says about one process."""

    pid: int
    name: str  # comm
    parent: int
    uid: int  # real uid


def read_process(pid: int, proc: str = "/proc") -> Process | None:
    """The process `pid`, or None if it is gone (readable for any process, even
    a non-dumpable one of another user)."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        with open(f"{proc}/{pid}/status", "rb") as f:
            status = f.read().decode(errors="replace")
    except OSError:
        return None
    # "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses of its own
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    parent = int(stat[stat.rindex(")") + 2:].split()[1])
    uid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:"))
    return Process(pid, name, parent, uid)


def find_wrapper(pid: int, proc: str = "/proc") -> Process | None:
    """The nearest idlewrap wrapper above process `pid` (not `pid` itself), or None."""
    seen = set()
    process = read_process(pid, proc)
    while process is not None and process.parent > 1 and process.parent not in seen:
        seen.add(process.parent)
        process = read_process(process.parent, proc)
        if process is not None and process.name == WRAPPER_NAME:
            return process
    return None


def parser() -> argparse.ArgumentParser:
    """The command line of ``idlewrap lock``."""
    command = argparse.ArgumentParser(
        prog="idlewrap lock",
        description="Lock this idlewrap session at once: the screen is hidden until the "
        "account's password is typed. Run it inside the session (any shell, any depth, "
        "tmux included).",
    )
    return command


def main(argv: list[str]) -> int:
    """Ask this session's wrapper for the lock; 0 if asked, 1 with one line if not."""
    parser().parse_args(argv)
    problem = ask_for_lock()
    if problem is not None:
        print(f"idlewrap lock: {problem}", file=sys.stderr)
        return 1
    return 0


def ask_for_lock() -> str | None:
    """Signal this session's wrapper; None when done, else why not."""
    wrapper = find_wrapper(os.getpid())
    if wrapper is None:
        return "not inside an idlewrap session (no idlewrap wrapper above this command)"
    if wrapper.uid != os.getuid():
        owner = _user_name(wrapper.uid)
        return f"this session belongs to {owner}: only {owner} can lock it"
    if not service_installed():
        return f"locking is not set up on this host ({PAM_SERVICE_FILE} is missing)"
    try:
        pidfd = os.pidfd_open(wrapper.pid)
    except OSError:
        return "the session's wrapper has gone"
    try:
        # the pid could have been reused before the pidfd was opened: check it is the same
        if read_process(wrapper.pid) != wrapper:
            return "the session's wrapper has gone"
        signal.pidfd_send_signal(pidfd, LOCK)
    except OSError as err:
        return f"cannot signal the session's wrapper: {err.strerror}"
    finally:
        os.close(pidfd)
    return None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
