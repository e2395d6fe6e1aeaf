"""Every process of one ssh connection, found and ended: a cgroup per connection.

At open_session the PAM hook runs in sshd's privileged process for the connection
(`sshd: user [priv]`), before sshd forks the session. The watchdog moves that process
into a cgroup of its own then, so everything the connection starts inherits it:
setsid, double forks and reparenting to init do not leave a cgroup, and a user cannot
move a process out of one (that takes write access to a cgroup.procs root owns).

- cgroup v2, found in /proc/self/mounts: `/sys/fs/cgroup` on a pure-v2 host,
  `/sys/fs/cgroup/unified` on a hybrid one. The watchdog's cgroups live under
  `<mount>/idlewrap/` (`--cgroup-name`), one `c<pid>-<start>` per connection, with no
  controllers enabled, so none of v2's rules about processes in inner nodes apply.
- A host where systemd-logind already put the connection into a session scope
  (`/user.slice/.../session-N.scope`): that scope is the connection's cgroup; the
  watchdog neither moves sshd out of it nor removes it.
- Ending them: sshd's privileged process is spared (it writes utmp/wtmp, runs
  close_session and then exits by itself): it moves up to `idlewrap/`, then one write
  to `cgroup.kill` (Linux 5.14+) SIGKILLs the rest at once. Without cgroup.kill, or in
  a logind scope, every process listed is SIGKILLed until none is left.
- A host without cgroup v2 (v1 only): the audit session id that pam_loginuid gives the
  connection (`/proc/PID/sessionid`) marks its processes instead; a user cannot change
  it and every descendant inherits it. Finding them takes a scan of /proc.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import time
from collections.abc import Callable
from typing import NamedTuple

from idlewrap.watchdog import procfs

DEFAULT_NAME = "idlewrap"
_LOGIND_SCOPE = re.compile(r"/user\.slice/(?:.+/)?session-[^/]+\.scope")
_KILL_ROUNDS = 200


class Group(NamedTuple):
    """Where one connection's processes are."""

    path: str  # a cgroup directory, or `sessionid:N` without cgroup v2
    owned: bool  # made by the watchdog (it may move sshd out and remove it)

    @property
    def events(self) -> str | None:
        """The file inotify reports `populated` changes on; None without a cgroup."""
        return None if self.path.startswith("sessionid:") else f"{self.path}/cgroup.events"


def v2_mount(mounts: str = "/proc/self/mounts") -> str | None:
    """Where cgroup v2 is mounted, None if it is not."""
    with open(mounts) as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return fields[1].replace("\\040", " ")
    return None


class Cgroups:
    """The connections' groups on this host (cgroup v2, else audit session ids)."""

    def __init__(self, name: str = DEFAULT_NAME, *, mount: str | None = None,
                 use_cgroups: bool = True) -> None:
        self.mount = (mount or v2_mount()) if use_cgroups else None
        self.base = None if self.mount is None else os.path.join(self.mount, name)
        if self.base is not None:
            os.makedirs(self.base, mode=0o755, exist_ok=True)

    def describe(self) -> str:
        """One line for the start-up message."""
        if self.base is None:
            return "no cgroup v2: connections are found by their audit session id"
        return f"connection cgroups under {self.base}"

    # -- a connection's group ----------------------------------------------------------

    def adopt(self, priv: int) -> Group:
        """Put sshd's privileged process `priv` (and so the connection) into its own group."""
        if self.base is None:
            session = procfs.session_id_of(priv)
            if session == procfs.NO_SESSION_ID:
                raise OSError("no cgroup v2 and no audit session id (pam_loginuid)")
            return Group(f"sessionid:{session}", owned=False)
        current = procfs.cgroup_of(priv)
        if current is not None and _LOGIND_SCOPE.fullmatch(current):
            return Group(self._absolute(current), owned=False)
        path = os.path.join(self.base, f"c{priv}-{round(procfs.stat_of(priv).started * 100)}")
        os.mkdir(path, 0o755)
        try:
            _write(f"{path}/cgroup.procs", priv)
        except OSError:
            os.rmdir(path)
            raise
        return Group(path, owned=True)

    def group_of(self, pid: int) -> str | None:
        """The group `pid` belongs to (a path, as in `Group.path`)."""
        if self.base is None:
            return f"sessionid:{procfs.session_id_of(pid)}"
        current = procfs.cgroup_of(pid)
        return None if current is None else self._absolute(current)

    def members(self, group: Group) -> list[int]:
        """Pids of every process in the group (zombies included)."""
        if group.events is None:
            wanted = int(group.path.partition(":")[2])
            return [pid for pid in _all_pids() if _session_or_none(pid) == wanted]
        with open(f"{group.path}/cgroup.procs") as f:
            return [int(line) for line in f]

    def populated(self, group: Group) -> bool:
        """Some process is in the group."""
        if group.events is None:
            return bool(self.members(group))
        with open(group.events) as f:
            return any(line.split() == ["populated", "1"] for line in f)

    def end(self, group: Group, spare: int | None) -> list[int]:
        """SIGKILL every process of the group but `spare`; the pids it found alive."""
        found = [pid for pid in self.members(group) if pid != spare and _living(pid)]
        if group.owned and self.base is not None and os.path.exists(f"{group.path}/cgroup.kill"):
            if spare is not None:
                with contextlib.suppress(ProcessLookupError):  # gone already: nothing to spare
                    _write(f"{self.base}/cgroup.procs", spare)
            _write(f"{group.path}/cgroup.kill", 1)
            return found
        kill_until_gone(lambda: self.members(group), spare)
        return found

    def remove(self, group: Group) -> bool:
        """Remove an empty group the watchdog made; False while processes remain."""
        if not group.owned:
            return True
        try:
            os.rmdir(group.path)
        except FileNotFoundError:
            return True
        except OSError as err:
            if err.errno == errno.EBUSY:
                return False
            raise
        return True

    def leftovers(self) -> list[Group]:
        """Groups a previous watchdog made (found at start-up)."""
        if self.base is None:
            return []
        return [Group(entry.path, owned=True) for entry in os.scandir(self.base)
                if entry.is_dir() and entry.name.startswith("c")]

    def _absolute(self, relative: str) -> str:
        assert self.mount is not None
        return os.path.normpath(self.mount + "/" + relative.lstrip("/"))


def kill_until_gone(members: Callable[[], list[int]], spare: int | None) -> None:
    """SIGKILL what `members()` lists (but `spare`) until only zombies are left.

    A process forked between reading the list and the kill is in the next list; a
    killed process cannot fork again, so the rounds end even under a fork loop.
    """
    for _ in range(_KILL_ROUNDS):
        living = [pid for pid in members() if pid != spare and _living(pid)]
        if not living:
            return
        for pid in living:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.001)  # time to die


def _living(pid: int) -> bool:
    try:
        return not procfs.stat_of(pid).zombie
    except OSError:
        return False


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _session_or_none(pid: int) -> int | None:
    try:
        return procfs.session_id_of(pid)
    except (OSError, ValueError):
        return None


def _write(path: str, value: object) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)
