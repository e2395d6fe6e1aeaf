"""What the watchdog (root) reads about a process from /proc.

Every function takes a pid and raises OSError when the process is gone or unreadable;
callers treat that as "not what it claims to be". Nothing here trusts a process: the
executable is compared by device and inode (`/proc/PID/exe`), and the files mapped
into it are stat'ed through `/proc/PID/map_files`, which reaches the very inode mapped
even after it was renamed or deleted.
"""

from __future__ import annotations

import os
import signal
import stat
from typing import NamedTuple

_TICKS = os.sysconf("SC_CLK_TCK")
NO_SESSION_ID = 4294967295  # (u32)-1: no pam_loginuid in the stack


class Stat(NamedTuple):
    """The fields of /proc/PID/stat the watchdog uses."""

    ppid: int
    started: float  # CLOCK_BOOTTIME seconds, as deadline.now()
    zombie: bool


def stat_of(pid: int) -> Stat:
    """ppid, start time and state from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        text = f.read()
    # comm, in parentheses, may hold anything: the fields start after the last ')'
    fields = text[text.rindex(b")") + 2:].split()
    return Stat(ppid=int(fields[1]), started=int(fields[19]) / _TICKS, zombie=fields[0] == b"Z")


FileId = tuple[int, int]  # (st_dev, st_ino)


def exe_of(pid: int) -> FileId:
    """The executable's device and inode."""
    st = os.stat(f"/proc/{pid}/exe")
    return st.st_dev, st.st_ino


def file_id(path: str) -> FileId:
    """A file's device and inode, to compare with `exe_of`."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def cmdline_of(pid: int) -> list[str]:
    """argv as the process was started (the process could have rewritten it: check more)."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        raw = f.read()
    return [os.fsdecode(arg) for arg in raw.split(b"\0")[:-1]]


def tracer_of(pid: int) -> int:
    """TracerPid: who ptraces the process, 0 for nobody."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"TracerPid:"):
                return int(line.split()[1])
    raise OSError(f"/proc/{pid}/status has no TracerPid")


def cgroup_of(pid: int) -> str | None:
    """The process's cgroup v2 path (`/a/b`, relative to the v2 mount), None without one."""
    with open(f"/proc/{pid}/cgroup", "rb") as f:
        for line in f:
            if line.startswith(b"0::"):
                return os.fsdecode(line[3:].rstrip(b"\n"))
    return None


def session_id_of(pid: int) -> int:
    """The audit session id pam_loginuid gave the connection (NO_SESSION_ID without it)."""
    with open(f"/proc/{pid}/sessionid", "rb") as f:
        return int(f.read())


def fd_target(pid: int, fd: int) -> os.stat_result:
    """stat of what the process's `fd` refers to."""
    return os.stat(f"/proc/{pid}/fd/{fd}")


def untrusted_mapping(pid: int) -> str | None:
    """A file mapped into the process that someone other than root could have written.

    That is how a library preloaded with LD_PRELOAD shows (even once deleted); None if
    every mapped file is root's and writable by nobody else. Memory that is not a file
    (`[heap]`, `/memfd:...`, SysV shared memory) is left out.
    """
    seen: set[str] = set()
    with open(f"/proc/{pid}/maps", "rb") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or not fields[5].startswith(b"/") or fields[4] == b"0":
                continue
            name = os.fsdecode(fields[5].rstrip(b"\n"))
            if name.startswith(("/memfd:", "/SYSV")) or name in seen:
                continue
            start, _, end = fields[0].partition(b"-")
            try:
                st = os.stat(f"/proc/{pid}/map_files/{int(start, 16):x}-{int(end, 16):x}")
            except FileNotFoundError:
                continue  # unmapped since maps was read
            seen.add(name)
            if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return name
    return None


def alive(pidfd: int) -> bool:
    """The process behind `pidfd` has not exited."""
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    return True
