"""Escape 3, as a user would try it: attach to the wrapper before it turns non-dumpable.

    python3 ptrace_attacker.py REPORT INTERPRETER

Run as the user, before the login. It watches /proc for a new process of its own uid
running INTERPRETER and seizes it (PTRACE_SEIZE: the tracee keeps running) the moment
/proc/PID/exe becomes readable, i.e. right after the exec. It then stays the tracer,
letting every stop go on, and writes `attached PID` (or `gone PID STATUS`) to REPORT.
"""

from __future__ import annotations

import ctypes
import os
import sys

PTRACE_CONT = 7
PTRACE_SEIZE = 0x4206
WALL = 0x40000000

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)


def report(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


def main() -> None:
    path, interpreter = sys.argv[1], sys.argv[2]
    me = os.getuid()
    seen = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    report(path, "ready")
    while True:
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in seen:
                continue
            pid = int(name)
            try:
                if os.stat(f"/proc/{pid}").st_uid != me:
                    seen.add(pid)
                    continue
                if os.readlink(f"/proc/{pid}/exe") != interpreter:
                    continue  # not exec'd yet (or not dumpable yet): look again
            except OSError:
                continue
            seen.add(pid)
            if libc.ptrace(PTRACE_SEIZE, pid, None, None) == 0:
                report(path, f"attached {pid}")
                follow(path, pid)


def follow(path: str, pid: int) -> None:
    """Stay the tracer: let every stop go on until the tracee is gone."""
    while True:
        try:
            _, status = os.waitpid(pid, WALL)
        except ChildProcessError:
            return
        if os.WIFSTOPPED(status):
            libc.ptrace(PTRACE_CONT, pid, None, ctypes.c_void_p(os.WSTOPSIG(status)))
        else:
            report(path, f"gone {pid} {status}")
            return


if __name__ == "__main__":
    main()
