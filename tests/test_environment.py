"""The environment a process was started with (what the session and the PAM hook get)."""

import os

import pytest

from idlewrap.environment import exec_environment


def test_last_duplicate_wins() -> None:
    raw = b"PAM_USER=mallory\0PAM_TYPE=auth\0X=a=b\0junk\0PAM_USER=root\0PAM_TYPE=open_session\0"
    assert exec_environment(raw) == {"PAM_USER": "root", "PAM_TYPE": "open_session", "X": "a=b"}


def test_bytes_that_are_no_utf8_reach_the_child_unchanged() -> None:
    env = exec_environment(b"NAME=caf\xe9\0")
    assert os.fsencode(env["NAME"]) == b"caf\xe9"  # as execve and posix_spawn encode it


def test_what_the_interpreter_set_itself_is_not_in_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """As PEP 538 coercion's LC_CTYPE: setenv() after start does not change the block."""
    monkeypatch.setenv("IDLEWRAP_SET_LATER", "1")
    assert "IDLEWRAP_SET_LATER" not in exec_environment()
    assert "PATH" in exec_environment()
