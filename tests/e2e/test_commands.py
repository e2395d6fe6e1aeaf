"""Commands without a pty under `command_idle_timeout`, through the real sshd (issue 10).

Policy in these tests: command sessions 2 s (`command_activity = "any"`; `iwd_typist`
gets "input", `iwd_patient` one minute), pty and login-shell sessions 3 s with a 1 s
warning. Events go to a syslog socket of our own. Time windows are measured from the
moment the test last sent or received something.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests import infra
from tests.e2e.conftest import E2E
from tests.e2e.test_events import Receiver

pytestmark = pytest.mark.root

LIMIT = 2.0
CLOSED = "closed after 2s without input"
BLOB_SIZE = 50_000_000
# Transfers are slowed to about 19 MB/s, so that each outlasts the 2 s deadline.
SCP_LIMIT_KBIT = "150000"
RSYNC_LIMIT_KIB = "18000"


def policy(log: Path) -> str:
    return f"""\
idle_timeout = "3s"
warn_before = "1s"
command_idle_timeout = "2s"

[[match]]
name = "typists"
users = "iwd_typist"
command_activity = "input"

[[match]]
name = "patient"
users = "iwd_patient"
command_idle_timeout = "1m"

[[match]]
name = "jobs"
users = "iwd_jobs"
sessions = "command"
exempt = true

[log]
syslog_socket = "{log}"
"""


class Site:
    """The sshd (sftp-server as Subsystem), the users, the event socket."""

    def __init__(self, e2e: E2E) -> None:
        self.e2e = e2e
        self.log = Receiver()
        self.policy = e2e.policy(policy(self.log.path), "commands")
        users = e2e.users
        self.alice = users.user("iwd_alice").name
        self.typist = users.user("iwd_typist").name
        self.patient = users.user("iwd_patient").name
        self.jobs = users.user("iwd_jobs").name
        self.server = self.with_subsystem("/usr/lib/openssh/sftp-server")

    def with_subsystem(self, subsystem: str) -> infra.SshServer:
        return self.e2e.server(f"ForceCommand {self.e2e.force_command(self.policy)}\n"
                               f"Subsystem sftp {subsystem}\n")

    def no_pty(self, user: str, command: str | None = None) -> pexpect.spawn:
        """`ssh -T user@host [command]`: no pty on the server, whatever the client has."""
        argv = self.server.ssh_argv(user, "-T") + ([command] if command else [])
        return pexpect.spawn(argv[0], argv[1:], timeout=20)

    def run(self, user: str, command: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
        return self.server.run(user, command, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def site(e2e: E2E) -> Iterator[Site]:
    parts = Site(e2e)
    yield parts
    parts.log.close()


def closed_in_window(child: pexpect.spawn, since: float, *, early: float = 0.0) -> None:
    """Closed LIMIT after `since` (up to `early` sooner: the deadline started before it)."""
    child.expect(pexpect.EOF, timeout=10)
    elapsed = time.monotonic() - since
    assert LIMIT - early <= elapsed <= LIMIT + 1.0, f"closed {elapsed:.2f}s after {since}"
    assert CLOSED in child.before.decode(errors="replace")
    child.close()
    assert child.exitstatus == 124


def nothing_left(user: str) -> None:
    infra.wait_for(lambda: not infra.processes_of(user), 1.0, interval=0.05)


# -- shells without a pty ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["script -qfc 'bash --norc -i' /dev/null", "bash"],
                         ids=["script-pty-shell", "ssh-T-bash"])
def test_a_shell_without_a_pty_answers_then_is_closed_when_idle(site: Site,
                                                                command: str) -> None:
    child = site.no_pty(site.alice, command)
    child.send("echo answer-$((6*7))\n")
    child.expect("answer-42")
    seen = time.monotonic()
    closed_in_window(child, seen)
    nothing_left(site.alice)


def test_with_any_output_keeps_a_command_alive(site: Site) -> None:
    child = site.no_pty(site.alice, "for i in 1 2 3 4 5; do echo tick-$i; sleep 1; done")
    child.expect(pexpect.EOF)  # the client's input stays open (pexpect's pty) all along
    assert child.before.decode().split() == [f"tick-{i}" for i in range(1, 6)]
    child.close()
    assert child.exitstatus == 0


def test_with_input_output_does_not_count(site: Site) -> None:
    child = site.no_pty(site.typist, "for i in 1 2 3 4 5; do echo tick-$i; sleep 1; done")
    child.expect("tick-1")
    # output does not count: the deadline runs from the start, just before tick-1
    closed_in_window(child, time.monotonic(), early=0.5)
    assert "tick-4" not in child.before.decode()
    nothing_left(site.typist)


@pytest.mark.parametrize("who", ["any", "input"])
def test_a_silent_command_outlives_nothing(site: Site, who: str) -> None:
    user = site.alice if who == "any" else site.typist
    child = site.no_pty(user, "echo started; sleep 30")
    child.expect("started")
    # under "input" the deadline runs from the start, just before "started"
    closed_in_window(child, time.monotonic(), early=0.5 if who == "input" else 0.0)
    nothing_left(user)


def test_ssh_t_bash_is_interactive_even_with_a_command_exemption(site: Site) -> None:
    """Issue 9, escape 6: `sessions = "command"` rules no longer match a pty shell."""
    child = site.server.interactive(site.jobs, command="bash --norc")
    child.send("echo in-a-pty-$((2+3))\r")
    sent = time.monotonic()
    child.expect("in-a-pty-5")
    child.expect(pexpect.EOF, timeout=10)
    elapsed = time.monotonic() - sent
    assert 3.0 <= elapsed <= 4.0, f"closed {elapsed:.2f}s after the last key"
    assert "closed after 3s without input" in child.before.decode(errors="replace")


def test_the_exempt_rule_still_exempts_the_accounts_commands(site: Site) -> None:
    result = site.run(site.jobs, "sleep 2.5; echo ran-untimed", input=b"")
    assert (result.returncode, result.stdout) == (0, b"ran-untimed\n")


# -- what passes through -----------------------------------------------------------------------


def test_exit_status_and_streams_pass_through(site: Site) -> None:
    result = site.run(site.alice, "echo out; echo err >&2; echo more; exit 42")
    assert (result.returncode, result.stdout, result.stderr) == (42, b"out\nmore\n", b"err\n")
    # the relay reports a signal as a shell does (exec'd, ssh would say 255)
    assert site.run(site.alice, "kill -TERM $$").returncode == 128 + signal.SIGTERM


def test_half_close_ends_the_upload_when_the_file_is_sent(site: Site) -> None:
    blob = os.urandom(5_000_000)
    started = time.monotonic()
    result = site.run(site.alice, "cat > upload.bin; sha256sum < upload.bin", input=blob)
    assert time.monotonic() - started < LIMIT, "the upload waited for the deadline"
    assert result.stdout.split()[0].decode() == hashlib.sha256(blob).hexdigest()


@pytest.mark.parametrize("how", ["ssh host < job.sh", "ssh host 'bash -s' < job.sh"])
def test_a_batch_on_stdin_runs_to_its_end(site: Site, tmp_path: Path, how: str) -> None:
    """The client's input ends at once: nobody can type, so the batch is not idle."""
    job = b"echo job-start\nsleep 5\necho job-end\n"
    if how.startswith("ssh host <"):  # a login shell without a pty: 3 s idle_timeout
        argv = site.server.ssh_argv(site.typist, "-T")
    else:  # a command with "input": 2 s
        argv = [*site.server.ssh_argv(site.typist), "bash -s"]
    result = subprocess.run(argv, input=job, capture_output=True, timeout=30, check=False)
    assert (result.returncode, result.stdout) == (0, b"job-start\njob-end\n"), result.stderr


def test_a_killed_client_leaves_nothing_behind(site: Site) -> None:
    user = site.patient  # one minute: only the client's going away can end this
    child = site.no_pty(user, "setsid sleep 1001 & nohup sleep 1002 >/dev/null 2>&1 & "
                              "echo started; sleep 1003")
    child.expect("started")
    infra.wait_for(lambda: any("sleep 1002" in p for p in infra.processes_of(user)), 2.0)
    os.kill(child.pid, signal.SIGKILL)
    killed = time.monotonic()
    infra.wait_for(lambda: not infra.processes_of(user), 2.0, interval=0.05)
    assert time.monotonic() - killed <= 2.0
    ended = site.log.wait(user, lambda evs: any(e.name == "disconnect" for e in evs))
    assert next(e for e in ended if e.name == "disconnect")["mode"] == "command"


def test_events_name_the_command_never_its_arguments(site: Site) -> None:
    result = site.run(site.alice, "SECRET=hunter2 tail -f /dev/null")
    assert result.returncode == 124
    events = site.log.wait(site.alice, lambda evs: any(
        e.name == "timeout" and e.get("command") == "tail" for e in evs))
    start = next(e for e in events if e.name == "session_start" and e.get("command") == "tail")
    timeout = [e for e in events if e.name == "timeout" and e["session"] == start["session"]]
    for event in (start, timeout[0]):
        assert (event["mode"], event["idle_timeout"], event["activity"]) == ("command", "2",
                                                                                "any")
        assert "warn_before" not in event.fields
    assert timeout[0]["idle"] == "2"
    logged = " ".join(str(e.fields) for e in events)
    assert "hunter2" not in logged and "/dev/null" not in logged


def test_an_idle_sftp_session_is_closed(site: Site) -> None:
    argv = ["sftp", *site.server.client_options(), f"{site.alice}@127.0.0.1"]
    client = pexpect.spawn(argv[0], argv[1:], timeout=20)
    client.expect("sftp> ")
    client.sendline("pwd")
    client.expect("sftp> ")
    prompted = time.monotonic()
    events = site.log.wait(site.alice, lambda evs: any(
        e.name == "timeout" and e.get("command") == "sftp-server" for e in evs), timeout=5)
    timed_out = time.monotonic() - prompted
    assert LIMIT - 0.2 <= timed_out <= LIMIT + 1.0, f"closed {timed_out:.2f}s after the last reply"
    assert [e for e in events if e.get("command") == "sftp-server"][-1].name == "timeout"
    nothing_left(site.alice)
    client.expect("Connection closed")
    client.sendline("ls")
    client.expect(pexpect.EOF)


# -- transfers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blob() -> Path:
    path = infra.private_dir("cmd-blob") / "blob.bin"
    path.write_bytes(os.urandom(BLOB_SIZE))
    os.chmod(path, 0o644)
    return path


def timed(*argv: str) -> float:
    """Run a transfer client; return how long it took (it must outlast the deadline)."""
    started = time.monotonic()
    done = infra.run(*argv, check=False)
    assert done.returncode == 0, done.stderr
    elapsed = time.monotonic() - started
    assert elapsed > LIMIT, f"{argv[0]} took {elapsed:.1f}s: not longer than the deadline"
    return elapsed


def same_file(a: Path, b: Path) -> None:
    assert a.stat().st_size == b.stat().st_size == BLOB_SIZE
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("legacy", [False, True], ids=["scp-sftp-protocol", "scp-O"])
def test_scp_moves_50_mb_each_way(site: Site, blob: Path, tmp_path: Path, legacy: bool) -> None:
    opts = [*site.server.client_options(), "-l", SCP_LIMIT_KBIT] + (["-O"] if legacy else [])
    remote = f"{site.alice}@127.0.0.1:scp-copy.bin"
    timed("scp", *opts, str(blob), remote)
    back = tmp_path / "back.bin"
    timed("scp", *opts, remote, str(back))
    same_file(blob, back)


@pytest.mark.parametrize("subsystem", ["/usr/lib/openssh/sftp-server", "internal-sftp"])
def test_sftp_moves_50_mb_each_way(site: Site, blob: Path, tmp_path: Path,
                                   subsystem: str) -> None:
    server = site.with_subsystem(subsystem)
    back = tmp_path / "back.bin"
    for line in (f"put {blob} sftp-copy.bin", f"get sftp-copy.bin {back}"):
        batch = tmp_path / "batch"
        batch.write_text(line + "\n")
        timed("sftp", *server.client_options(), "-l", SCP_LIMIT_KBIT, "-b", str(batch),
              f"{site.alice}@127.0.0.1")
    same_file(blob, back)


def test_rsync_moves_50_mb_each_way(site: Site, blob: Path, tmp_path: Path) -> None:
    ssh = shlex.join(["ssh", *site.server.client_options()])
    remote = f"{site.alice}@127.0.0.1:rsync-copy.bin"
    rsync = ["rsync", "-e", ssh, f"--bwlimit={RSYNC_LIMIT_KIB}", "--whole-file"]
    timed(*rsync, str(blob), remote)
    back = tmp_path / "back.bin"
    timed(*rsync, remote, str(back))
    same_file(blob, back)
