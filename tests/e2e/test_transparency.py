"""idlewrap must be invisible to what runs inside: each test compares it with a pass-through.

One sshd, two users. `iwb_wrap` gets the wrapper as ForceCommand; `iwb_pass` gets a
ForceCommand that only passes the session on:

    if [ -n "$SSH_ORIGINAL_COMMAND" ]; then exec "$SHELL" -c "$SSH_ORIGINAL_COMMAND";
    else exec "$SHELL" -l; fi

A pass-through rather than `ForceCommand none`: sshd runs any ForceCommand through
`<login shell> -c`, and that extra bash is not idlewrap's doing (the command sees
SHLVL=1 behind it, 0 without a ForceCommand). The pass-through goes through the same
layer, so the only difference left is idlewrap.
The one thing the pass-through shows that idlewrap rightly does not is
SSH_ORIGINAL_COMMAND: without any ForceCommand sshd does not set it (docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pexpect
import pytest

from tests import infra
from tests.e2e.conftest import E2E

pytestmark = pytest.mark.root

PASS_THROUGH = (
    'if [ -n "$SSH_ORIGINAL_COMMAND" ]; then exec "$SHELL" -c "$SSH_ORIGINAL_COMMAND"; '
    'else exec "$SHELL" -l; fi'
)
# A client with no locale of its own; with -F /dev/null it sends no variable either.
CLIENT_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm"}
# ...or one that sends LC_CTYPE=C explicitly: the same case even where sshd's PAM
# stack sets LANG from /etc/default/locale.
SEND_C = {"LC_CTYPE": "C"}
VARIABLE = re.compile(rb"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


class Site:
    """The sshd with both users."""

    def __init__(self, e2e: E2E) -> None:
        self.wrap = e2e.users.user("iwb_wrap")
        self.passing = e2e.users.user("iwb_pass")
        # A syslog socket of our own, so that no "cannot log" line differs where none runs.
        log = infra.private_dir("transparency-log") / "log"
        self.log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.log.bind(str(log))
        os.chmod(log, 0o666)
        policy = e2e.policy(f'idle_timeout = "5m"\nwarn_before = "1m"\n'
                            f'[log]\nsyslog_socket = "{log}"\n', "transparency")
        self.server = e2e.server(
            f"ForceCommand {e2e.force_command(policy)}\n"
            f"Match User {self.passing.name}\n  ForceCommand {PASS_THROUGH}\n"
        )

    def users(self) -> dict[str, str]:
        return {"idlewrap": self.wrap.name, "pass-through": self.passing.name}

    def run(self, user: str, command: str, client_env: dict[str, str] | None = None) -> bytes:
        """`ssh host command` without a pty; stdout."""
        env = {**CLIENT_ENV, **(client_env or {})}
        sends = [a for name in env if name.startswith("LC_") for a in ("-o", f"SendEnv={name}")]
        done = subprocess.run([*self.server.ssh_argv(user, *sends), command], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                              check=False)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        return done.stdout

    def run_tty(self, user: str, command: str, *, setup: str = "",
                rows: int = 24, cols: int = 80) -> bytes:
        """`ssh -tt host command` from a terminal of its own (set up by `setup`); all it shows."""
        ssh = shlex.join([*self.server.ssh_argv(user, "-tt"), command])
        client = pexpect.spawn("sh", ["-c", f"{setup}exec {ssh}"], env=CLIENT_ENV,
                               dimensions=(rows, cols), timeout=15)
        client.expect(pexpect.EOF)
        client.close()
        assert client.exitstatus == 0, client.before
        return bytes(client.before)

    def both(self, command: str, *, tty: bool = False, **kw: Any) -> dict[str, bytes]:
        """What `command` shows through idlewrap and through the pass-through."""
        run: Callable[..., bytes] = self.run_tty if tty else self.run
        self.discard_events()
        return {who: run(user, command, **kw) for who, user in self.users().items()}

    def discard_events(self) -> None:
        """Empty the log socket: a full one holds each wrapper up to 1 s (EventLog.close)."""
        with contextlib.suppress(BlockingIOError):
            while True:
                self.log.recv(65536, socket.MSG_DONTWAIT)


@pytest.fixture(scope="module")
def site(e2e: E2E) -> Iterator[Site]:
    parts = Site(e2e)
    yield parts
    parts.log.close()


def complete_lines(output: bytes) -> list[bytes]:
    """The lines a program printed, without what followed its last newline.

    What follows it is the wrapper's own end-of-session output, which
    test_no_terminal_reset_a_program_did_not_ask_for compares on its own.
    """
    return re.split(rb"\r?\n", output)[:-1]


def environment(site: Site, who: str, output: bytes) -> dict[str, str]:
    """`env` output with what two connections of two users legitimately differ in made equal."""
    user = site.users()[who].encode()
    env = {}
    for line in complete_lines(output):
        match = VARIABLE.match(line)
        if match:
            name, value = match.group(1).decode(), match.group(2).replace(user, b"USER")
            env[name] = value.decode(errors="replace")
    env.pop("_", None)  # the path of the command bash ran last
    for name in ("SSH_CONNECTION", "SSH_CLIENT"):  # the client's port
        if name in env:
            words = env[name].split()
            words[1] = "PORT"
            env[name] = " ".join(words)
    if "SSH_TTY" in env:
        env["SSH_TTY"] = re.sub(r"\d+$", "N", env["SSH_TTY"])
    return env


# -- defect 7: the environment -----------------------------------------------------------------


@pytest.mark.parametrize("client_env", [{}, SEND_C], ids=["no-locale", "LC_CTYPE=C"])
def test_characters_count_as_without_idlewrap(site: Site, client_env: dict[str, str]) -> None:
    """Python's locale coercion (PEP 538, even under -I) must not reach the session."""
    shown = site.both(r"printf '\303\251\n' | wc -m", client_env=client_env)
    assert shown["idlewrap"] == shown["pass-through"], shown


@pytest.mark.parametrize("tty", [False, True], ids=["ssh", "ssh-tt"])
def test_environment_is_sshds(site: Site, tty: bool) -> None:
    """The session gets exactly sshd's environment: nothing added, nothing lost."""
    shown = site.both("env", tty=tty)
    wrapped = environment(site, "idlewrap", shown["idlewrap"])
    passed = environment(site, "pass-through", shown["pass-through"])
    assert "SSH_ORIGINAL_COMMAND" not in wrapped  # as without a ForceCommand
    assert passed.pop("SSH_ORIGINAL_COMMAND") == "env"
    assert wrapped == passed


# -- defect 8: the client's terminal settings --------------------------------------------------


def test_terminal_settings_are_the_clients(site: Site) -> None:
    """The inner pty starts with the termios the client's terminal sent, not a fresh pty's."""
    shown = site.both("stty -a", tty=True, setup="stty erase ^H intr ^X; ")
    wrapped = complete_lines(shown["idlewrap"])
    passed = complete_lines(shown["pass-through"])
    assert b"erase = ^H" in b" ".join(passed) and b"intr = ^X" in b" ".join(passed), passed
    assert wrapped == passed


# -- defect 4: orphans ---------------------------------------------------------------------------


def test_orphans_of_a_command_are_not_its_children(site: Site) -> None:
    """`ssh host CMD` is exec'd: the wrapper's child-subreaper flag must not outlive the exec.

    Otherwise every orphan below CMD becomes CMD's child, a zombie it never waits for.
    """
    command = (
        "orphan=$(sh -c 'sleep 30 >/dev/null 2>&1 & echo $!'); "
        'parent=$(ps -o ppid= -p "$orphan"); kill "$orphan"; '
        'if [ -z "$parent" ]; then echo lost; '
        'elif [ "$parent" -eq $$ ]; then echo adopted; else echo not-adopted; fi'
    )
    shown = site.both(command)
    assert shown["pass-through"] == b"not-adopted\n"
    assert shown["idlewrap"] == shown["pass-through"]


# -- defects 9 and 10: the lead's relay work fixes them --------------------------------------------


def test_no_terminal_reset_a_program_did_not_ask_for(site: Site) -> None:
    """`printf hi` set no terminal mode: nothing but `hi` may follow it on the terminal."""
    shown = site.both("printf hi", tty=True)
    assert shown["pass-through"].endswith(b"hi")
    assert shown["idlewrap"] == shown["pass-through"]


def test_a_0x0_window_stays_0x0(site: Site) -> None:
    """A client whose terminal has no size passes none on; the program must see the same."""
    shown = site.both("stty size", tty=True, rows=0, cols=0)
    passed = complete_lines(shown["pass-through"])
    assert passed == [b"0 0"]
    assert complete_lines(shown["idlewrap"]) == passed
