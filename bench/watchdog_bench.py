"""bench/watchdog: what the watchdog costs (see bench/watchdog for how to run it).

1. Idle: a private sshd with the PAM hook and a watchdog; SESSIONS interactive logins
   (ForceCommand, idle_timeout 15m) registered and silent; the watchdog's context
   switches and CPU time over IDLE_SECONDS, read from /proc.
2. Registering, as a wrapper pays for it: the import of idlewrap.watchdog.link (over what
   a login imports anyway), then connect + `register` (median of 200 in one process).
3. Checking a registration, as the daemon does it (what a command session waits for
   before it execs): peer.refusal on each of the SESSIONS real wrappers, median.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.rig import Rig, wakeups_and_cpu
from idlewrap.watchdog import peer, procfs
from tests import infra


def main(argv: list[str]) -> int:
    sessions = int(argv[0]) if argv else 50
    idle = float(argv[1]) if len(argv) > 1 else 30.0
    if os.geteuid() != 0:
        print("bench/watchdog: must run as root", file=sys.stderr)
        return 2
    rig = Rig("bench-wd", "iww_bench", 'idle_timeout = "15m"\nwarn_before = "1m"\n',
              sshd="MaxStartups 200\nMaxSessions 200\n", watchdog='wrapper_grace = "2s"\n')
    clients: list[subprocess.Popen[bytes]] = []
    try:
        assert rig.daemon is not None
        started, took = _login(rig, sessions, clients)
        time.sleep(3)  # past the grace: every connection's one check is done
        switches, cpu = _watch(rig.daemon.pid, idle)
        print(f"sessions registered: {started} (all logged in within {took:.1f} s)")
        print(f"watchdog, {idle:g} s idle: {switches} context switches, {cpu:.3f} s CPU")
        wrappers = _wrappers(rig.cgroup, rig.account.uid)
        print(f"checking one registration (peer.refusal, median of {len(wrappers)}): "
              f"{_median_check(wrappers, rig.policy):.2f} ms")
        print(f"registering (connect + register, median of 200): "
              f"{_register_cost(rig.socket):.3f} ms")
        print(f"import of idlewrap.watchdog.* at login: {_import_cost():.2f} ms")
    finally:
        for client in clients:
            client.kill()
            client.wait()
        rig.close()
    return 0


def _login(rig: Rig, count: int, clients: list[subprocess.Popen[bytes]]) -> tuple[int, float]:
    """Start `count` silent interactive sessions; how many logged session_start, how fast."""
    began = time.monotonic()
    for _ in range(count):
        clients.append(subprocess.Popen(rig.ssh_argv("-tt"), stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    rig.log.settimeout(60)
    started = 0
    while started < count:
        try:
            started += b"event=session_start" in rig.log.recv(65536)
        except TimeoutError:
            break
    return started, time.monotonic() - began


def _watch(pid: int, seconds: float) -> tuple[int, float]:
    s0, c0 = wakeups_and_cpu(pid)
    time.sleep(seconds)
    s1, c1 = wakeups_and_cpu(pid)
    return s1 - s0, c1 - c0


def _wrappers(base: Path, uid: int) -> list[int]:
    interpreter = procfs.file_id(os.path.realpath(infra.PYTHON))
    found = []
    for group in base.iterdir():
        if group.is_dir():
            for line in (group / "cgroup.procs").read_text().split():
                pid = int(line)
                try:
                    if procfs.exe_of(pid) == interpreter and os.stat(f"/proc/{pid}").st_uid == uid:
                        found.append(pid)
                except OSError:
                    continue
    return found


def _median_check(wrappers: list[int], policy: Path) -> float:
    expected = peer.Expected(procfs.file_id(os.path.realpath(infra.PYTHON)), str(policy))
    times = []
    for pid in wrappers:
        parent = procfs.stat_of(pid).ppid
        group = procfs.cgroup_of(pid)
        facts = peer.Connection(os.stat(f"/proc/{pid}").st_uid, "/", "/bin/bash",
                                procfs.exe_of(parent),
                                lambda p, g=group: procfs.cgroup_of(p) == g)
        began = time.perf_counter()
        why = peer.refusal(pid, facts.uid, "session", facts, expected)
        times.append(time.perf_counter() - began)
        assert why is None, why
    return statistics.median(times) * 1000 if times else float("nan")


def _register_cost(sock: Path) -> float:
    code = (
        "import statistics, time\n"
        "from idlewrap.watchdog import protocol\n"
        "from idlewrap.watchdog.link import WatchdogLink\n"
        "times = []\n"
        "while len(times) < 200:\n"
        "    t = time.perf_counter()\n"
        f"    link = WatchdogLink.connect({str(sock)!r})\n"
        "    if link is None:\n"  # the backlog is full: the daemon has not caught up
        "        time.sleep(0.01)\n"
        "        continue\n"
        "    link.send(protocol.REGISTER, kind='session', tty='/dev/pts/0')\n"
        "    times.append(time.perf_counter() - t)\n"
        "    link.close()\n"
        "print(statistics.median(times) * 1000)\n")
    done = infra.run(infra.PYTHON, "-I", "-c", code, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return float(done.stdout)


def _import_cost() -> float:
    """Self time of idlewrap.watchdog modules in `import idlewrap.login` (-X importtime)."""
    done = infra.run(infra.PYTHON, "-I", "-X", "importtime", "-c", "import idlewrap.login")
    total = 0
    for line in done.stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2].lstrip().startswith("idlewrap.watchdog"):
            total += int(parts[0])
    return total / 1000


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
