"""How `idlewrap audit` recognises an idlewrap start, and what could run before it."""

import os
from pathlib import Path

import pytest

from idlewrap.audit.launch import (
    parse_force_command,
    python_module,
    read_launcher,
    starts_no_session,
    user_file_before_command,
    writable_by_others,
)
from idlewrap.commands.install_shell import render


@pytest.mark.parametrize(("command", "kind", "isolated", "config"), [
    ("/opt/iw/bin/python -I -m idlewrap", "module", True, None),
    ("/opt/iw/bin/python -Im idlewrap --config /etc/x.toml", "module", True, "/etc/x.toml"),
    ("exec /usr/bin/python3 -X importtime -I -midlewrap --config=/c", "module", True, "/c"),
    ("/usr/bin/python3 -m idlewrap", "module", False, None),
    ("/usr/bin/python3 -s -E -m idlewrap", "module", False, None),
])
def test_idlewrap_module_commands(command: str, kind: str, isolated: bool,
                                  config: str | None) -> None:
    wrapper = parse_force_command(command)
    assert wrapper is not None
    assert (wrapper.kind, wrapper.isolated, wrapper.config) == (kind, isolated, config)
    assert wrapper.interpreter == command.split()[1 if command.startswith("exec") else 0]


@pytest.mark.parametrize("command", [
    "/usr/bin/python3 -I -m idlewrapper", "/usr/bin/python3 -c 'import idlewrap'",
    "/usr/bin/tmux new", "internal-sftp", "'unbalanced",
])
def test_other_commands_are_not_idlewrap(command: str) -> None:
    assert parse_force_command(command) is None


def test_python_module_reads_clustered_flags() -> None:
    assert python_module(["-IBm", "idlewrap", "--config", "x"]) == (
        "idlewrap", True, ["--config", "x"])
    assert python_module(["-W", "ignore", "-m", "idlewrap.pam_hook"]) == (
        "idlewrap.pam_hook", False, [])
    assert python_module(["script.py", "-m", "idlewrap"]) is None


def test_a_launcher_is_recognised_with_its_interpreter_and_policy(tmp_path: Path) -> None:
    launcher = tmp_path / "idlewrap-shell"
    launcher.write_text(render("/opt/iw/bin/python", "/etc/idlewrap/other.toml"))
    wrapper = read_launcher(str(launcher))
    assert wrapper is not None
    assert (wrapper.kind, wrapper.interpreter, wrapper.isolated, wrapper.config) == (
        "launcher", "/opt/iw/bin/python", True, "/etc/idlewrap/other.toml")
    # A ForceCommand that names the launcher starts the same thing.
    assert parse_force_command(str(launcher)) == wrapper
    launcher.write_text(render("/opt/iw/bin/python", "/c").replace(" -I\n", "\n", 1))
    stripped = read_launcher(str(launcher))
    assert stripped is not None and not stripped.isolated


def test_a_fifo_named_as_a_shell_does_not_block_the_audit(tmp_path: Path) -> None:
    fifo = tmp_path / "shell"
    os.mkfifo(fifo)
    assert read_launcher(str(fifo)) is None
    assert parse_force_command(str(fifo)) is None


@pytest.mark.parametrize(("shell", "reads"), [
    ("/bin/bash", "~/.bashrc"), ("/usr/bin/zsh", "~/.zshenv"), ("/bin/tcsh", "~/.tcshrc"),
    ("/bin/sh", None), ("/bin/dash", None), ("/usr/local/bin/xonsh", "xonsh"),
])
def test_user_file_before_command(shell: str, reads: str | None) -> None:
    found = user_file_before_command(shell)
    if reads is None:
        assert found is None
    else:
        assert found is not None and reads in found


def test_no_session_shells() -> None:
    assert starts_no_session("/usr/sbin/nologin") and starts_no_session("/bin/false")
    assert not starts_no_session("/bin/sh")


def test_writable_by_others_names_the_weak_spot(tmp_path: Path) -> None:
    script = tmp_path / "python"
    script.write_text("")
    reason = writable_by_others(str(script))
    # /tmp is world-writable (sticky), and as non-root the file is not root's either.
    assert reason is not None
    assert "/tmp is writable by" in reason or "not root" in reason
    if os.path.exists("/usr/bin/python3"):
        assert writable_by_others("/usr/bin/python3") is None
