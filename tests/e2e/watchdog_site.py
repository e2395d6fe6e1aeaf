"""A site with the watchdog: a private sshd whose PAM stack runs the hook, the watchdog as a
foreground root process on a socket and cgroup of its own, a syslog socket of our own.

Used by test_watchdog.py and test_escapes.py. Policy: idle_timeout 3 s, warn_before 1 s,
wrapper_grace 2 s. Users are named iww_*.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pexpect

from tests import infra
from tests.e2e.conftest import E2E
from tests.e2e.test_events import Event, Receiver

PROMPT = "iw-prompt\\$ "
IDLE = 3.0
GRACE = 2.0
EXEMPT = "wd-exempt"
ESCAPE_RC = (
    'if [ -z "$IW_ESCAPED" ]; then export IW_ESCAPED=1; exec bash -i; fi\n'
    "PS1='iw-prompt$ '\n"
)


class Site:
    """One watchdog, one sshd (ForceCommand for most, the launcher for `launcher_user`s)."""

    def __init__(self, e2e: E2E, name: str, *, exempt: tuple[str, ...] = (),
                 cgroups: bool = True) -> None:
        """`cgroups` False: the watchdog finds connections by audit session id (v1 hosts)."""
        self.e2e = e2e
        self.cgroups = cgroups
        self.log = Receiver()
        self.dir = infra.private_dir(name)
        self.socket = self.dir / "watchdog.sock"
        self.cgroup_name = f"idlewrap-test-{name}-{os.getpid()}"
        exempt_rule = (f'\n[[match]]\nname = "{EXEMPT}"\nusers = {list(exempt)!r}\n'
                       "exempt = true\n") if exempt else ""
        self.policy = e2e.policy(
            f'idle_timeout = "{IDLE:g}s"\nwarn_before = "1s"\n{exempt_rule}'
            f'\n[log]\nsyslog_socket = "{self.log.path}"\n'
            f'\n[watchdog]\nwrapper_grace = "{GRACE:g}s"\nsocket = "{self.socket}"\n',
            name=f"{name}-policy")
        self.launcher = self.dir / "idlewrap-shell"
        infra.run(e2e.python, "-I", "-m", "idlewrap", "install-shell", str(self.launcher),
                  "--config", str(self.policy))
        self.process: subprocess.Popen[bytes] | None = None
        self.start_watchdog()
        self.hook = (f"session optional pam_exec.so quiet {e2e.python} -I -m idlewrap.pam_hook "
                     f"--config {self.policy}")
        self.server = e2e.server(
            f"ForceCommand {e2e.force_command(self.policy)}\nPermitUserRC yes\n"
            "Subsystem sftp internal-sftp\n"
            f"Match User {self.launcher_user_pattern()}\n  ForceCommand none\n",
            self.hook)

    @staticmethod
    def launcher_user_pattern() -> str:
        """Accounts whose login shell is the launcher have no ForceCommand."""
        return "iww_sh_*"

    def user(self, name: str, *, launcher: bool = False) -> infra.User:
        """A test account; `launcher`: its login shell is the launcher (name iww_l...)."""
        assert name.startswith("iww_sh_") == launcher, name
        return self.e2e.users.user(name, shell=str(self.launcher) if launcher else "/bin/bash")

    # -- the watchdog ----------------------------------------------------------------------

    def start_watchdog(self) -> None:
        log = open(self.dir / "watchdog.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [self.e2e.python, "-I", "-m", "idlewrap", "watchdog", "--config", str(self.policy),
             "--cgroup-name", self.cgroup_name, *(() if self.cgroups else ("--no-cgroups",))],
            stdout=log, stderr=log)
        infra.wait_for(self._accepting, 10)

    def stop_watchdog(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)
        self.process = None

    def _accepting(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the watchdog exited:\n{self.watchdog_log()}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            return s.connect_ex(str(self.socket)) == 0

    def watchdog_log(self) -> str:
        return (self.dir / "watchdog.log").read_text(errors="replace")

    def cgroup_base(self) -> Path:
        from idlewrap.watchdog.cgroups import v2_mount

        mount = v2_mount()
        assert mount is not None
        return Path(mount) / self.cgroup_name

    def close(self) -> None:
        self.stop_watchdog()
        self.log.close()
        base = self.cgroup_base()
        if base.exists():
            for child in base.iterdir():
                if child.is_dir():
                    child.rmdir()
            base.rmdir()

    # -- sessions --------------------------------------------------------------------------

    def login(self, user: str, *args: str, prompt: str = PROMPT, **kw: object) -> pexpect.spawn:
        """An interactive session at its first prompt."""
        child = self.server.interactive(user, *args, **kw)  # type: ignore[arg-type]
        child.expect(prompt)
        return child

    def events(self, user: str, name: str) -> list[Event]:
        return [e for e in self.log.events(user) if e.name == name]

    def wait_event(self, user: str, name: str, timeout: float = 10) -> Event:
        found = self.log.wait(user, lambda evs: any(e.name == name for e in evs), timeout)
        return next(e for e in found if e.name == name)


def show(events: list[Event]) -> str:
    """Events one per line, for a failure message."""
    return "\n".join(str(e.fields) for e in events)


def send_last_key(child: pexpect.spawn, line: str, echo: str) -> float:
    """Type `line`, wait for `echo`, and return when the last key was sent."""
    child.send(line + "\r")
    sent = time.monotonic()
    child.expect(echo)
    return sent


def assert_closed_in_window(child: pexpect.spawn, last_key: float,
                            window: float = IDLE) -> float:
    """The session closed no later than `window` + 1.5 s after the last key."""
    child.expect(pexpect.EOF, timeout=window + 10)
    elapsed = time.monotonic() - last_key
    assert elapsed <= window + 1.5, f"closed {elapsed:.2f}s after the last key"
    return elapsed


def assert_nothing_left(user: str, within: float = 3.0) -> None:
    """No process of the user is left `within` seconds from now."""
    try:
        infra.wait_for(lambda: not infra.processes_of(user), within, interval=0.05)
    except AssertionError:
        raise AssertionError(f"left behind: {infra.processes_of(user)}") from None


def wait_for_process(user: str, text: str, timeout: float = 3.0) -> None:
    infra.wait_for(lambda: any(text in p for p in infra.processes_of(user)), timeout)
