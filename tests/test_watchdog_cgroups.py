"""A connection's group: every process of it found and ended, whatever it did to hide.

Root only (cgroups, audit session ids). A plain `sleep` stands for sshd's privileged
process: it must be spared, and everything it started must end.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from idlewrap.watchdog import procfs
from idlewrap.watchdog.cgroups import Cgroups, Group, kill_until_gone, v2_mount
from tests import infra

pytestmark = pytest.mark.root

# A job that leaves the tree every way a user can: setsid, a double fork, HUP and TERM
# ignored; each prints its pid.
HIDING = ("setsid sh -c 'trap \"\" HUP TERM; echo $$; exec sleep 1000' & "
          "(sh -c 'trap \"\" HUP TERM; echo $$; exec sleep 1001' &) ; "
          "trap '' HUP TERM; echo $$; exec sleep 1002")


@pytest.fixture
def cgroups() -> Iterator[Cgroups]:
    if v2_mount() is None:
        pytest.skip("no cgroup v2 on this host")
    found = Cgroups(f"idlewrap-unit-{os.getpid()}")
    yield found
    assert found.base is not None
    for group in found.leftovers():
        found.end(group, None)
        infra.wait_for(lambda g=group: found.remove(g), 2)
    os.rmdir(found.base)


def start_priv() -> subprocess.Popen[bytes]:
    """A stand-in for sshd's privileged process."""
    return subprocess.Popen(["sleep", "1000"])


def hiding_jobs(group_member: int) -> list[int]:
    """Start HIDING in the same cgroup as `group_member`; the three pids it hides."""
    with open(f"/proc/{group_member}/cgroup") as f:
        cgroup = next(line[3:].strip() for line in f if line.startswith("0::"))
    mount = v2_mount()
    assert mount is not None
    path = f"{mount}{cgroup}/cgroup.procs"
    job = subprocess.Popen(["sh", "-c", f"echo $$ > {path}; {HIDING}"],
                           stdout=subprocess.PIPE, start_new_session=True)
    assert job.stdout is not None
    pids = [int(job.stdout.readline()) for _ in range(3)]
    job.stdout.close()
    return pids


def alive(pid: int) -> bool:
    try:
        return not procfs.stat_of(pid).zombie
    except OSError:
        return False


def test_a_connection_group_holds_everything_and_ends_it_but_sshd(cgroups: Cgroups) -> None:
    priv = start_priv()
    try:
        group = cgroups.adopt(priv.pid)
        assert group.owned and cgroups.group_of(priv.pid) == group.path
        hidden = hiding_jobs(priv.pid)
        assert set(hidden) <= set(cgroups.members(group))
        assert cgroups.populated(group)
        ended = cgroups.end(group, spare=priv.pid)
        assert set(hidden) <= set(ended) and priv.pid not in ended
        infra.wait_for(lambda: not any(alive(p) for p in hidden), 2)
        assert alive(priv.pid)  # moved up, out of the group, and left alone
        infra.wait_for(lambda: not cgroups.populated(group), 2)
        assert cgroups.remove(group)
        assert not os.path.exists(group.path)
    finally:
        priv.kill()
        priv.wait()


def test_without_cgroup_kill_every_process_is_killed_in_rounds(cgroups: Cgroups) -> None:
    priv = start_priv()
    try:
        group = cgroups.adopt(priv.pid)
        hidden = hiding_jobs(priv.pid)
        as_a_scope = Group(group.path, owned=False)  # logind's: no move, no cgroup.kill
        cgroups.end(as_a_scope, spare=priv.pid)
        assert not any(alive(p) for p in hidden)
        assert alive(priv.pid) and cgroups.members(group) == [priv.pid]
        assert cgroups.remove(as_a_scope)  # not ours: left to its owner
        assert os.path.isdir(group.path)
    finally:
        priv.kill()
        priv.wait()


def test_a_group_with_processes_is_not_removed(cgroups: Cgroups) -> None:
    priv = start_priv()
    try:
        group = cgroups.adopt(priv.pid)
        assert not cgroups.remove(group)
        assert [g.path for g in cgroups.leftovers()] == [group.path]
    finally:
        priv.kill()
        priv.wait()


def test_without_cgroup_v2_the_audit_session_id_marks_the_connection() -> None:
    """As on a v1-only host: pam_loginuid's session id (writing loginuid starts one),
    inherited by everything the process starts."""
    priv = subprocess.Popen(["sh", "-c", "echo 4242 > /proc/self/loginuid; "
                             'sh -c "$HIDING" & exec sleep 1000'],
                            stdout=subprocess.PIPE, env={"HIDING": HIDING, "PATH": "/usr/bin:/bin"})
    try:
        assert priv.stdout is not None
        hidden = [int(priv.stdout.readline()) for _ in range(3)]
        session = procfs.session_id_of(priv.pid)
        assert session != procfs.session_id_of(os.getpid())
        ids = Cgroups(use_cgroups=False)
        group = ids.adopt(priv.pid)
        assert group == Group(f"sessionid:{session}", owned=False) and group.events is None
        assert set(hidden) <= set(ids.members(group))
        ids.end(group, spare=priv.pid)
        assert not any(alive(p) for p in hidden)
        assert [p for p in ids.members(group) if alive(p)] == [priv.pid]  # zombies await init
    finally:
        priv.kill()
        priv.wait()


def test_kill_until_gone_outlasts_a_fork_loop() -> None:
    loop = subprocess.Popen(["sh", "-c", "while :; do sleep 1000 & done"],
                            start_new_session=True)
    time.sleep(0.2)

    def members() -> list[int]:
        found = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    if os.getsid(int(name)) == loop.pid:
                        found.append(int(name))
                except OSError:
                    continue
        return found

    kill_until_gone(members, spare=None)
    loop.wait(2)
    assert not [pid for pid in members() if alive(pid)]
