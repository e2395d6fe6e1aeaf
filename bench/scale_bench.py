"""bench/scale: N sessions on one host at once (see bench/scale for how to run it).

The rig (bench/rig.py): a private sshd whose ForceCommand is idlewrap, the PAM hook, the
watchdog, a log socket standing in for syslog. N real `ssh -tt` clients, stdin a pipe
nobody writes to, output to /dev/null; every tenth (`--printing`) runs a loop printing a line
every `--print-interval` seconds, the others sit at their shell prompt. One policy for
all: `idle_timeout = LIMIT`, `warn_before = WARN`. Then, while all N are open:

1. memory: USS (Private_Clean + Private_Dirty) and PSS of each wrapper (smaps_rollup);
   the sum of the PSS of every process below sshd's listener (the sessions' sshd
   processes, wrappers, shells), and MemAvailable before the logins against now;
2. an idle window: wake-ups (voluntary + involuntary context switches) and CPU of each
   wrapper and of the watchdog, idle and printing sessions apart;
3. until every session has ended: each wrapper's USS one second after its warning
   (urwid is imported for the box), each session's `timeout` event and its client's
   exit against its deadline (its `session_start` + LIMIT), and every event received
   against those expected.

Times are CLOCK_REALTIME: an event's is the kernel's stamp of when its wrapper sent it
(SO_TIMESTAMPNS), a client's exit is when its pidfd fired in the bench's one epoll; so
the bench's own lag (it shares the CPUs) does not move them.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

from bench.rig import Rig, wakeups_and_cpu

# What a timed-out interactive session logs (docs/events.md), per connection.
EXPECTED = ("pam_open_session", "session_start", "warning", "timeout", "pam_close_session")
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
MIB = 1024
# <asm-generic/socket.h>; Python's socket module names neither.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS


def parse_event(datagram: bytes) -> dict[str, str]:
    """The logfmt fields of one syslog datagram (quoted values keep their quotes off)."""
    text = datagram.decode(errors="replace").split(": ", 1)[-1]
    return {k: v[1:-1] if v.startswith('"') else v for k, v in _FIELD.findall(text)}


class Event(NamedTuple):
    at: float  # when its wrapper sent it: the kernel's stamp, CLOCK_REALTIME (time.time())
    fields: dict[str, str]


class Session(NamedTuple):
    """One connection, from its events: the wrapper's pid and when its deadline falls."""

    conn: str
    pid: int
    rport: int
    printing: bool
    deadline: float


def sessions_of(events: Iterable[Event], limit: float) -> dict[str, Session]:
    """Each connection's session, from its `session_start` (by conn id)."""
    found = {}
    for e in events:
        if e.fields.get("event") == "session_start":
            f = e.fields
            found[f["conn"]] = Session(f["conn"], int(f["pid"]), int(f["rport"]),
                                       "command" in f, e.at + limit)
    return found


class Tally(NamedTuple):
    got: Counter[str]  # each expected event received, by name
    lost: int  # expected and not received
    other: Counter[str]  # every other event, by name and reason
    ended_by_watchdog: set[str]  # connections the watchdog ended (they log no timeout)


def event_counts(events: Iterable[Event], conns: Iterable[str]) -> Tally:
    """The events of the connections `conns` against those they should have logged.

    A connection the watchdog ended logs `watchdog_kill` instead of its warning and timeout.
    """
    wanted = set(conns)
    seen: dict[str, set[str]] = {conn: set() for conn in wanted}
    got: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for e in events:
        name, conn = e.fields.get("event", "?"), e.fields.get("conn", "")
        if name in EXPECTED and conn in wanted:
            got[name] += 1
            seen[conn].add(name)
        elif name not in ("watchdog_start", "watchdog_stop"):
            other[" ".join(filter(None, (name, e.fields.get("reason"))))] += 1
            if name == "watchdog_kill" and conn in wanted:
                seen[conn].add(name)
    killed = {conn for conn, names in seen.items() if "watchdog_kill" in names}
    lost = sum(len(set(EXPECTED) - names - ({"warning", "timeout"} if conn in killed else set()))
               for conn, names in seen.items())
    return Tally(got, lost, other, killed)


def lateness(sessions: Iterable[Session], ends: Mapping[str, float]) -> list[float]:
    """Seconds after its deadline that each session (by conn) ended; a missing end is inf."""
    return [ends.get(s.conn, float("inf")) - s.deadline for s in sessions]


def spread(values: list[float], unit: str = "", digits: int = 2) -> str:
    """`median / max` of `values`, or "-" when there are none."""
    if not values:
        return "-"
    return f"{statistics.median(values):.{digits}f} / {max(values):.{digits}f}{unit}"


# -- the parts that run ---------------------------------------------------------------------


def kernel_stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The SCM_TIMESTAMPNS stamp of one datagram (CLOCK_REALTIME seconds), if it has one.

    For AF_UNIX the kernel stamps a datagram when the sender queues it (unix_dgram_sendmsg,
    once the receiver asked for stamps): the time the wrapper sent the event, however late
    the bench reads it.
    """
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return seconds + nanoseconds / 1e9
    return None


class Watcher(threading.Thread):
    """The syslog stand-in and the clients' exits, in one epoll of one thread.

    Every time here is CLOCK_REALTIME (`time.time()`), the clock of the kernel's datagram
    stamps: an event's time is when its wrapper sent it, a client's exit when its pidfd
    fired. The clients' output goes to /dev/null: nothing here reads it.
    """

    def __init__(self, rig: Rig, ssh_options: list[str]) -> None:
        """`ssh_options`: more `-o` options for every client (`--ssh-option`)."""
        super().__init__(daemon=True)
        self.rig = rig
        self.options = [arg for option in ssh_options for arg in ("-o", option)]
        self.sock = rig.log
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.events: list[Event] = []
        self.count: Counter[str] = Counter()
        self.unstamped = 0  # datagrams without a kernel stamp (stamped on reading)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.exited: dict[int, float] = {}  # client pid -> when it exited
        self._pidfds: dict[int, int] = {}  # pidfd -> client pid
        self.poll = select.epoll()
        self.poll.register(self.sock.fileno(), select.EPOLLIN)

    def start_one(self, command: str | None, account: int) -> None:
        """One `ssh -tt` client: stdin a pipe nobody writes to, output to /dev/null."""
        argv = self.rig.ssh_argv("-tt", *self.options, account=account)
        proc = subprocess.Popen(argv + ([command] if command else []), stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        pidfd = os.pidfd_open(proc.pid)
        self.procs.append(proc)
        self._pidfds[pidfd] = proc.pid
        self.poll.register(pidfd, select.EPOLLIN)

    def run(self) -> None:
        log = self.sock.fileno()
        while True:
            try:
                ready = self.poll.poll()
            except OSError:
                return
            now = time.time()
            for fd, _ in ready:
                if fd == log:
                    self._drain()
                elif fd in self._pidfds:
                    self.poll.unregister(fd)
                    os.close(fd)
                    self.exited[self._pidfds.pop(fd)] = now

    def _drain(self) -> None:
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(16))
            except OSError:  # BlockingIOError: drained for now
                return
            at = kernel_stamp(ancillary)
            if at is None:
                self.unstamped += 1
                at = time.time()
            event = Event(at, parse_event(data))
            self.events.append(event)
            self.count[event.fields.get("event", "?")] += 1

    def named(self, name: str) -> list[Event]:
        return [e for e in list(self.events) if e.fields.get("event") == name]

    def running(self) -> int:
        return len(self.procs) - len(self.exited)

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


def rollup(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup in KiB ({} if the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    return {p[0].rstrip(":"): int(p[1]) for p in map(str.split, text.splitlines())
            if len(p) == 3 and p[2] == "kB"}


def uss(pid: int) -> float | None:
    """Private memory (Private_Clean + Private_Dirty) of `pid` in MiB."""
    r = rollup(pid)
    return (r["Private_Clean"] + r["Private_Dirty"]) / MIB if r else None


def below(root: int) -> Iterator[int]:
    """Every process below `root` (its children's children too)."""
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                stack.extend(int(c) for c in
                             Path(f"/proc/{pid}/task/{task}/children").read_text().split())
            except OSError:
                continue
        if pid != root:
            yield pid


def mem_available() -> float:
    """MemAvailable in MiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / MIB
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def busy_seconds() -> float:
    """CPU time the whole host spent not idle, summed over CPUs."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def open_fds(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return total


def cpu_of(pid: int) -> float:
    """CPU seconds of `pid` and of its children it has reaped (sshd: the PAM hook)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def cpu_by_kind(pids: Iterable[int]) -> dict[str, float]:
    """CPU seconds of the processes, summed as wrapper, sshd (with the PAM hook it ran)
    or shell (anything else)."""
    found = {"wrapper": 0.0, "sshd": 0.0, "shell": 0.0}
    for pid in pids:
        try:
            program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b":")[0]
            found["wrapper" if b"\0-m\0idlewrap\0" in program
                  else "sshd" if b"sshd" in program else "shell"] += cpu_of(pid)
        except OSError:
            continue
    return found


def counters(pids: Iterable[int]) -> dict[int, tuple[int, float]]:
    found = {}
    for pid in pids:
        try:
            found[pid] = wakeups_and_cpu(pid)
        except OSError:
            continue
    return found


class Run:
    """One bench run: log in, measure, wait for every session to end."""

    def __init__(self, args: argparse.Namespace, rig: Rig) -> None:
        self.args = args
        self.rig = rig
        self.watch = Watcher(rig, args.ssh_option)
        self.rows: list[tuple[str, str, str]] = []  # figure, result, target
        self.ports: dict[int, int] = {}  # client's local port -> client pid
        self.notes: list[str] = []

    def row(self, figure: str, result: str, target: str = "") -> None:
        self.rows.append((figure, result, target))

    def go(self) -> None:
        a = self.args
        self.watch.start()
        free_before, busy_before = mem_available(), busy_seconds()
        assert self.rig.daemon is not None
        self.watchdog_cpu = cpu_of(self.rig.daemon.pid)
        began = time.time()
        self._log_in()
        opened = time.time()
        self._note_ports()
        sessions = sessions_of(self.watch.events, a.limit)
        took = opened - began
        ended = sum(self.watch.count[name] for name in ("timeout", "disconnect", "session_end"))
        self.row("sessions open at once", f"{len(sessions) - ended} of {a.sessions}",
                 f"{a.sessions}")
        self.row("opening them took", f"{took:.1f} s ({len(sessions) / took:.1f} logins/s, "
                 f"{a.in_flight} in flight at most)")
        self.row("host CPU busy per login (all of the host's, others' work included)",
                 f"{(busy_seconds() - busy_before) / max(len(sessions), 1) * 1000:.0f} ms")
        self._measure_open(sessions, free_before)
        self._idle_window(sessions)
        self._to_the_end(sessions)

    def _log_in(self) -> None:
        """Start the clients, at most `in_flight` logins at a time, until all have started
        their wrapper (or the first deadline is near: then what opened is measured)."""
        a = self.args
        every = round(1 / a.printing) if a.printing > 0 else 0
        loop = (f'while :; do echo "$SECONDS printing a line of output"; '
                f"read -t {a.print_interval}; done")
        give_up = time.time() + a.limit - 1  # all must be open before the first deadline
        for i in range(a.sessions):
            while len(self.watch.procs) - self.watch.count["session_start"] >= a.in_flight:
                if time.time() > give_up:
                    self.notes.append(f"only {i} logins started before the first deadline")
                    return
                time.sleep(0.005)
            self.watch.start_one(loop if every and i % every == 0 else None,
                                 i % len(self.rig.names))
        while self.watch.count["session_start"] < a.sessions and time.time() < give_up:
            time.sleep(0.02)

    def _measure_open(self, sessions: dict[str, Session], free_before: float) -> None:
        assert self.rig.server is not None and self.rig.server.process is not None
        warned = {e.fields.get("pid") for e in self.watch.named("warning")}
        mem = [rollup(s.pid) for s in sessions.values() if str(s.pid) not in warned]
        mem = [m for m in mem if m]
        usses = [(m["Private_Clean"] + m["Private_Dirty"]) / MIB for m in mem]
        self.row(f"wrapper USS, not warned yet ({len(mem)}), median / max",
                 spread(usses, " MiB"), "≤ 5 MiB")
        self.row("wrapper PSS, the same, median / max",
                 spread([m["Pss"] / MIB for m in mem], " MiB"))
        tree = list(below(self.rig.server.process.pid))
        pss = sum(rollup(p).get("Pss", 0) for p in tree) / MIB
        n = max(len(sessions), 1)
        self.row("PSS of every process of the sessions (sshd's two, wrapper, shell)",
                 f"{pss:.0f} MiB, {pss / n:.1f} MiB per session")
        drop = free_before - mem_available()
        self.row("MemAvailable, before the logins minus with all open (clients included)",
                 f"{drop:.0f} MiB, {drop / n:.1f} MiB per session")
        assert self.rig.daemon is not None
        cpu = cpu_by_kind(tree)
        cpu["ssh client"] = sum(cpu_of(c.pid) for c in self.watch.procs
                                 if c.pid not in self.watch.exited)
        cpu["watchdog"] = cpu_of(self.rig.daemon.pid) - self.watchdog_cpu
        self.row("CPU per session so far (logging in, mostly): " + " + ".join(cpu),
                 " + ".join(f"{v / n * 1000:.0f}" for v in cpu.values())
                 + f" = {sum(cpu.values()) / n * 1000:.0f} ms")
        self.row("processes / open fds per session (server side)",
                 f"{len(tree) / n:.1f} / {open_fds(tree) / n:.1f}; watchdog: "
                 f"{open_fds([self.rig.daemon.pid])} fds")

    def _idle_window(self, sessions: dict[str, Session]) -> None:
        """Wake-ups and CPU over the window, of each wrapper not warned before its end."""
        assert self.rig.daemon is not None
        window = self.args.idle_window
        end = time.time() + window
        quiet = [s for s in sessions.values() if s.deadline - self.args.warn > end + 0.5]
        pids = [s.pid for s in quiet] + [self.rig.daemon.pid]
        before = counters(pids)
        time.sleep(window)
        after = counters(pids)
        delta = {p: (after[p][0] - before[p][0], after[p][1] - before[p][1])
                 for p in before if p in after}
        for printing, label in ((False, "idle"), (True, "printing")):
            group = [delta[s.pid] for s in quiet if s.printing == printing and s.pid in delta]
            if not group:
                continue
            woken = [w for w, _ in group]
            cpu = sum(c for _, c in group)
            self.row(f"{label} wrappers not warned within a {window:g} s window ({len(group)}): "
                     "wake-ups in all (most in one), CPU in all",
                     f"{sum(woken)} ({max(woken)}), {cpu:.2f} s",
                     "0 wake-ups" if label == "idle" else "")
        w, c = delta.get(self.rig.daemon.pid, (0, 0.0))
        self.row("watchdog, same window: wake-ups, CPU", f"{w}, {c:.2f} s")

    def _to_the_end(self, sessions: dict[str, Session]) -> None:
        a = self.args
        warned: dict[int, float] = {}  # wrapper pid -> USS after its warning
        last_deadline = max((s.deadline for s in sessions.values()), default=time.time())
        end_by = last_deadline + a.warn + 30
        while self.watch.running() and time.time() < end_by:
            now = time.time()
            for e in self.watch.named("warning"):
                pid = int(e.fields["pid"])
                if pid not in warned and now > e.at + 1:
                    value = uss(pid)
                    if value is not None:
                        warned[pid] = value
            time.sleep(0.2)
        time.sleep(1.5)  # the last pam_close_session
        if self.watch.running():
            self.notes.append(f"{self.watch.running()} clients still running "
                              f"{end_by - last_deadline:.0f} s after the last deadline")
        self.row("wrapper USS 1 s after its warning (urwid loaded), median / max",
                 spread(list(warned.values()), " MiB"))
        tally = event_counts(self.watch.events, sessions)
        timeouts = {e.fields["conn"]: e.at for e in self.watch.named("timeout")}
        exits = {s.conn: self.watch.exited.get(self.ports.get(s.rport, -1), float("inf"))
                 for s in sessions.values()}
        for printing, label in ((False, "idle"), (True, "printing")):
            group = [s for s in sessions.values()
                     if s.printing == printing and s.conn not in tally.ended_by_watchdog]
            if not group:
                continue
            self.row(f"{label} sessions ({len(group)}): `timeout` event after the deadline, "
                     "median / max",
                     spread(lateness(group, timeouts), " s"), "≤ 0.5 s")
            self.row(f"{label} sessions: client exit after the deadline, median / max",
                     spread(lateness(group, exits), " s"), "≤ 0.5 s")
        self.row("events received (per session: " + ", ".join(EXPECTED) + ")",
                 ", ".join(str(tally.got[name]) for name in EXPECTED))
        self.row("events lost", str(tally.lost), "0")
        self.row("other events", ", ".join(f"{k} {v}" for k, v in tally.other.items()) or "none")
        if self.watch.unstamped:
            self.notes.append(f"{self.watch.unstamped} datagrams came without a kernel stamp "
                              "(stamped when read)")

    def _note_ports(self) -> None:
        """Each open client by its local TCP port (its session's `rport`), from /proc."""
        inode_port = {}
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            f = line.split()
            inode_port[f"socket:[{f[9]}]"] = int(f[1].split(":")[1], 16)
        for proc in self.watch.procs:
            try:
                links = [os.readlink(f"/proc/{proc.pid}/fd/{fd}")
                         for fd in os.listdir(f"/proc/{proc.pid}/fd")]
            except OSError:
                continue
            for link in links:
                if link in inode_port:
                    self.ports[inode_port[link]] = proc.pid

    def report(self) -> str:
        a = self.args
        lines = [f"bench/scale: {a.sessions} sessions, idle_timeout {a.limit:g} s, warn_before "
                 f"{a.warn:g} s, {a.printing:.0%} printing a line every {a.print_interval} s"
                 + "".join(f", ssh -o {o}" for o in a.ssh_option),
                 "", "| figure | result | target |", "|---|---|---|"]
        lines += [f"| {f} | {r} | {t} |" for f, r, t in self.rows]
        lines += [f"\nnote: {n}" for n in self.notes]
        return "\n".join(lines)


def options(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/scale", description=__doc__.split("\n", 1)[0])
    p.add_argument("count", nargs="?", type=int, metavar="N", help="sessions (default 300)")
    p.add_argument("-n", dest="sessions", type=int, default=300, help="the same as N")
    p.add_argument("--limit", type=float, default=60, help="idle_timeout, s (default 60)")
    p.add_argument("--warn", type=float, default=10, help="warn_before, s (default 10)")
    p.add_argument("--printing", type=float, default=0.1, help="share of printing sessions")
    p.add_argument("--print-interval", type=float, default=0.01, help="s between lines")
    p.add_argument("--idle-window", type=float, default=10, help="s (at most)")
    p.add_argument("--in-flight", type=int, default=6, help="logins under way at once")
    p.add_argument("--per-account", type=int, default=50,
                   help="sessions per test account (default 50)")
    p.add_argument("--ssh-option", action="append", default=[], metavar="OPT",
                   help="one more `-o OPT` for every ssh client (e.g. KexAlgorithms=...)")
    args = p.parse_args(argv)
    args.sessions = args.count or args.sessions
    return args


def main(argv: list[str]) -> int:
    args = options(argv)
    if os.geteuid() != 0:
        print("bench/scale: must run as root", file=sys.stderr)
        return 2
    # SIGTERM and SIGHUP end the run as Ctrl-C does (also when started in the background,
    # where SIGINT comes ignored): through the cleanup below.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    settings = f'idle_timeout = "{args.limit:g}s"\nwarn_before = "{args.warn:g}s"\n'
    rig = Rig("bench-scale", "iws_scale", settings,
              sshd=f"MaxStartups {args.sessions + 10}\nMaxSessions 10\n",
              accounts=-(-args.sessions // args.per_account))
    run = Run(args, rig)
    try:
        run.go()
    except KeyboardInterrupt:
        print("bench/scale: interrupted; its sessions, accounts and sshd are gone",
              file=sys.stderr)
        return 130
    finally:
        run.watch.stop()
        rig.close()
    print(run.report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
