"""The core wrapper as deployed: a private sshd with ForceCommand, real users, the real ssh client.

Policy in these tests: idle_timeout 3 s, warn_before 1 s. Time windows are
measured from the moment the test sent its last key.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pexpect
import pytest

from tests import infra
from tests.e2e.conftest import E2E

pytestmark = pytest.mark.root

PROMPT = "iw-prompt\\$ "
IDLE = 3.0
POLICY = 'idle_timeout = "3s"\nwarn_before = "1s"\n'
ESCAPE_RC = (
    'if [ -z "$IW_ESCAPED" ]; then export IW_ESCAPED=1; exec bash -i; fi\n'
    "PS1='iw-prompt$ '\n"
)


class Site:
    """One sshd with per-user Match blocks for each deployment under test."""

    def __init__(self, e2e: E2E) -> None:
        self.e2e = e2e
        policy = e2e.policy(POLICY)
        users = e2e.users
        self.alice = users.user("iwt_alice")
        self.escaper = users.user("iwt_escaper")
        self.escaper.write(".bashrc", ESCAPE_RC)
        launcher = infra.private_dir("launcher") / "idlewrap-shell"
        infra.run(e2e.python, "-I", "-m", "idlewrap", "install-shell", str(launcher),
                  "--config", str(policy))
        self.launcher = launcher
        self.login = users.user("iwt_loginsh", shell=str(launcher))
        self.login.write(".bashrc", ESCAPE_RC)
        self.login_plain = users.user("iwt_loginsh2", shell=str(launcher))
        self.unsafe = users.user("iwt_unsafe")
        unsafe_policy = self.unsafe.write("policy.toml", POLICY)
        self.invalid = users.user("iwt_invalid")
        invalid_policy = e2e.policy('idle_timeout = "3s"\nwarn_before = "1s"\nidle_timout = 5\n')
        self.server = e2e.server(
            f"ForceCommand {e2e.force_command(policy)}\n"
            "Subsystem sftp /usr/lib/openssh/sftp-server\n"
            f"Match User {self.login.name},{self.login_plain.name}\n  ForceCommand none\n"
            f"Match User {self.unsafe.name}\n  ForceCommand {e2e.force_command(unsafe_policy)}\n"
            f"Match User {self.invalid.name}\n  ForceCommand {e2e.force_command(invalid_policy)}\n"
        )


@pytest.fixture(scope="module")
def site(e2e: E2E) -> Site:
    return Site(e2e)


def login(site: Site, user: str, **kw: object) -> pexpect.spawn:
    """An interactive session at its first prompt."""
    child = site.server.interactive(user, **kw)  # type: ignore[arg-type]
    child.expect(PROMPT)
    return child


def send_last_key(child: pexpect.spawn, line: str, echo: str) -> float:
    """Type `line`, wait for `echo`, and return when the last key was sent."""
    child.send(line + "\r")
    sent = time.monotonic()
    child.expect(echo)
    return sent


def closed_after(child: pexpect.spawn, since: float, limit: float = 8.0) -> float:
    """Seconds from `since` until the session closed (the client saw EOF)."""
    child.expect(pexpect.EOF, timeout=limit)
    return time.monotonic() - since


def assert_closed_on_time(child: pexpect.spawn, last_key: float) -> None:
    elapsed = closed_after(child, last_key)
    assert IDLE <= elapsed <= IDLE + 1.0, f"closed {elapsed:.2f}s after the last key"
    assert "closed after 3s without input" in child.before.decode(errors="replace")


def test_idle_session_is_closed_on_time_with_a_message(site: Site) -> None:
    child = login(site, site.alice.name)
    last = send_last_key(child, "echo ready-$((40+2))", "ready-42")
    assert_closed_on_time(child, last)
    child.close()
    assert child.exitstatus == 124


def test_a_key_every_second_keeps_the_session_open(site: Site) -> None:
    child = login(site, site.alice.name)
    start = time.monotonic()
    while time.monotonic() - start < 8:
        child.send("x")
        time.sleep(1.0)
        assert child.isalive(), "closed although a key came every second"
    child.send("\x15echo still-$((1+1))\r")
    child.expect("still-2")
    child.send("exit\r")
    child.expect(pexpect.EOF)


def test_program_output_does_not_keep_the_session_open(site: Site) -> None:
    child = login(site, site.alice.name)
    last = send_last_key(child, "(while :; do echo tick; sleep 0.2; done) &", "tick")
    assert_closed_on_time(child, last)


def test_touching_the_tty_does_not_keep_the_session_open(site: Site) -> None:
    child = login(site, site.alice.name)
    last = send_last_key(child, "(while :; do touch $(tty); sleep 0.2; done) & echo touching",
                         "touching\r\n")
    assert_closed_on_time(child, last)


def test_tiocsti_from_inside_does_not_keep_the_session_open(site: Site) -> None:
    inject = ("import fcntl, termios, time\\nwhile True:\\n"
              " fcntl.ioctl(0, termios.TIOCSTI, b\\\" \\\")\\n time.sleep(0.3)")
    child = login(site, site.alice.name)
    last = send_last_key(child, f'/usr/bin/python3 -c "$(printf "{inject}")" & echo injecting',
                         "injecting\r\n")
    assert_closed_on_time(child, last)


def test_ssh_tt_bash_is_held_to_the_same_deadline(site: Site) -> None:
    child = site.server.interactive(site.alice.name, command="bash")
    child.expect(PROMPT)
    last = send_last_key(child, "echo inner-$((2+2))", "inner-4")
    assert_closed_on_time(child, last)


def test_exit_status_passes_through(site: Site) -> None:
    assert site.server.run(site.alice.name, "exit 42").returncode == 42
    # command mode execs: a signal death is sshd's to report, as without idlewrap (ssh: 255)
    assert site.server.run(site.alice.name, "kill -TERM $$").returncode == 255


def test_signal_death_in_a_pty_is_128_plus_n(site: Site) -> None:
    child = site.server.interactive(site.alice.name, command="kill -TERM $$")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 128 + signal.SIGTERM


def test_interactive_exit_status_passes_through(site: Site) -> None:
    child = login(site, site.alice.name)
    child.send("exit 7\r")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 7


def test_binary_output_is_byte_exact(site: Site) -> None:
    command = ("f=$(mktemp); head -c 20000000 /dev/urandom > $f; "
               "sha256sum < $f | cut -d' ' -f1 >&2; cat $f; rm -f $f")
    result = site.server.run(site.alice.name, command)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == 20_000_000
    assert hashlib.sha256(result.stdout).hexdigest() == result.stderr.decode().strip()


def test_binary_input_is_byte_exact(site: Site) -> None:
    blob = os.urandom(5_000_000)
    result = site.server.run(site.alice.name, "sha256sum | cut -d' ' -f1", input=blob)
    assert result.stdout.decode().strip() == hashlib.sha256(blob).hexdigest()


@pytest.fixture(scope="module")
def blob() -> Path:
    path = infra.private_dir("blob") / "blob.bin"
    path.write_bytes(os.urandom(5_000_000))
    os.chmod(path, 0o644)
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["scp-sftp-protocol", "scp-O"])
def test_scp_round_trip(site: Site, blob: Path, tmp_path: Path, legacy: bool) -> None:
    server, user = site.server, site.alice.name
    opts = server.client_options() + (["-O"] if legacy else [])
    remote = f"{user}@127.0.0.1:copy.bin"
    infra.run("scp", *opts, str(blob), remote)
    back = tmp_path / "back.bin"
    infra.run("scp", *opts, remote, str(back))
    assert back.read_bytes() == blob.read_bytes()


@pytest.mark.parametrize("subsystem", ["/usr/lib/openssh/sftp-server", "internal-sftp"])
def test_sftp_round_trip(site: Site, e2e: E2E, blob: Path, tmp_path: Path, subsystem: str) -> None:
    server = e2e.server(
        f"ForceCommand {e2e.force_command(e2e.policy(POLICY))}\nSubsystem sftp {subsystem}\n"
    )
    back = tmp_path / "back.bin"
    batch = tmp_path / "batch"
    batch.write_text(f"put {blob} sftp-copy.bin\nget sftp-copy.bin {back}\n")
    result = infra.run("sftp", *server.client_options(), "-b", str(batch),
                       f"{site.alice.name}@127.0.0.1", check=False)
    assert result.returncode == 0, result.stderr + server.log()[-2000:]
    assert back.read_bytes() == blob.read_bytes()


def test_ssh_T_shell_works_and_is_closed_when_idle(site: Site) -> None:
    argv = site.server.ssh_argv(site.alice.name, "-T")
    child = pexpect.spawn(argv[0], argv[1:], timeout=20)
    child.send("echo no-tty-$((3*3))\n")
    sent = time.monotonic()
    child.expect("no-tty-9")
    elapsed = closed_after(child, sent)
    assert IDLE <= elapsed <= IDLE + 1.0, f"closed {elapsed:.2f}s after the last input"
    assert "closed after 3s without input" in child.before.decode(errors="replace")


def test_ssh_T_shell_reads_stdin_to_the_end(site: Site) -> None:
    result = subprocess.run(site.server.ssh_argv(site.alice.name, "-T"),
                            input=b"echo piped-$((5+5))\nexit 3\n", capture_output=True, timeout=20)
    assert b"piped-10" in result.stdout
    assert result.returncode == 3


def test_window_size_at_start_and_after_resize(site: Site) -> None:
    child = login(site, site.alice.name, rows=33, cols=101)
    child.send("stty size\r")
    child.expect("33 101")
    child.setwinsize(41, 123)
    infra.wait_for(lambda: _stty_size(child) == "41 123", 5, interval=0.2)
    child.send("exit\r")
    child.expect(pexpect.EOF)


def _stty_size(child: pexpect.spawn) -> str:
    child.send("stty size\r")
    child.expect(r"(\d+ \d+)\r\n")
    return str(child.match.group(1).decode())


def test_killing_the_client_leaves_no_process_behind(site: Site) -> None:
    user = site.alice.name
    child = login(site, user)
    child.send("sleep 1001 & nohup sleep 1002 >/dev/null 2>&1 & setsid sleep 1003 & "
               "(trap '' HUP TERM; sleep 1004) & echo started\r")
    child.expect("started\r\n")
    # `echo started` can run before the backgrounded setsid has exec'd its sleep
    infra.wait_for(lambda: any("sleep 1003" in p for p in infra.processes_of(user)), 2.0)
    os.kill(child.pid, signal.SIGKILL)
    killed = time.monotonic()
    infra.wait_for(lambda: not infra.processes_of(user), 2.0, interval=0.05)
    assert time.monotonic() - killed <= 2.0


def test_timeout_leaves_no_process_behind(site: Site) -> None:
    user = site.alice.name
    child = login(site, user)
    last = send_last_key(child, "setsid sleep 1005 & (trap '' HUP TERM; sleep 1006) & echo bg",
                         "bg\r\n")
    assert_closed_on_time(child, last)
    infra.wait_for(lambda: not infra.processes_of(user), 1.0, interval=0.05)


def test_login_shell_mode_cannot_be_escaped_through_bashrc(site: Site) -> None:
    child = login(site, site.login.name)
    last = send_last_key(child, "echo rc-escaped=$IW_ESCAPED", "rc-escaped=1")
    assert_closed_on_time(child, last)


def test_login_shell_mode_runs_commands(site: Site) -> None:
    result = site.server.run(site.login_plain.name, "echo via-launcher; exit 5")
    assert result.stdout == b"via-launcher\n"
    assert result.returncode == 5


def test_forcecommand_alone_is_escaped_through_bashrc(site: Site) -> None:
    """Why docs/deploy.md recommends login-shell mode: `bash -c` reads ~/.bashrc first."""
    child = login(site, site.escaper.name)
    send_last_key(child, "echo escaped", "escaped\r\n")
    time.sleep(IDLE + 1.5)  # waiting out the deadline is the point of this test
    assert child.isalive(), "the wrapper now runs before ~/.bashrc: update docs/deploy.md"
    child.send("exit\r")
    child.expect(pexpect.EOF)


@pytest.mark.parametrize("who", ["unsafe", "invalid"])
def test_untrusted_or_invalid_policy_falls_back_to_builtin_defaults(site: Site, who: str) -> None:
    user = site.unsafe if who == "unsafe" else site.invalid
    child = login(site, user.name)
    banner = child.before.decode(errors="replace")
    expected = "owned by uid" if who == "unsafe" else "idle_timout"
    assert expected in banner and "using built-in defaults" in banner, banner
    send_last_key(child, "echo waiting", "waiting\r\n")
    time.sleep(IDLE + 1.5)  # the policy's 3 s must NOT apply: the default is 15 minutes
    assert child.isalive(), "a policy the wrapper must not trust was applied"
    child.send("exit\r")
    child.expect(pexpect.EOF)
