"""Audit findings: the check record and the catalogue of stable check ids.

Each id is written once, here, with the fix to print when it does not pass and the
requirement ids it answers to; the checks, the report and docs/audit.md all follow
this table (tests/test_audit_findings.py keeps the docs in step).

Where the ids come from (DISA STIG rule ids, checked against the published STIG
content): RHEL-08-010200 / RHEL-09-255095 / UBTU-22-255030 set ClientAliveCountMax,
RHEL-08-010201 / RHEL-09-255100 / UBTU-22-255035 ClientAliveInterval; RHEL-08-010830 /
RHEL-09-255085 PermitUserEnvironment; RHEL-09-412035 / UBTU-22-412030 TMOUT;
RHEL-08-020035 / RHEL-09-412080 logind's StopIdleSessionSec; RHEL-08-020040,
RHEL-08-020070 and RHEL-09-412025 the (since retired) tmux lock rules. The SRGs:
SRG-OS-000163 (end a session after 10/15 minutes of inactivity; NIST SC-10),
SRG-OS-000279 (end user sessions after the inactivity time-out; AC-12), SRG-OS-000029
(start a session lock after 15 minutes; AC-11 a), SRG-OS-000028 (keep the lock until the
user authenticates again; AC-11 b), SRG-OS-000480 (configuration settings; CM-6 b).
"""

from typing import Literal, NamedTuple

Status = Literal["pass", "fail", "warn", "n/a"]
STATUSES: tuple[Status, ...] = ("pass", "fail", "warn", "n/a")

# Requirement ids, by what they require.
DISCONNECT = "SRG-OS-000163-GPOS-00072"  # NIST SC-10
TERMINATE = "SRG-OS-000279-GPOS-00109"  # NIST AC-12
LOCK = "SRG-OS-000029-GPOS-00010"  # NIST AC-11 a
LOCK_UNTIL_AUTH = "SRG-OS-000028-GPOS-00009"  # NIST AC-11 b
SETTINGS = "SRG-OS-000480-GPOS-00229"  # NIST CM-6 b
IDLE_END = (DISCONNECT, TERMINATE, "AC-12", "SC-10")
SSH_ALIVE = ("RHEL-08-010200", "RHEL-08-010201", "RHEL-09-255095", "RHEL-09-255100",
             "UBTU-22-255030", "UBTU-22-255035")

# The limits themselves: the STIG's 10 minutes for privileged accounts (here: root and
# members of sudo, wheel or adm) and 15 for the others; CIS's 15 minutes for everyone.
PRIVILEGED_GROUPS = frozenset({"sudo", "wheel", "adm"})
STIG_PRIVILEGED_SECONDS = 600
STIG_OTHERS_SECONDS = 900
CIS_SECONDS = 900


class Spec(NamedTuple):
    """What a check id means: its one-line fix and the requirement ids it answers to."""

    fix: str
    refs: tuple[str, ...]


CATALOG: dict[str, Spec] = {
    # -- per account, from sshd -T for that account
    "sshd.force_command": Spec(
        "login-shell mode: idlewrap install-shell PATH, then usermod -s PATH USER "
        "(or ForceCommand PYTHON -I -m idlewrap for accounts whose shell is /bin/sh)",
        IDLE_END),
    "shell.launcher": Spec(
        "rewrite it as root: PYTHON -I -m idlewrap install-shell PATH (docs/deploy.md)",
        IDLE_END),
    "sshd.permit_user_rc": Spec(
        "PermitUserRC no (or no-user-rc on every key in authorized_keys)",
        (TERMINATE, "AC-12")),
    "sshd.permit_user_environment": Spec(
        "PermitUserEnvironment no",
        ("RHEL-08-010830", "RHEL-09-255085", SETTINGS, "CM-6", "AC-12")),
    "sshd.accept_env": Spec(
        "AcceptEnv LANG LC_* (no pattern that matches LD_*)",
        (TERMINATE, "AC-12")),
    "sshd.client_alive": Spec(
        "ClientAliveInterval 600 and ClientAliveCountMax 1 (they drop dead clients; "
        "idle users are idlewrap's job)",
        (*SSH_ALIVE, DISCONNECT, TERMINATE, "SC-10", "AC-12")),
    "sshd.forwarding": Spec(
        "ChannelTimeout direct-tcpip=15m forwarded-tcpip=15m ... with "
        "UnusedConnectionTimeout 15m (OpenSSH 9.2+), or DisableForwarding yes",
        (DISCONNECT, "SC-10")),
    "sshd.command_sessions": Spec(
        "command_idle_timeout = \"15m\" in the policy (docs/policy.md), or ChannelTimeout "
        "session=15m (OpenSSH 9.2+): either closes an idle ssh host bash",
        IDLE_END),
    "policy.idle_timeout": Spec(
        "idle_timeout = \"10m\" for sudo/wheel/adm members, at most \"15m\" for others "
        "(docs/policy.md)",
        (*IDLE_END, LOCK, "AC-11")),
    # -- host-wide
    "policy.check": Spec(
        "run idlewrap check and fix what it says",
        (TERMINATE, "AC-12")),
    "policy.limits": Spec(
        "idle_timeout = \"10m\" in a rule for groups sudo, wheel, adm; at most \"15m\" "
        "elsewhere (docs/policy.md)",
        (*IDLE_END, LOCK, "AC-11")),
    "pam.user_readenv": Spec(
        "remove user_readenv=1 from every pam_env.so line (sed -i 's/ user_readenv=1//')",
        (TERMINATE, "AC-12")),
    "pam.hook": Spec(
        "session optional pam_exec.so quiet PYTHON -I -m idlewrap.pam_hook "
        "(pam/README.md)",
        ("AU-12",)),
    "pam.lock_service": Spec(
        "install -m 0644 pam/idlewrap /etc/pam.d/idlewrap",
        (LOCK_UNTIL_AUTH, "AC-11")),
    "watchdog.running": Spec(
        "run idlewrap watchdog (docs/deploy.md)",
        (TERMINATE, "AC-12")),
    "classic.tmout": Spec(
        "count on idlewrap, not TMOUT; keep the line only if a scanner insists on it",
        ("RHEL-09-412035", "UBTU-22-412030", DISCONNECT, LOCK, "AC-11", "SC-10")),
    "classic.stop_idle_session": Spec(
        "count on idlewrap, not StopIdleSessionSec; keep it only if a scanner insists on it",
        ("RHEL-08-020035", "RHEL-09-412080", DISCONNECT, "SC-10")),
    "classic.kill_user_processes": Spec(
        "KillUserProcesses=yes, if StopIdleSessionSec is kept at all",
        (TERMINATE, "AC-12")),
    "classic.tmux": Spec(
        "nothing needs it: the tmux rules were retired from the RHEL 8 and 9 STIGs",
        ("RHEL-08-020040", "RHEL-08-020070", "RHEL-09-412025", LOCK, LOCK_UNTIL_AUTH,
         "AC-11")),
}


class Check(NamedTuple):
    """One finding: a check id, its status, what was found, the fix and the refs.

    ``way_out`` says, for a failed check, how a user keeps an idle session open
    despite the wrapper (it makes the account "escapable"); None otherwise.
    """

    id: str
    status: Status
    detail: str
    fix: str | None
    refs: tuple[str, ...]
    way_out: str | None = None


def check(check_id: str, status: Status, detail: str, *, fix: str | None = None,
          way_out: str | None = None) -> Check:
    """A :class:`Check` for a catalogued id; the fix is shown only when it does not pass."""
    spec = CATALOG[check_id]
    shown = None if status in ("pass", "n/a") else (fix or spec.fix)
    return Check(check_id, status, detail, shown, spec.refs, way_out)
