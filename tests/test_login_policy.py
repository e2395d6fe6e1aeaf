"""The login's policy, read in a child process: the same answer as reading it here."""

import os
from pathlib import Path

import pytest

from idlewrap import login_policy
from idlewrap.events import connection_fields
from idlewrap.login_policy import Login, read_here, read_policy
from tests import infra

POLICY = """idle_timeout = "10m"
warn_before = "1m"
[log]
syslog_socket = "/run/x/log"
[watchdog]
socket = "/run/x/wd.sock"
[[match]]
name = "admins"
groups = ["root"]
addresses = ["10.0.0.0/8"]
idle_timeout = "5m"
"""
CONNECTION = {"SSH_CONNECTION": "10.1.2.3 50000 10.0.0.1 22"}
ADMIN = Login("root", 0, "interactive", CONNECTION)  # in the group root, from 10/8


@pytest.mark.root
def test_the_child_reads_what_this_process_would(trusted_dir: Path) -> None:
    path = str(infra.write_root_file(trusted_dir / "p.toml", POLICY))
    found = read_policy(path, ADMIN)
    assert found == read_here(path, ADMIN)
    assert (found.settings.idle_timeout, found.rule, found.sources["idle_timeout"]) == (
        300, "admins", "admins")
    assert (found.log_socket, found.watchdog_socket, found.problems) == (
        "/run/x/log", "/run/x/wd.sock", [])
    assert found.connection == connection_fields(CONNECTION)
    assert found.connection["rhost"] == "10.1.2.3" and found.connection["rport"] == 50000


def test_problems_come_back_as_lines() -> None:
    found = read_policy("/nonexistent-idlewrap-test/p.toml", ADMIN)
    assert found.problems == ["/nonexistent-idlewrap-test/p.toml: file not found"]
    assert found.settings.idle_timeout == 900 and found.rule is None


def test_no_child_no_answer_means_reading_it_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """fork refused (a process limit), or a child that died: the wrapper reads it itself."""
    expected = read_here("/nonexistent-idlewrap-test/p.toml", ADMIN)

    def refused() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    with monkeypatch.context() as m:
        m.setattr(os, "fork", refused)
        assert read_policy("/nonexistent-idlewrap-test/p.toml", ADMIN) == expected
    with monkeypatch.context() as m:
        m.setattr(login_policy, "_send", lambda fd, found: os._exit(3))
        assert read_policy("/nonexistent-idlewrap-test/p.toml", ADMIN) == expected
    with monkeypatch.context() as m:
        m.setattr(login_policy, "_send", lambda fd, found: os.write(fd, b"\x00garbage"))
        assert read_policy("/nonexistent-idlewrap-test/p.toml", ADMIN) == expected


def test_a_stopped_child_does_not_hold_the_login(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any process of the user may SIGSTOP the child: the wrapper stops waiting and reads
    the policy itself, and the child is not left behind."""
    import signal
    import time

    expected = read_here("/nonexistent-idlewrap-test/p.toml", ADMIN)
    children: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            children.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    monkeypatch.setattr(login_policy, "ANSWER_WITHIN", 0.5)
    monkeypatch.setattr(login_policy, "_send",
                        lambda fd, found: os.kill(os.getpid(), signal.SIGSTOP))
    started = time.monotonic()
    assert read_policy("/nonexistent-idlewrap-test/p.toml", ADMIN) == expected
    assert 0.5 <= time.monotonic() - started < 2.0
    assert len(children) == 1
    with pytest.raises(ChildProcessError):  # reaped: no zombie, no stopped child
        os.waitpid(children[0], os.WNOHANG)
