"""Real parts for end-to-end tests: users, a private sshd on 127.0.0.1, the ssh client.

The tests in e2e/ use all of it; unit tests with a few root cases use its file helpers.

Everything lives under /run/idlewrap-tests (root-owned, 0755, so policy files
there pass idlewrap's ownership rule and test users can read them) and is
removed at the end of the run. Nothing in /etc is edited except one PAM service
file of our own, /etc/pam.d/idlewrap-test-sshd, read by sshd because it runs
through a symlink of that name.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pexpect

RUN_DIR = Path("/run/idlewrap-tests")
PAM_SERVICE = "idlewrap-test-sshd"
SSHD = "/usr/sbin/sshd"
REPO = Path(__file__).resolve().parent.parent
PYTHON = os.environ.get("IDLEWRAP_TEST_PYTHON", "/opt/idlewrap-test/venv/bin/python")


def run(*argv: str, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    """subprocess.run with text output captured."""
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kw)  # type: ignore[call-overload, no-any-return]


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> object:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


_created: list[Path] = []  # this process's directories under RUN_DIR


def private_dir(name: str) -> Path:
    """A fresh root-owned 0755 directory under /run/idlewrap-tests."""
    RUN_DIR.mkdir(mode=0o755, exist_ok=True)
    os.chmod(RUN_DIR, 0o755)
    path = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=RUN_DIR))
    os.chmod(path, 0o755)
    _created.append(path)
    return path


def write_root_file(path: Path, text: str, mode: int = 0o644) -> Path:
    """A file idlewrap will trust: root-owned, not writable by others."""
    path.write_text(text)
    os.chown(path, 0, 0)
    os.chmod(path, mode)
    return path


def installed_python_check(python: str = PYTHON) -> None:
    """Fail early if the venv the users run holds an idlewrap other than this checkout's."""
    where = "import idlewrap, os; print(os.path.dirname(idlewrap.__file__))"
    probe = run(python, "-I", "-c", where, check=False)
    if probe.returncode != 0:
        raise RuntimeError(f"{python} cannot import idlewrap (run tests/run)\n{probe.stderr}")
    installed = Path(probe.stdout.strip())
    for source in (REPO / "idlewrap").rglob("*.py"):
        target = installed / source.relative_to(REPO / "idlewrap")
        if not target.exists() or _digest(target) != _digest(source):
            raise RuntimeError(f"{target} differs from the checkout: run tests/run to reinstall")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- users ----------------------------------------------------------------------------------


@dataclass
class User:
    """A real account made with useradd."""

    name: str
    home: Path
    uid: int

    def write(self, relpath: str, text: str, mode: int = 0o644) -> Path:
        """A file in the user's home, owned by the user."""
        path = self.home / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chown(path, self.uid, pwd.getpwnam(self.name).pw_gid)
        os.chmod(path, mode)
        return path


class Users:
    """Creates test accounts (prefix iwt_) and removes them at the end."""

    PASSWORD = "Idlewrap-test-pw1"

    def __init__(self, pubkey: str) -> None:
        self.pubkey = pubkey
        self.created: list[str] = []
        self.groups: list[str] = []

    def group(self, name: str) -> str:
        """A group (created once)."""
        with contextlib.suppress(KeyError):
            grp.getgrnam(name)
            return name
        run("groupadd", name)
        self.groups.append(name)
        return name

    def user(self, name: str, *, groups: tuple[str, ...] = (), shell: str = "/bin/bash") -> User:
        """An account with our key in authorized_keys and a plain, recognisable bash prompt."""
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            run("userdel", "-r", "-f", name, check=False)
        argv = ["useradd", "-m", "-s", shell]
        if groups:
            argv += ["-G", ",".join(self.group(g) for g in groups)]
        run(*argv, name)
        self.created.append(name)
        subprocess.run(["chpasswd"], input=f"{name}:{self.PASSWORD}\n", text=True, check=True)
        entry = pwd.getpwnam(name)
        user = User(name, Path(entry.pw_dir), entry.pw_uid)
        ssh_dir = user.home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(ssh_dir, entry.pw_uid, entry.pw_gid)
        user.write(".ssh/authorized_keys", self.pubkey + "\n", 0o600)
        user.write(".bashrc", "PS1='iw-prompt$ '\nunset PROMPT_COMMAND\n")
        user.write(".hushlogin", "")
        return user

    def cleanup(self) -> None:
        """Kill what the test users left running, then delete them."""
        for name in self.created:
            run("pkill", "-KILL", "-u", name, check=False)
        for name in self.created:
            run("userdel", "-r", "-f", name, check=False)
        for name in self.groups:
            run("groupdel", name, check=False)


def processes_of(user: str) -> list[str]:
    """`pid command` of every live process the user runs (zombies await their reaper, not us)."""
    out = run("ps", "-u", user, "-o", "pid=,stat=,args=", check=False).stdout
    rows = [line.split(None, 2) for line in out.splitlines() if line.strip()]
    live = [row for row in rows if not row[1].startswith("Z")]
    return [f"{row[0]} {row[2] if len(row) > 2 else ''}" for row in live]


# -- sshd -----------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pam_stack(extra_session_lines: str = "", *, stock_pam_env: bool = False) -> str:
    """Debian's sshd PAM stack as docs/deploy.md says to deploy it, plus our session lines.

    The deployment change: pam_env must not read ~/.pam_environment (user_readenv=0),
    or users can set LD_PRELOAD for the wrapper. `stock_pam_env` keeps Debian's line.
    """
    base = Path("/etc/pam.d/sshd").read_text()
    if not stock_pam_env:
        base = base.replace("user_readenv=1", "user_readenv=0")
    return base + ("\n" + extra_session_lines + "\n" if extra_session_lines else "")


@dataclass
class SshServer:
    """A private sshd: own host key, own config, own PAM service name."""

    config: str
    workdir: Path
    client_key: Path
    pam_extra: str = ""
    stock_pam_env: bool = False
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def pam_service(self) -> str:
        """sshd's PAM service is its program name: one of our own per server."""
        return f"{PAM_SERVICE}-{self.port}"

    def start(self) -> SshServer:
        host_key = self.workdir / "host_ed25519"
        if not host_key.exists():
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        cfg = self.workdir / f"sshd_config.{self.port}"
        cfg.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"PidFile {self.workdir}/sshd.{self.port}.pid\nUsePAM yes\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nStrictModes yes\nPermitUserEnvironment no\n"
            "PrintMotd no\nPrintLastLog no\nAcceptEnv LANG LC_*\nLogLevel VERBOSE\n"
            + self.config
        )
        test = run(SSHD, "-t", "-f", str(cfg), check=False)
        if test.returncode != 0:
            raise RuntimeError(f"sshd -t rejected {cfg}:\n{test.stderr}\n{cfg.read_text()}")
        link = self.workdir / self.pam_service
        if not link.exists():
            link.symlink_to(SSHD)
        (Path("/etc/pam.d") / self.pam_service).write_text(
            pam_stack(self.pam_extra, stock_pam_env=self.stock_pam_env)
        )
        log = open(self.workdir / f"sshd.{self.port}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen([str(link), "-D", "-e", "-f", str(cfg)],
                                        stdout=log, stderr=log)
        wait_for(self._listening, 10)
        return self

    def _listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        """Stop the listener (sessions it started end with their clients)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)
        with contextlib.suppress(FileNotFoundError):
            (Path("/etc/pam.d") / self.pam_service).unlink()

    def log(self) -> str:
        """What sshd said (for failure messages)."""
        return (self.workdir / f"sshd.{self.port}.log").read_text(errors="replace")

    def client_options(self) -> list[str]:
        """Options every client (ssh, scp, sftp) needs: our key, no user config, no prompts."""
        return [
            "-F", "/dev/null", "-i", str(self.client_key),
            "-o", f"Port={self.port}",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
        ]

    def ssh_argv(self, user: str, *args: str) -> list[str]:
        """The real ssh client, pointed at this server."""
        return ["ssh", *self.client_options(), *args, f"{user}@127.0.0.1"]

    def run(self, user: str, command: str, *, args: tuple[str, ...] = (),
            input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        """A non-interactive `ssh user@host command`."""
        return subprocess.run([*self.ssh_argv(user, *args), command], input=input,
                              capture_output=True, timeout=timeout, check=False)

    def interactive(self, user: str, *args: str, command: str | None = None,
                    rows: int = 24, cols: int = 80, env: dict[str, str] | None = None,
                    ) -> pexpect.spawn:
        """`ssh -tt user@host [command]` in a pexpect pty of rows x cols."""
        argv = self.ssh_argv(user, "-tt", *args) + ([command] if command else [])
        child_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm",
                     "LANG": "C.UTF-8", **(env or {})}
        return pexpect.spawn(argv[0], argv[1:], dimensions=(rows, cols), env=child_env, timeout=30)


def kill_quietly(pid: int) -> None:
    """SIGKILL, ignoring a process that is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def cleanup_run_dir() -> None:
    """Remove what this run put under /run/idlewrap-tests.

    Only our own directories: another pytest run may be using the rest right now (its
    policies and sockets), and RUN_DIR itself stays for it.
    """
    while _created:
        shutil.rmtree(_created.pop(), ignore_errors=True)
