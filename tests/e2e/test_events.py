"""The audit trail as deployed: a real sshd whose PAM stack runs the hook, the wrapper as
ForceCommand, and a syslog socket of our own that both log to.

Policy in these tests: idle_timeout 4 s, warn_before 2 s. Events are read by a thread
from a unix datagram socket the test binds (like /dev/log, but ours), so nothing
depends on a syslog daemon. Time windows are measured from the moment the test sent
its last key.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest

from idlewrap.events import connection_fields
from tests import infra
from tests.e2e.conftest import E2E
from tests.test_events import parse_datagram

pytestmark = pytest.mark.root

PROMPT = "iw-prompt\\$ "
IDLE = 4.0
POLICY = 'idle_timeout = "4s"\nwarn_before = "2s"\n'
EXEMPT_RULE = "ev-exempt"
CONCURRENT = 30
PAM_ENVIRONMENT = "LD_PRELOAD DEFAULT=/nonexistent.so\n"
SSH_CONNECTION = "10.0.0.5 52144 10.0.0.1 22"


@dataclass(frozen=True)
class Event:
    pri: int
    pid: int
    fields: dict[str, str]

    @property
    def name(self) -> str:
        return self.fields["event"]

    def __getitem__(self, key: str) -> str:
        return self.fields[key]

    def get(self, key: str) -> str | None:
        return self.fields.get(key)


class Receiver:
    """A syslog socket of our own: a thread keeps every datagram that arrives, in order.

    No watchdog runs for the tests here (test_watchdog.py has one), so every wrapper
    logs `config_error reason=no_watchdog` first; `keep_no_watchdog=False` leaves those out.
    """

    def __init__(self, *, keep_no_watchdog: bool = True) -> None:
        self.keep_no_watchdog = keep_no_watchdog
        self.path = infra.private_dir("ev-log") / "log"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        os.chmod(self.path, 0o666)  # the wrapper runs as the test user
        self.sock.settimeout(0.1)
        self.raw: list[bytes] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.raw.append(data)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(2)
        self.sock.close()

    def events(self, user: str) -> list[Event]:
        """Every event logged for `user` so far, in arrival order (parsed strictly)."""
        with self.lock:
            raw = list(self.raw)
        parsed = [Event(*parse_datagram(data)) for data in raw]
        return [e for e in parsed if e.get("user") == user
                and (self.keep_no_watchdog or e.fields.get("reason") != "no_watchdog")]

    def by_conn(self, user: str) -> dict[str, list[Event]]:
        """`user`'s events grouped by `conn`, connections in order of their first event."""
        groups: dict[str, list[Event]] = {}
        for event in self.events(user):
            groups.setdefault(event["conn"], []).append(event)
        return groups

    def wait(self, user: str, done: Callable[[list[Event]], bool],
             timeout: float = 10) -> list[Event]:
        """`user`'s events once `done(events)` holds (polled)."""
        found: list[Event] = []

        def check() -> bool:
            nonlocal found
            found = self.events(user)
            return done(found)

        try:
            infra.wait_for(check, timeout, interval=0.02)
        except AssertionError as e:
            gone = "" if self.path.exists() else f" ({self.path} was removed)"
            raise AssertionError(f"{e}{gone}; events so far: {[x.fields for x in found]}") from None
        return found

    def wait_closed(self, user: str, connections: int = 1, timeout: float = 10) -> list[Event]:
        """`user`'s events once `connections` PAM sessions have closed."""
        return self.wait(user, lambda evs: count(evs, "pam_close_session") >= connections,
                         timeout)


def names(events: list[Event]) -> list[str]:
    return [e.name for e in events]


def count(events: list[Event], name: str) -> int:
    return sum(e.name == name for e in events)


def hook_line(e2e: E2E, config: Path) -> str:
    """The PAM line pam/README.md tells admins to add, with the test venv's interpreter."""
    return (f"session optional pam_exec.so quiet {e2e.python} -I -m idlewrap.pam_hook "
            f"--config {config}")


class Site:
    """The receiver, the users, and the sshd servers the tests share."""

    def __init__(self, e2e: E2E) -> None:
        self.e2e = e2e
        self.log = Receiver(keep_no_watchdog=False)
        users = e2e.users
        self.flow = users.user("iwt_ev_flow")
        self.kill_in = users.user("iwt_ev_killin")
        self.kill_out = users.user("iwt_ev_killout")
        self.many = users.user("iwt_ev_many")
        self.gone = users.user("iwt_ev_gone")
        self.cmd = users.user("iwt_ev_cmd")
        self.exempt = users.user("iwt_ev_exempt")
        self.nosock = users.user("iwt_ev_nosock")
        self.pamt = users.user("iwt_ev_pamt")
        self.penv = users.user("iwt_ev_penv")
        self.penv_stock = users.user("iwt_ev_penv2")
        for user in (self.penv, self.penv_stock):
            user.write(".pam_environment", PAM_ENVIRONMENT)
        self.policy = e2e.policy(
            POLICY
            + f'\n[[match]]\nname = "{EXEMPT_RULE}"\nusers = ["{self.exempt.name}"]\n'
            "exempt = true\n"
            + f'\n[log]\nsyslog_socket = "{self.log.path}"\n',
            name="ev-policy",
        )
        config = (
            f"ForceCommand {e2e.force_command(self.policy)}\n"
            # 30 connections at once: the default 10:30:100 would drop some of them
            "MaxStartups 100\n"
        )
        hook = hook_line(e2e, self.policy)
        self.server = e2e.server(config, hook)
        self.stock_server = e2e.server(config, hook, stock_pam_env=True)
        self.missing_socket = infra.private_dir("ev-nolog") / "no-such-socket"
        self.nosock_policy = e2e.policy(
            POLICY + f'\n[log]\nsyslog_socket = "{self.missing_socket}"\n', name="ev-nosock"
        )
        self.nosock_server = e2e.server(
            f"ForceCommand {e2e.force_command(self.nosock_policy)}\n",
            hook_line(e2e, self.nosock_policy),
        )


@pytest.fixture(scope="module")
def site(e2e: E2E) -> Iterator[Site]:
    parts = Site(e2e)
    yield parts
    parts.log.close()


def login(server: infra.SshServer, user: str) -> pexpect.spawn:
    child = server.interactive(user)
    child.expect(PROMPT)
    return child


def closed_on_time(child: pexpect.spawn, last_key: float) -> None:
    """The session closed IDLE..IDLE+1 s after the last key, with the goodbye message."""
    child.expect(pexpect.EOF, timeout=IDLE + 5)
    elapsed = time.monotonic() - last_key
    assert IDLE <= elapsed <= IDLE + 1.0, f"closed {elapsed:.2f}s after the last key"
    assert "closed after 4s without input" in child.before.decode(errors="replace")


def assert_one_connection(events: list[Event], user: str) -> None:
    """All of `user`'s events share one `conn`; the wrapper's share one `session`."""
    assert len({e["conn"] for e in events}) == 1, [e.fields for e in events]
    wrapper = [e for e in events if not e.name.startswith("pam_")]
    assert len({e["session"] for e in wrapper}) == 1, [e.fields for e in wrapper]
    for e in events:
        assert e["user"] == user and e["rhost"] == "127.0.0.1"


# -- one session, end to end ----------------------------------------------------------------


def test_warned_resumed_warned_timed_out(site: Site) -> None:
    user = site.flow.name
    child = login(site.server, user)
    child.send("echo ready-$((40+2))\r")
    child.expect("ready-42")
    site.log.wait(user, lambda evs: count(evs, "warning") == 1, IDLE + 3)
    child.send(" ")  # a key while warned: the warning goes, the session goes on
    last_key = time.monotonic()
    site.log.wait(user, lambda evs: count(evs, "activity_resumed") == 1, 3)
    closed_on_time(child, last_key)
    events = site.log.wait_closed(user)
    assert names(events) == [
        "pam_open_session", "session_start", "warning", "activity_resumed", "warning",
        "timeout", "pam_close_session",
    ]
    assert_one_connection(events, user)
    open_, start, warn1, resumed, warn2, timeout, close = events
    assert start["mode"] == "interactive" and start["tty"].startswith("/dev/pts/")
    assert (start["idle_timeout"], start["warn_before"], start["action"]) == ("4", "2", "terminate")
    assert start["uid"] == str(site.flow.uid) and start["shell"] == "/bin/bash"
    # whole seconds, rounded: 2 and 2 on time, a loaded machine may add one
    for warning in (warn1, warn2):
        assert warning["remaining"] in ("1", "2") and warning["idle"] in ("2", "3")
    assert resumed["idle"] in ("2", "3")
    assert timeout["idle"] in ("4", "5")
    for pam in (open_, close):
        assert pam["service"] == site.server.pam_service and pam["tty"] == "ssh"
        assert pam["uid"] == str(site.flow.uid) and pam.pri == 86
    assert [e.pri for e in (start, warn1, resumed, warn2)] == [86] * 4
    assert timeout.pri == 85  # notice: alert-worthy
    # The wrapper logs with its own pid; the hook runs in sshd's [priv] process.
    assert start.pid == int(start["pid"]) == timeout.pid
    assert open_.pid != start.pid


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_killed_wrapper_still_logs_pam_close(site: Site, where: str) -> None:
    user = (site.kill_in if where == "inside" else site.kill_out).name
    child = login(site.server, user)
    child.send("echo ppid=$PPID.\r")
    child.expect(r"ppid=(\d+)\.")
    ppid = int(child.match.group(1))
    events = site.log.wait(user, lambda evs: "session_start" in names(evs), 5)
    [start] = [e for e in events if e.name == "session_start"]
    assert int(start["pid"]) == ppid, "the shell's parent is not the wrapper that logged"
    if where == "inside":
        child.send("kill -9 $PPID\r")
    else:
        os.kill(ppid, signal.SIGKILL)
    child.expect(pexpect.EOF, timeout=5)
    events = site.log.wait_closed(user)
    assert names(events) == ["pam_open_session", "session_start", "pam_close_session"]
    assert_one_connection(events, user)


def test_client_gone_logs_disconnect(site: Site) -> None:
    user = site.gone.name
    child = login(site.server, user)
    os.kill(child.pid, signal.SIGKILL)  # the ssh client dies: sshd hangs up the session
    events = site.log.wait_closed(user)
    assert names(events) == [
        "pam_open_session", "session_start", "disconnect", "pam_close_session",
    ]
    assert_one_connection(events, user)
    assert events[2]["reason"] in ("hangup", "eof", "EIO") and events[2].pri == 86


def test_command_session_logs_mode_command_and_pam(site: Site) -> None:
    user = site.cmd.name
    result = site.server.run(user, "true")
    assert result.returncode == 0, result.stderr
    events = site.log.wait_closed(user)
    assert names(events) == ["pam_open_session", "session_start", "pam_close_session"]
    assert_one_connection(events, user)
    start = events[1]
    assert start["mode"] == "command" and "tty" not in start.fields


def test_exempt_user_logs_exempt(site: Site) -> None:
    user = site.exempt.name
    child = login(site.server, user)
    child.send("exit 3\r")
    child.expect(pexpect.EOF)
    events = site.log.wait_closed(user)
    assert names(events) == [
        "pam_open_session", "session_start", "exempt", "session_end", "pam_close_session",
    ]
    assert_one_connection(events, user)
    start, exempt, end = events[1:4]
    assert start["rule"] == EXEMPT_RULE
    assert "idle_timeout" not in start.fields and "warn_before" not in start.fields
    assert exempt["reason"] == f"policy {EXEMPT_RULE}" and exempt.pri == 85
    assert end["status"] == "3"


# -- many at once ---------------------------------------------------------------------------


def test_concurrent_sessions_lose_and_duplicate_nothing(site: Site, tmp_path: Path) -> None:
    """30 interactive sessions start at once and time out: every event once, per connection.

    The receiver's queue holds 10 datagrams (net.unix.max_dgram_qlen), so senders do
    meet a full queue: the events must still all arrive.
    """
    user = site.many.name
    argv = site.server.ssh_argv(user, "-tt")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm", "LANG": "C.UTF-8"}
    clients = []
    outputs = []
    for i in range(CONCURRENT):
        out = open(tmp_path / f"out.{i}", "wb")  # noqa: SIM115
        outputs.append(out)
        # stdin stays open and silent: a session with no keys at all
        clients.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out,
                                        stderr=subprocess.STDOUT, env=env))
    try:
        end = time.monotonic() + 45
        for client in clients:
            client.wait(max(0.1, end - time.monotonic()))
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
            if client.stdin:
                client.stdin.close()
        for out in outputs:
            out.close()
    statuses = [client.returncode for client in clients]
    texts = [(tmp_path / f"out.{i}").read_bytes().decode(errors="replace")
             for i in range(CONCURRENT)]
    assert statuses == [124] * CONCURRENT, (statuses, texts, site.server.log()[-3000:])
    events = site.log.wait_closed(user, CONCURRENT, 15)
    expected = ["pam_open_session", "session_start", "warning", "timeout", "pam_close_session"]
    for name in expected:
        assert count(events, name) == CONCURRENT, (name, names(events))
    assert len(events) == CONCURRENT * len(expected), names(events)
    conns = site.log.by_conn(user)
    assert len(conns) == CONCURRENT
    for conn, evs in conns.items():
        assert names(evs) == expected, (conn, [e.fields for e in evs])
        assert len({e["session"] for e in evs[1:4]}) == 1
    sessions = {e["session"] for e in events if e.name == "session_start"}
    assert len(sessions) == CONCURRENT


# -- logging fails --------------------------------------------------------------------------


def test_no_syslog_socket_still_times_out_on_time(site: Site) -> None:
    child = site.nosock_server.interactive(site.nosock.name)
    child.expect(PROMPT)
    seen = child.before.decode(errors="replace")
    child.send("echo ready-$((40+2))\r")
    last_key = time.monotonic()
    child.expect("ready-42")
    seen += child.before.decode(errors="replace")
    closed_on_time(child, last_key)
    seen += child.before.decode(errors="replace")
    complaints = [line.strip() for line in seen.splitlines() if "cannot log" in line]
    assert len(complaints) <= 1, complaints
    assert complaints in ([], [
        f"idlewrap: cannot log to {site.missing_socket}: No such file or directory "
        "(events go unlogged)"
    ])


# -- the PAM hook on its own ----------------------------------------------------------------


def test_pamtester_drives_the_installed_hook(site: Site) -> None:
    user = site.pamt
    service = Path(f"/etc/pam.d/idlewrap-test-ev-{os.getpid()}")
    service.write_text(hook_line(site.e2e, site.policy) + "\n")
    try:
        done = subprocess.run(
            ["pamtester", "-I", "rhost=10.0.0.5", "-I", "tty=ssh",
             "-E", f"SSH_CONNECTION={SSH_CONNECTION}",
             service.name, user.name, "open_session", "close_session"],
            capture_output=True, timeout=30, check=False,
        )
    finally:
        service.unlink()
    assert done.returncode == 0, done.stderr
    events = site.log.wait(user.name, lambda evs: len(evs) >= 2, 5)
    assert names(events) == ["pam_open_session", "pam_close_session"]
    conn = connection_fields({"SSH_CONNECTION": SSH_CONNECTION})["conn"]
    for e in events:
        assert e.fields == {
            "event": e.name, "user": user.name, "uid": str(user.uid), "rhost": "10.0.0.5",
            "rport": "52144", "conn": conn, "service": service.name, "tty": "ssh",
        }
        assert e.pri == 86


# -- pam_env: what ~/.pam_environment can do ------------------------------------------------


@pytest.mark.parametrize("stack", ["recommended", "stock"])
def test_pam_environment_reaches_the_session_only_with_the_stock_stack(
    site: Site, stack: str
) -> None:
    """Debian's `user_readenv=1` lets a user set LD_PRELOAD for the wrapper (and the hook)."""
    stock = stack == "stock"
    server = site.stock_server if stock else site.server
    user = (site.penv_stock if stock else site.penv).name
    result = server.run(user, 'echo "LD=[$LD_PRELOAD]"')
    assert result.returncode == 0, result.stderr
    events = site.log.wait_closed(user)
    assert_one_connection(events, user)
    if not stock:
        assert result.stdout == b"LD=[]\n"
        assert names(events) == ["pam_open_session", "session_start", "pam_close_session"]
        return
    assert result.stdout == b"LD=[/nonexistent.so]\n"
    assert b"/nonexistent.so" in result.stderr  # ld.so's complaint, from each process
    assert names(events) == [
        "pam_open_session", "config_error", "session_start", "pam_close_session",
    ]
    error = events[1]
    assert (error["reason"], error["variables"]) == ("unsafe_environment", "LD_PRELOAD")
    assert error.pri == 84
