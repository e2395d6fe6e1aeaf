"""The pam_exec program: one event per PAM session open/close, the connection handed to the
watchdog; exit 0 unless `[watchdog] required` and no watchdog took the connection."""

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from idlewrap.events import connection_fields
from tests import infra
from tests.test_events import drain, parse_datagram

# `-I` ignores PYTHONPATH and the package need not be installed: put the tree on sys.path.
HOOK = [infra.PYTHON, "-I", "-c",
        f"import sys; sys.path.insert(0, {str(infra.REPO)!r}); "
        "from idlewrap.pam_hook import main; raise SystemExit(main())"]
SSH_CONNECTION = "10.0.0.5 52144 10.0.0.1 22"
PAM_ENV = {"PAM_USER": "root", "PAM_RHOST": "10.0.0.5", "PAM_SERVICE": "sshd",
           "PAM_TTY": "ssh", "SSH_CONNECTION": SSH_CONNECTION}


def run_hook(pam_type: str, *args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*HOOK, *args], env={**PAM_ENV, "PAM_TYPE": pam_type, **env},
                          capture_output=True, timeout=20, check=False)


@pytest.fixture
def trusted_dir() -> Iterator[Path]:
    """A fresh root-owned 0755 directory the policy's trust rule accepts."""
    path = infra.private_dir("pam_hook")
    yield path
    shutil.rmtree(path)


@pytest.fixture
def receiver(trusted_dir: Path) -> Iterator[tuple[Path, socket.socket]]:
    """(policy file naming the socket, the socket)."""
    sock_path = trusted_dir / "log"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    config = infra.write_root_file(trusted_dir / "idlewrap.toml",
                                   f'[log]\nsyslog_socket = "{sock_path}"\n')
    yield config, sock
    sock.close()


@pytest.mark.root
@pytest.mark.parametrize("pam_type", ["open_session", "close_session"])
def test_logs_one_event(receiver: tuple[Path, socket.socket], pam_type: str) -> None:
    config, sock = receiver
    done = run_hook(pam_type, "--config", str(config))
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    [(pri, _, fields)] = [parse_datagram(d) for d in drain(sock)]
    assert pri == 86
    assert fields == {
        "event": f"pam_{pam_type}",
        "user": "root",
        "uid": "0",
        "rhost": "10.0.0.5",
        "rport": "52144",
        "conn": connection_fields({"SSH_CONNECTION": SSH_CONNECTION})["conn"],
        "service": "sshd",
        "tty": "ssh",
    }
    assert list(fields) == ["event", "user", "uid", "rhost", "rport", "conn", "service", "tty"]


@pytest.mark.root
def test_local_login_and_unknown_user(receiver: tuple[Path, socket.socket]) -> None:
    config, sock = receiver
    env = {**PAM_ENV, "PAM_TYPE": "open_session", "PAM_USER": "iwe_nobody\nevent=x",
           "PAM_SERVICE": "login", "PAM_TTY": "/dev/tty1"}
    del env["SSH_CONNECTION"], env["PAM_RHOST"]
    done = subprocess.run([*HOOK, f"--config={config}"], env=env, capture_output=True,
                          timeout=20, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    [(_, _, fields)] = [parse_datagram(d) for d in drain(sock)]
    assert fields == {"event": "pam_open_session", "user": "iwe_nobody\nevent=x",
                      "service": "login", "tty": "/dev/tty1"}


@pytest.mark.root
def test_other_pam_types_log_nothing(receiver: tuple[Path, socket.socket]) -> None:
    config, sock = receiver
    for pam_type in ("auth", "account", "password", ""):
        done = run_hook(pam_type, "--config", str(config))
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert drain(sock) == []


@pytest.mark.root
def test_missing_socket_is_one_line_and_exit_0(trusted_dir: Path) -> None:
    config = infra.write_root_file(trusted_dir / "idlewrap.toml",
                                   f'[log]\nsyslog_socket = "{trusted_dir}/nowhere"\n')
    done = run_hook("open_session", "--config", str(config))
    assert (done.returncode, done.stdout) == (0, b"")
    assert done.stderr.decode() == (
        f"idlewrap: cannot log to {trusted_dir}/nowhere: No such file or directory "
        "(events go unlogged)\n"
    )


# These fall back to the built-in policy, which logs to /dev/log: on a machine with a
# syslog daemon they leave one pam_open_session for the user iwe_test there.
@pytest.mark.parametrize(
    "args",
    [["--config", "/nonexistent/idlewrap.toml"], ["--config", __file__], ["--bogus"], ["a", "b"]],
)
def test_broken_config_or_command_line_still_exit_0(args: list[str]) -> None:
    done = run_hook("open_session", *args, PAM_USER="iwe_test")
    assert (done.returncode, done.stdout) == (0, b"")
    assert b"Traceback" not in done.stderr
    assert done.stderr.count(b"\n") <= 2  # usage line, and maybe "cannot log"


def test_broken_install_is_one_line_and_exit_0(tmp_path: Path) -> None:
    (tmp_path / "idlewrap").mkdir()
    (tmp_path / "idlewrap" / "__init__.py").write_text("")
    (tmp_path / "idlewrap" / "events.py").write_text("raise ImportError('broken')\n")
    for module in ("pam_hook.py", "environment.py"):
        shutil.copy(infra.REPO / "idlewrap" / module, tmp_path / "idlewrap")
    hook = [*HOOK[:3], HOOK[3].replace(repr(str(infra.REPO)), repr(str(tmp_path)))]
    done = subprocess.run(hook, env={**PAM_ENV, "PAM_TYPE": "open_session"},
                          capture_output=True, timeout=20, check=False)
    assert (done.returncode, done.stdout) == (0, b"")
    assert done.stderr == b"idlewrap pam_hook: broken\n"


@pytest.mark.root
@pytest.mark.skipif(shutil.which("pamtester") is None, reason="needs pamtester")
def test_pam_exec_through_pamtester(receiver: tuple[Path, socket.socket]) -> None:
    config, sock = receiver
    # A Python script, not a shell one: sh would tidy up the duplicate variables that
    # this test is about before Python sees them.
    script = config.parent / "hook"
    script.write_text(f"#!{infra.PYTHON} -I\n{HOOK[3].replace('; ', chr(10))}\n")
    script.chmod(0o755)
    service = Path("/etc/pam.d/idlewrap-test-hook")
    service.write_text(f"session optional pam_exec.so quiet {script} --config {config}\n")
    try:
        # -E puts variables in the PAM environment, as sshd does with SSH_CONNECTION and
        # as a user's ~/.pam_environment can (user_readenv=1): the fake PAM_USER and
        # PAM_TYPE must not win over the items pam_exec sets.
        done = subprocess.run(
            ["pamtester", "-I", "rhost=10.0.0.5", "-I", "tty=ssh",
             f"-ESSH_CONNECTION={SSH_CONNECTION}", "-EPAM_USER=mallory", "-EPAM_TYPE=auth",
             service.name, "root", "open_session", "close_session"],
            capture_output=True, timeout=30, check=False,
        )
    finally:
        service.unlink()
    assert done.returncode == 0, done.stderr
    got = [parse_datagram(d)[2] for d in drain(sock)]
    assert [f["event"] for f in got] == ["pam_open_session", "pam_close_session"]
    conn = connection_fields({"SSH_CONNECTION": SSH_CONNECTION})["conn"]
    for fields in got:
        assert fields["user"] == "root" and fields["uid"] == "0"
        assert (fields["rhost"], fields["rport"], fields["conn"]) == ("10.0.0.5", "52144", conn)
        assert (fields["service"], fields["tty"]) == (service.name, "ssh")


@pytest.mark.root
def test_lock_service_file_checks_the_users_own_password() -> None:
    """pam/idlewrap, run as the user (unix_chkpwd path): right password in, wrong one out."""
    user, password = "iwe_lock", "Corr3ct-horse-battery"
    service = Path("/etc/pam.d/idlewrap-test-lock")
    shutil.copy(infra.REPO / "pam" / "idlewrap", service)
    subprocess.run(["userdel", user], capture_output=True, check=False)
    infra.run("useradd", "-M", "-s", "/bin/sh", user)
    try:
        infra.run("chpasswd", input=f"{user}:{password}\n")

        def pamtester(attempt: str, *ops: str) -> int:
            done = subprocess.run(
                ["runuser", "-u", user, "--", "pamtester", service.name, user, *ops],
                input=attempt + "\n", capture_output=True, text=True, timeout=30,
                check=False, cwd="/",
            )
            return done.returncode

        assert pamtester(password, "authenticate", "acct_mgmt") == 0
        assert pamtester("wrong", "authenticate") != 0
        assert pamtester(password, "open_session") != 0  # this service only checks passwords
    finally:
        subprocess.run(["userdel", user], capture_output=True, check=False)
        service.unlink()


# -- the watchdog ---------------------------------------------------------------------------


def fake_watchdog(path: Path, answer: bytes) -> tuple[threading.Thread, list[bytes]]:
    """Answer one request at `path` with `answer`; what it was asked lands in the list."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    asked: list[bytes] = []

    def serve() -> None:
        with server:
            peer, _ = server.accept()
            with peer:
                asked.append(peer.recv(4096))
                peer.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread, asked


@pytest.mark.root
def test_open_session_hands_the_connection_to_the_watchdog(trusted_dir: Path) -> None:
    config = infra.write_root_file(trusted_dir / "idlewrap.toml", (
        f'[log]\nsyslog_socket = "{trusted_dir}/log"\n'
        f'[watchdog]\nsocket = "{trusted_dir}/wd.sock"\nrequired = true\n'))
    (trusted_dir / "log").touch()  # not a socket: the event is lost, quietly enough
    thread, asked = fake_watchdog(trusted_dir / "wd.sock", b"ok group=/x\n")
    done = run_hook("open_session", "--config", str(config))
    thread.join(5)
    assert (done.returncode, done.stdout) == (0, b"")
    conn = connection_fields({"SSH_CONNECTION": SSH_CONNECTION})["conn"]
    # pid: the hook's parent, which is sshd's privileged process under pam_exec
    assert asked == [f"open pid={os.getpid()} user=root conn={conn} rhost=10.0.0.5\n".encode()]


@pytest.mark.root
@pytest.mark.parametrize("watchdog", ["absent", "refusing"])
def test_required_refuses_the_login_without_a_watchdog(trusted_dir: Path, watchdog: str) -> None:
    path = trusted_dir / "wd.sock"
    config = infra.write_root_file(trusted_dir / "idlewrap.toml", (
        f'[log]\nsyslog_socket = "{trusted_dir}/log"\n'
        f'[watchdog]\nsocket = "{path}"\nrequired = true\n'))
    if watchdog == "refusing":
        thread, _ = fake_watchdog(path, b"refused reason=no_group\n")
    done = run_hook("open_session", "--config", str(config))
    assert (done.returncode, done.stdout) == (1, b"")
    reason = ("refused (no_group)" if watchdog == "refusing"
              else "[Errno 2] No such file or directory")
    assert done.stderr.decode().splitlines()[-1] == (
        f"idlewrap pam_hook: login refused: the watchdog at {path}: {reason}")
    if watchdog == "refusing":
        thread.join(5)
    # close_session never fails
    assert run_hook("close_session", "--config", str(config)).returncode == 0


@pytest.mark.root
def test_without_required_a_missing_watchdog_is_no_news(receiver: tuple[Path, socket.socket]
                                                        ) -> None:
    config, sock = receiver
    done = run_hook("open_session", "--config", str(config))
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert len(drain(sock)) == 1
