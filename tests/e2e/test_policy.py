"""Per-user, per-group and per-address rules, applied by the wrapper under a real sshd.

All sessions start together and each is timed from its own last key, so the
whole matrix costs one timeout, not one per user.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pexpect
import pytest

from tests import infra
from tests.e2e.conftest import E2E
from tests.e2e.test_session import PROMPT

pytestmark = pytest.mark.root

POLICY = """\
idle_timeout = "4s"
warn_before = "1s"

[[match]]
name = "service"
users = "iwt_psvc"
exempt = true

[[match]]
name = "privileged"
groups = ["iwt_padmins"]
idle_timeout = "2s"

[[match]]
name = "staff"
groups = "iwt_pstaff"
not_users = ["iwt_pcarol"]
idle_timeout = "2s"

[[match]]
name = "outside"
addresses = ["127.0.0.2/32", "10.0.0.0/8"]
idle_timeout = "3s"
"""


@dataclass
class Case:
    """One login and the idle timeout the policy must give it (None: exempt)."""

    user: str
    expected: float | None
    source: str = "127.0.0.1"
    groups: tuple[str, ...] = ()


CASES = [
    Case("iwt_padmin", 2.0, groups=("iwt_padmins",)),
    Case("iwt_pplain", 4.0),
    Case("iwt_pplain", 3.0, source="127.0.0.2"),
    Case("iwt_pdave", 2.0, groups=("iwt_pstaff",)),
    Case("iwt_pcarol", 4.0, groups=("iwt_pstaff",)),
    Case("iwt_psvc", None),
]


@pytest.fixture(scope="module")
def server(e2e: E2E) -> infra.SshServer:
    for case in CASES:
        if case.user not in e2e.users.created:
            e2e.users.user(case.user, groups=case.groups)
    return e2e.server(f"ForceCommand {e2e.force_command(e2e.policy(POLICY))}\n")


def test_each_login_gets_its_rules_timeout(server: infra.SshServer) -> None:
    sessions: list[tuple[Case, pexpect.spawn, float]] = []
    for case in CASES:
        child = server.interactive(case.user, "-b", case.source)
        child.expect(PROMPT)
        child.send("echo go-$((20+1))\r")
        sessions.append((case, child, time.monotonic()))
        child.expect("go-21")
    closed: dict[int, float] = {}
    end = time.monotonic() + 7.0
    while time.monotonic() < end and len(closed) < len(sessions) - 1:
        for i, (_, child, sent) in enumerate(sessions):
            if i not in closed and child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=0.02) == 0:
                closed[i] = time.monotonic() - sent
    wrong = []
    for i, (case, child, _) in enumerate(sessions):
        got = closed.get(i)
        if case.expected is None:
            if got is not None or not child.isalive():
                wrong.append(f"{case.user}: exempt, but closed after {got}")
            continue
        if got is None or not case.expected <= got <= case.expected + 1.0:
            wrong.append(f"{case.user} from {case.source}: expected {case.expected}s, got {got}")
    assert not wrong, wrong
    exempt = sessions[-1][1]
    exempt.send("exit\r")
    exempt.expect(pexpect.EOF)


def test_policy_command_explains_the_same_rules(e2e: E2E, server: infra.SshServer) -> None:
    config = e2e.policy(POLICY)
    out = infra.run(e2e.python, "-I", "-m", "idlewrap", "policy", "--config", str(config),
                    "--user", "iwt_pdave").stdout
    assert "idle_timeout 2s (staff)" in out or "idle_timeout 2 (staff)" in out, out
    out = infra.run(e2e.python, "-I", "-m", "idlewrap", "policy", "--config", str(config),
                    "--user", "iwt_pcarol", "--address", "127.0.0.2").stdout
    assert "(outside)" in out, out
