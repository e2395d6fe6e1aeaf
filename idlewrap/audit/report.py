"""The audit's result: readable text grouped by account then host, JSON, exit status."""

from __future__ import annotations

import json
from collections import Counter
from typing import NamedTuple

from idlewrap.audit.account import AccountReport, Coverage
from idlewrap.audit.findings import STATUSES, Check
from idlewrap.durations import format_duration

COVERAGES: tuple[Coverage, ...] = ("covered", "escapable", "uncovered", "exempt")


class Report(NamedTuple):
    """Everything one audit found."""

    header: str  # what was audited: sshd_config, PAM file, policy, connection
    accounts: list[AccountReport]
    checks: list[Check]  # host-wide


def exit_status(report: Report) -> int:
    """0 when nothing failed, 1 when a check failed."""
    every = [c for a in report.accounts for c in a.checks] + report.checks
    return 1 if any(c.status == "fail" for c in every) else 0


def _check_lines(found: Check) -> list[str]:
    lines = [f"  {found.status:<4}  {found.id}: {found.detail}"]
    if found.status in ("fail", "warn"):
        if found.fix:
            lines.append(f"        fix: {found.fix}")
        if found.refs:
            lines.append(f"        refs: {', '.join(found.refs)}")
    return lines


def render_text(report: Report) -> str:
    """The readable report: one block per account, then the host-wide checks, then totals."""
    lines = [report.header, ""]
    for account in report.accounts:
        limit = ("" if account.idle_timeout is None
                 else f" (idle limit {format_duration(account.idle_timeout)})")
        lines.append(f"account {account.user}: {account.coverage}{limit}: {account.why}")
        for found in account.checks:
            lines += _check_lines(found)
        lines.append("")
    lines.append("host")
    for found in report.checks:
        lines += _check_lines(found)
    lines += ["", _summary(report)]
    return "\n".join(lines)


def _summary(report: Report) -> str:
    coverage = Counter(a.coverage for a in report.accounts)
    statuses = Counter(c.status for a in report.accounts for c in a.checks)
    statuses.update(c.status for c in report.checks)
    return (f"{len(report.accounts)} accounts: "
            + ", ".join(f"{coverage[c]} {c}" for c in COVERAGES)
            + "; checks: " + ", ".join(f"{statuses[s]} {s}" for s in STATUSES))


def _check_json(found: Check) -> dict[str, object]:
    return {"id": found.id, "status": found.status, "detail": found.detail,
            "fix": found.fix, "refs": list(found.refs)}


def render_json(report: Report) -> str:
    """``{"accounts": [...], "checks": [...]}``, field by field as docs/audit.md says."""
    return json.dumps({
        "accounts": [{"user": a.user, "coverage": a.coverage, "why": a.why,
                      "idle_timeout": a.idle_timeout,
                      "checks": [_check_json(c) for c in a.checks]}
                     for a in report.accounts],
        "checks": [_check_json(c) for c in report.checks],
    }, indent=2)
