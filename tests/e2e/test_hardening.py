"""What the user can do to the wrapper from inside the session (it is their process).

Policy: idle_timeout 3 s, warn_before 1 s. `$PPID` of the login shell is the wrapper.
"""

from __future__ import annotations

import time

import pexpect
import pytest

from idlewrap.idle import DEADMAN_GRACE
from tests.e2e.conftest import E2E
from tests.e2e.test_session import IDLE, POLICY, PROMPT

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def session_factory(e2e: E2E):  # type: ignore[no-untyped-def]
    user = e2e.users.user("iwt_hard")
    server = e2e.server(f"ForceCommand {e2e.force_command(e2e.policy(POLICY))}\n")

    def start() -> pexpect.spawn:
        child = server.interactive(user.name)
        child.expect(PROMPT)
        return child

    return start


def test_wrapper_is_not_dumpable(session_factory) -> None:  # type: ignore[no-untyped-def]
    child = session_factory()
    # the outcomes print computed text, so the echoed command line cannot match
    child.send("cat /proc/$PPID/environ >/dev/null && echo read-$((1+1)) || echo read-$((2+2))\r")
    child.expect(["read-4", "read-2"])
    assert child.after == b"read-4", "the user could read the wrapper's /proc/PID/environ"
    child.send("grep -c . /proc/$PPID/mem 2>&1 | head -1; echo mem-$((3+3))\r")
    child.expect("mem-6")
    assert b"Permission denied" in child.before


def test_killing_the_wrapper_ends_the_session(session_factory) -> None:  # type: ignore[no-untyped-def]
    child = session_factory()
    child.send("kill -9 $PPID\r")
    sent = time.monotonic()
    child.expect(pexpect.EOF, timeout=5)
    assert time.monotonic() - sent < 1.0


def test_stopping_the_wrapper_ends_the_session_anyway(session_factory) -> None:  # type: ignore[no-untyped-def]
    child = session_factory()
    child.send("kill -STOP $PPID\r")
    sent = time.monotonic()
    child.expect(pexpect.EOF, timeout=IDLE + DEADMAN_GRACE + 5)
    elapsed = time.monotonic() - sent
    assert elapsed <= IDLE + DEADMAN_GRACE + 1.0, f"a stopped wrapper held on {elapsed:.1f}s"


def test_job_control_signals_to_the_wrapper_are_ignored(session_factory) -> None:  # type: ignore[no-untyped-def]
    child = session_factory()
    child.send("kill -TSTP $PPID; kill -TTIN $PPID; kill -TTOU $PPID; echo sent-$((6*7))\r")
    child.expect("sent-42")
    child.send("echo still-relaying\r")
    child.expect("still-relaying\r\n")
    child.send("exit\r")
    child.expect(pexpect.EOF)


def test_sigterm_to_the_wrapper_ends_the_session_cleanly(session_factory) -> None:  # type: ignore[no-untyped-def]
    child = session_factory()
    child.send("kill -TERM $PPID\r")
    child.expect(pexpect.EOF, timeout=5)
    child.close()
    assert child.exitstatus == 128 + 15
