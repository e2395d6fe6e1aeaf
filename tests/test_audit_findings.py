"""Check ids, coverage and the report of `idlewrap audit`, without sshd (one test needs root)."""

import json
import re
from pathlib import Path

import pytest

from idlewrap.audit.account import AccountReport, HostFacts, audit_account
from idlewrap.audit.findings import CATALOG, check
from idlewrap.audit.report import Report, exit_status, render_json, render_text
from idlewrap.audit.sshd import Connection, parse_effective
from tests import infra

# The ids are an interface (scripts parse --json): renaming one must be deliberate.
STABLE_IDS = [
    "sshd.force_command", "shell.launcher", "sshd.permit_user_rc",
    "sshd.permit_user_environment", "sshd.accept_env", "sshd.client_alive",
    "sshd.forwarding", "sshd.command_sessions", "policy.idle_timeout",
    "policy.check", "policy.limits", "pam.user_readenv", "pam.hook", "pam.lock_service",
    "watchdog.running", "classic.tmout", "classic.stop_idle_session",
    "classic.kill_user_processes", "classic.tmux",
]


def test_check_ids_are_stable() -> None:
    assert list(CATALOG) == STABLE_IDS


def test_every_check_id_is_documented_with_its_refs() -> None:
    docs = (infra.REPO / "docs" / "audit.md").read_text()
    for check_id, spec in CATALOG.items():
        section = re.search(rf"^### `{re.escape(check_id)}`\n(.*?)(?=^### |\Z)", docs,
                            re.M | re.S)
        assert section is not None, f"docs/audit.md has no section for {check_id}"
        for ref in spec.refs:
            assert ref in section[1], f"docs/audit.md: {check_id} does not name {ref}"


def test_fix_only_when_not_passing() -> None:
    assert check("pam.hook", "pass", "ok").fix is None
    assert check("pam.hook", "n/a", "ok").fix is None
    assert check("pam.hook", "warn", "x").fix == CATALOG["pam.hook"].fix
    assert check("pam.hook", "fail", "x", fix="other").fix == "other"
    assert check("pam.hook", "fail", "x").refs == CATALOG["pam.hook"].refs


FACTS = HostFacts(sshd_version=(9, 2),
                  connection=Connection("localhost", "127.0.0.1", "127.0.0.1", 22),
                  default_config="/nonexistent/idlewrap.toml", way_outs=())
GOOD_SSHD = """\
forcecommand /usr/bin/python3 -I -m idlewrap
permituserrc yes
permituserenvironment no
clientaliveinterval 600
clientalivecountmax 1
disableforwarding yes
channeltimeout session=15m
"""


def audit_root(sshd_text: str, shell: str = "/bin/sh", facts: HostFacts = FACTS
               ) -> AccountReport:
    return audit_account("root", shell, parse_effective(sshd_text), facts)


def statuses(report: AccountReport) -> dict[str, str]:
    return {c.id: c.status for c in report.checks}


def test_forcecommand_with_sh_is_covered() -> None:
    report = audit_root(GOOD_SSHD)
    assert (report.coverage, report.idle_timeout) == ("covered", 900)
    assert report.why == "ForceCommand runs idlewrap and /bin/sh reads no user file first"
    assert statuses(report)["sshd.force_command"] == "pass"
    assert statuses(report)["sshd.permit_user_rc"] == "n/a"  # a ForceCommand skips ~/.ssh/rc
    # The policy file is missing: the built-in 15m applies, and root is privileged (10m).
    idle = next(c for c in report.checks if c.id == "policy.idle_timeout")
    assert idle.status == "fail"
    assert idle.detail.startswith("idle_timeout 15m (default) is longer than the STIG's 10m "
                                  "for root")
    assert "cannot be used" in idle.detail


def test_forcecommand_with_bash_is_escapable_through_bashrc() -> None:
    report = audit_root(GOOD_SSHD, shell="/bin/bash")
    assert report.coverage == "escapable"
    assert report.why.startswith("/bin/bash reads ~/.bashrc")
    assert statuses(report)["sshd.force_command"] == "fail"


def test_a_host_way_out_makes_a_wrapped_account_escapable() -> None:
    report = audit_root(GOOD_SSHD, facts=FACTS._replace(way_outs=("pam says so",)))
    assert (report.coverage, report.why) == ("escapable", "pam says so")


@pytest.mark.parametrize(("change", "check_id", "status", "words"), [
    ("clientalivecountmax 0", "sshd.client_alive", "fail", "since OpenSSH 8.2"),
    ("clientaliveinterval 0", "sshd.client_alive", "warn", "never asks"),
    ("clientaliveinterval 300\nclientalivecountmax 3", "sshd.client_alive", "warn", "900 s"),
    ("permituserenvironment yes", "sshd.permit_user_environment", "fail", "LD_PRELOAD"),
    ("permituserenvironment LANG,LC_*", "sshd.permit_user_environment", "pass", "no LD_*"),
    ("permituserenvironment *,!LD_*", "sshd.permit_user_environment", "pass", "no LD_*"),
    ("acceptenv LANG\nacceptenv LD_*", "sshd.accept_env", "fail", "LD_PRELOAD"),
    ("forcecommand none", "sshd.force_command", "fail", "without idlewrap"),
    ("forcecommand /usr/bin/python3 -m idlewrap", "sshd.force_command", "fail", "without -I"),
    ("forcecommand internal-sftp", "sshd.force_command", "pass", "sftp only"),
])
def test_single_settings(change: str, check_id: str, status: str, words: str) -> None:
    keys = {line.split()[0] for line in change.splitlines()}
    kept = [line for line in GOOD_SSHD.splitlines() if line.split()[0] not in keys]
    report = audit_root("\n".join([*kept, change]) + "\n")
    found = next(c for c in report.checks if c.id == check_id)
    assert (found.status, words in found.detail) == (status, True), found


def test_an_sftp_only_account_has_no_session_to_time() -> None:
    report = audit_root(GOOD_SSHD.replace("/usr/bin/python3 -I -m idlewrap", "internal-sftp"))
    assert (report.coverage, report.idle_timeout) == ("covered", None)
    assert statuses(report)["policy.idle_timeout"] == "n/a"


def test_client_alive_count_0_before_82_is_a_warning() -> None:
    report = audit_root(GOOD_SSHD.replace("countmax 1", "countmax 0"),
                        facts=FACTS._replace(sshd_version=(7, 4)))
    found = next(c for c in report.checks if c.id == "sshd.client_alive")
    assert found.status == "warn" and "ServerAliveInterval" in found.detail


def test_forwarding_needs_channel_and_unused_connection_timeouts() -> None:
    base = GOOD_SSHD.replace("disableforwarding yes\n", "allowtcpforwarding local\n")
    found = next(c for c in audit_root(base).checks if c.id == "sshd.forwarding")
    assert found.status == "warn"
    assert "no ChannelTimeout for direct-tcpip and no UnusedConnectionTimeout" in found.detail
    timed = base.replace("channeltimeout session=15m",
                         "channeltimeout session=15m direct-tcpip=15m\n"
                         "unusedconnectiontimeout 900")
    found = next(c for c in audit_root(timed).checks if c.id == "sshd.forwarding")
    assert found.status == "pass"


@pytest.mark.root
def test_command_sessions_are_closed_by_sshd_or_by_the_policy(trusted_dir: Path) -> None:
    untimed = GOOD_SSHD.replace("channeltimeout session=15m\n", "")
    found = next(c for c in audit_root(untimed).checks if c.id == "sshd.command_sessions")
    assert found.status == "warn" and "no command_idle_timeout" in found.detail
    policy = infra.write_root_file(trusted_dir / "idlewrap.toml",
                                   'command_idle_timeout = "10m"\n')
    report = audit_root(untimed, facts=FACTS._replace(default_config=str(policy)))
    found = next(c for c in report.checks if c.id == "sshd.command_sessions")
    assert (found.status, found.detail) == (
        "pass", "command_idle_timeout 10m (global): idlewrap ends an idle command session "
        "(ssh host bash, no pty)")


def test_uncovered_but_exempt_by_policy_is_exempt() -> None:
    # No policy file: nothing exempts, so no ForceCommand means uncovered.
    report = audit_root(GOOD_SSHD.replace("forcecommand /usr/bin/python3 -I -m idlewrap",
                                          "forcecommand none"))
    assert report.coverage == "uncovered" and report.idle_timeout is None


def sample_report() -> Report:
    failing = check("sshd.client_alive", "fail", "ClientAliveCountMax 0")
    account = AccountReport("alice", "escapable", "~/.ssh/rc runs first", 600,
                            [check("sshd.force_command", "pass", "fine"), failing])
    return Report("idlewrap audit: test", [account],
                  [check("watchdog.running", "warn", "no socket"),
                   check("classic.tmux", "n/a", "none")])


def test_render_text_groups_by_account_then_host() -> None:
    text = render_text(sample_report())
    assert text.splitlines() == [
        "idlewrap audit: test",
        "",
        "account alice: escapable (idle limit 10m): ~/.ssh/rc runs first",
        "  pass  sshd.force_command: fine",
        "  fail  sshd.client_alive: ClientAliveCountMax 0",
        f"        fix: {CATALOG['sshd.client_alive'].fix}",
        f"        refs: {', '.join(CATALOG['sshd.client_alive'].refs)}",
        "",
        "host",
        "  warn  watchdog.running: no socket",
        "        fix: run idlewrap watchdog (docs/deploy.md)",
        "        refs: SRG-OS-000279-GPOS-00109, AC-12",
        "  n/a   classic.tmux: none",
        "",
        "1 accounts: 0 covered, 1 escapable, 0 uncovered, 0 exempt; "
        "checks: 1 pass, 1 fail, 1 warn, 1 n/a",
    ]


def test_render_json_and_exit_status() -> None:
    report = sample_report()
    data = json.loads(render_json(report))
    assert list(data) == ["accounts", "checks"]
    assert data["accounts"][0] == {
        "user": "alice", "coverage": "escapable", "why": "~/.ssh/rc runs first",
        "idle_timeout": 600,
        "checks": [
            {"id": "sshd.force_command", "status": "pass", "detail": "fine", "fix": None,
             "refs": list(CATALOG["sshd.force_command"].refs)},
            {"id": "sshd.client_alive", "status": "fail", "detail": "ClientAliveCountMax 0",
             "fix": CATALOG["sshd.client_alive"].fix,
             "refs": list(CATALOG["sshd.client_alive"].refs)},
        ],
    }
    assert [c["id"] for c in data["checks"]] == ["watchdog.running", "classic.tmux"]
    assert exit_status(report) == 1
    passing = report._replace(accounts=[report.accounts[0]._replace(
        checks=report.accounts[0].checks[:1])])
    assert exit_status(passing) == 0
