"""Deployed entry points keep working across releases.

sshd_config names ``python3 -I -m idlewrap``, PAM stacks ``-m idlewrap.pam_hook``, and
login-shell launchers written by an earlier ``idlewrap install-shell`` stay on disk across
upgrades. These run the installed package (tests/run installs the checkout).
"""

import socket
import subprocess
from pathlib import Path

import pytest

from idlewrap.cli import COMMANDS
from idlewrap.session import is_launcher
from tests import infra, test_pam_hook
from tests.test_events import drain, parse_datagram

# The launcher as release 0.1.0 wrote it (TEMPLATE in idlewrap/launcher.py), verbatim,
# with the marker it had then: it must keep working with every later release.
OLD_LAUNCHER = """#!{python} -I
{marker} (written by `idlewrap install-shell`).
# Do not list this file in /etc/shells: users must not be able to chsh away from it.
import sys

from idlewrap.cli import login_shell

sys.exit(login_shell(sys.argv[1:], config={config!r}))
"""
OLD_MARKER = "# idlewrap login-shell launcher"

receiver = test_pam_hook.receiver  # the fixture: (a trusted policy logging to a socket, it)


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    infra.installed_python_check()


def old_launcher(directory: Path, config: Path) -> Path:
    path = directory / "idlewrap-shell"
    path.write_text(OLD_LAUNCHER.format(python=infra.PYTHON, marker=OLD_MARKER,
                                        config=str(config)))
    path.chmod(0o755)
    return path


def run(*argv: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=30,
                          check=False, env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_old_launcher_rejects_unsupported_arguments(tmp_path: Path) -> None:
    launcher = old_launcher(tmp_path, tmp_path / "idlewrap.toml")
    assert is_launcher(str(launcher))  # so the wrapper never runs it as the real shell
    done = run(launcher, "-x", "y")
    assert (done.returncode, done.stdout, done.stderr) == (
        2, "", "idlewrap: unsupported shell arguments '-x y' (a login shell takes none, "
        "or -c COMMAND)\n")


@pytest.mark.root
def test_old_launcher_runs_a_command_under_its_policy(
        receiver: tuple[Path, socket.socket]) -> None:
    config, sock = receiver
    launcher = old_launcher(config.parent, config)
    done = run(launcher, "-c", "echo via-old-launcher")
    assert (done.returncode, done.stdout, done.stderr) == (0, "via-old-launcher\n", "")
    events = [parse_datagram(d)[2] for d in drain(sock)]
    assert [(e["event"], e.get("reason"), e["mode"], e["user"]) for e in events] == [
        ("config_error", "no_watchdog", "command", "root"),  # none runs for this test
        ("session_start", None, "command", "root")]


def test_module_help() -> None:
    done = run(infra.PYTHON, "-I", "-m", "idlewrap", "--help")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("usage: idlewrap [-h] [--config PATH]")
    assert f"Commands: {', '.join(COMMANDS)} (idlewrap COMMAND --help)." in \
        " ".join(done.stdout.split())


@pytest.mark.parametrize("command", COMMANDS)
def test_module_runs_each_command(command: str) -> None:
    done = run(infra.PYTHON, "-I", "-m", "idlewrap", command, "--help")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"usage: idlewrap {command} ")


def test_module_check_reports_a_missing_file() -> None:
    done = run(infra.PYTHON, "-I", "-m", "idlewrap", "check", "--config",
               "/nonexistent-idlewrap-test/p.toml")
    assert (done.returncode, done.stdout, done.stderr) == (
        1, "", "/nonexistent-idlewrap-test/p.toml: file not found\n")


def test_pam_hook_module_ignores_other_pam_types() -> None:
    done = run(infra.PYTHON, "-I", "-m", "idlewrap.pam_hook", env={"PAM_TYPE": "auth"})
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.root
def test_pam_hook_module_logs_the_session(receiver: tuple[Path, socket.socket]) -> None:
    config, sock = receiver
    done = run(infra.PYTHON, "-I", "-m", "idlewrap.pam_hook", "--config", config,
               env={"PAM_TYPE": "open_session", "PAM_USER": "root", "PAM_SERVICE": "sshd"})
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    events = [parse_datagram(d)[2] for d in drain(sock)]
    assert [(e["event"], e["user"], e["service"]) for e in events] == [
        ("pam_open_session", "root", "sshd")]
