"""The deployment the session benches log in to, from tests/infra.py's real parts.

A private sshd on 127.0.0.1 whose ForceCommand is the test venv's `python -I -m idlewrap`,
UsePAM with the PAM hook, the watchdog running as root (as in deploy.md, section 6), test
accounts, and a datagram socket standing in for /dev/log. `close()` takes all of it
down again, whatever state it is in (a half-made rig, Ctrl-C in the middle of a run).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path

from idlewrap.watchdog.cgroups import v2_mount
from tests import infra

TICK = os.sysconf("SC_CLK_TCK")


class Rig:
    """sshd + PAM hook + watchdog + log socket + `accounts` accounts named `user`, `user`1..."""

    def __init__(self, name: str, user: str, settings: str, *, sshd: str = "",
                 watchdog: str = "", accounts: int = 1) -> None:
        """`settings`: the policy's top-level keys; `sshd`: more sshd_config lines;
        `watchdog`: keys of the policy's [watchdog] table besides its socket."""
        self.names = [user] + [f"{user}{i}" for i in range(1, accounts)]
        self.work = infra.private_dir(name)
        self.users: infra.Users | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.server: infra.SshServer | None = None
        self.cgroup = Path(v2_mount() or "/") / f"idlewrap-bench-{os.getpid()}"
        self.log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._start(settings, sshd, watchdog)
        except BaseException:
            self.close()
            raise

    def _start(self, settings: str, sshd: str, watchdog: str) -> None:
        key = self.work / "key"
        infra.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        self.users = infra.Users((self.work / "key.pub").read_text().strip())
        self.accounts = [self.users.user(name) for name in self.names]
        self.account = self.accounts[0]
        self.socket = self.work / "watchdog.sock"
        self.log.bind(str(self.work / "log"))
        os.chmod(self.work / "log", 0o666)
        self.policy = infra.write_root_file(self.work / "idlewrap.toml", (
            f'{settings}[log]\nsyslog_socket = "{self.work / "log"}"\n'
            f'[watchdog]\nsocket = "{self.socket}"\n{watchdog}'))
        self.daemon = subprocess.Popen(
            [infra.PYTHON, "-I", "-m", "idlewrap", "watchdog", "--config", str(self.policy),
             "--cgroup-name", self.cgroup.name], stderr=subprocess.DEVNULL)
        hook = (f"session optional pam_exec.so quiet {infra.PYTHON} -I -m idlewrap.pam_hook "
                f"--config {self.policy}")
        self.server = infra.SshServer(
            f"ForceCommand {infra.PYTHON} -I -m idlewrap --config {self.policy}\n" + sshd,
            self.work, key, hook).start()
        infra.wait_for(self.socket.exists, 10)

    def ssh_argv(self, *args: str, account: int = 0) -> list[str]:
        """The real ssh client, logging in as one of the rig's accounts."""
        assert self.server is not None
        return self.server.ssh_argv(self.names[account], *args)

    def close(self) -> None:
        """Stop everything and remove the accounts; each step runs even if one before failed."""
        with contextlib.suppress(Exception):
            if self.server is not None:
                self.server.stop()
        with contextlib.suppress(Exception):
            if self.users is not None:
                self.users.cleanup()  # the sessions' processes, then the accounts
        with contextlib.suppress(Exception):
            if self.daemon is not None:
                self.daemon.send_signal(signal.SIGTERM)
                self.daemon.wait(10)
        with contextlib.suppress(Exception):
            self._remove_cgroups()
        self.log.close()
        infra.cleanup_run_dir()

    def _remove_cgroups(self) -> None:
        """The connections' cgroups and their parent. What is left in one is a session's
        privileged sshd (root's, so the accounts' cleanup spared it): ended by its pid."""
        if not self.cgroup.is_dir():
            return
        for group in self.cgroup.iterdir():
            if group.is_dir():
                for pid in (group / "cgroup.procs").read_text().split():
                    infra.kill_quietly(int(pid))
                infra.wait_for(lambda g=group: not (g / "cgroup.procs").read_text(), 5)
                group.rmdir()
        self.cgroup.rmdir()


def wakeups_and_cpu(pid: int) -> tuple[int, float]:
    """Context switches (voluntary and not: each is a wake-up) and CPU seconds of `pid`."""
    with open(f"/proc/{pid}/status") as f:
        switches = sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return switches, (int(fields[11]) + int(fields[12])) / TICK
