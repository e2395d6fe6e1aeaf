"""Host-wide checks: the policy file, the PAM stack sshd runs, the watchdog."""

from __future__ import annotations

import socket

from idlewrap.audit.findings import (
    PRIVILEGED_GROUPS,
    STIG_OTHERS_SECONDS,
    STIG_PRIVILEGED_SECONDS,
    Check,
    Status,
    check,
)
from idlewrap.audit.launch import python_module, writable_by_others
from idlewrap.audit.pam_stack import PamLine, exec_command, option
from idlewrap.durations import format_duration
from idlewrap.identity import LoginContext
from idlewrap.policy import Policy, PolicyError, load_policy, resolve
from idlewrap.unlock import PAM_SERVICE_FILE as LOCK_SERVICE
from idlewrap.unlock import service_installed

WATCHDOG_SOCKET = "/run/idlewrap/watchdog.sock"
PAM_ENV_WAY_OUT = "~/.pam_environment can set LD_PRELOAD (pam_env user_readenv=1)"

# A login no selector can single out: what the policy gives "everyone else".
_ANYONE = LoginContext(user="", uid=-1, groups=frozenset(), address=None,
                       session="interactive")


def policy_check(path: str) -> Check:
    """``policy.check``: what ``idlewrap check`` says about the policy file."""
    try:
        policy = load_policy(path, lint=True)
    except PolicyError as err:
        errors = [p for p in err.problems if not p.warning]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return check("policy.check", "fail", f"{errors[0]}{more}: sessions get the built-in "
                     "defaults (15m for everyone)")
    if policy.warnings:
        more = f" (and {len(policy.warnings) - 1} more)" if len(policy.warnings) > 1 else ""
        return check("policy.check", "warn", f"{policy.warnings[0]}{more}",
                     fix="run idlewrap check and look at each warning")
    return check("policy.check", "pass", f"{path}: idlewrap check finds nothing wrong")


def policy_limits(policy: Policy) -> Check:
    """``policy.limits``: each rule's idle limit against the STIG's 10/15 minutes."""
    everyone = resolve(policy, _ANYONE).settings
    base = None if everyone.exempt else everyone.idle_timeout
    findings: list[tuple[Status, str]] = []

    def judge(label: str, idle: int | None, privileged: bool) -> None:
        limit = STIG_PRIVILEGED_SECONDS if privileged else STIG_OTHERS_SECONDS
        if idle is None:
            findings.append(("warn", f"{label}: exempt"))
        elif idle > limit:
            findings.append(("fail", f"{label}: {format_duration(idle)}, over the STIG's "
                             f"{format_duration(limit)}"))
        else:
            findings.append(("pass", f"{label}: {format_duration(idle)}"))

    admins_limited = base is not None and base <= STIG_PRIVILEGED_SECONDS
    for rule in policy.rules:
        own = rule.settings
        if own.idle_timeout is None and own.exempt is None:
            continue
        idle = None if (own.exempt if own.exempt is not None else everyone.exempt) else (
            own.idle_timeout or base)
        privileged = bool((rule.groups or frozenset()) & PRIVILEGED_GROUPS) or (
            "root" in (rule.users or frozenset()))
        judge(f"rule {rule.label}", idle, privileged)
        admins_limited = admins_limited or (privileged and idle is not None
                                            and idle <= STIG_PRIVILEGED_SECONDS)
    judge("everyone else", base, privileged=False)
    if not admins_limited:
        findings.append(("fail", "no rule gives members of sudo, wheel or adm 10m or less"))
    status: Status = next((s for s in ("fail", "warn") if any(f[0] == s for f in findings)),
                          "pass")
    return check("policy.limits", status, "; ".join(text for _, text in findings)
                 + " (STIG: 10m for sudo, wheel and adm, 15m for others; CIS: 15m)")


def locks(policy: Policy) -> bool:
    """True if any rule, or the top level, ends idle sessions with a lock screen."""
    return resolve(policy, _ANYONE).settings.action == "lock" or any(
        rule.settings.action == "lock" for rule in policy.rules)


def pam_checks(stack: list[PamLine], *, use_pam: bool, pam_file: str,
               lock_needed: bool) -> tuple[list[Check], tuple[str, ...]]:
    """The ``pam.*`` checks for sshd's stack, and the ways out they open for every account."""
    hooks = [rule for rule in stack if rule.type == "session"
             and rule.module_name == "pam_exec.so" and hook_command(rule) is not None]
    readenv = [rule for rule in stack if rule.module_name == "pam_env.so"
               and rule.type in ("auth", "session") and option(rule, "user_readenv") == "1"]
    lock = _lock_service(lock_needed)
    if not use_pam:
        return [check("pam.user_readenv", "n/a", "UsePAM no: sshd runs no PAM stack"),
                check("pam.hook", "warn", "UsePAM no: the PAM hook never runs",
                      fix="UsePAM yes, then add the hook (pam/README.md)"),
                lock], ()
    if readenv:
        root = "; the PAM hook runs as root with that environment" if hooks else ""
        env_check = check("pam.user_readenv", "fail",
                          f"user_readenv=1 at {', '.join(r.where() for r in readenv)}: "
                          "~/.pam_environment can set LD_PRELOAD for everything sshd starts, "
                          f"the wrapper included{root}", way_out=PAM_ENV_WAY_OUT)
    else:
        env_check = check("pam.user_readenv", "pass",
                          f"no pam_env line in {pam_file} reads ~/.pam_environment")
    return [env_check, _hook(hooks, pam_file), lock], (PAM_ENV_WAY_OUT,) if readenv else ()


def hook_command(rule: PamLine) -> tuple[list[str], bool] | None:
    """(command, -I given) if this pam_exec rule runs idlewrap's hook."""
    command = exec_command(rule)
    module = python_module(command[1:]) if command else None
    if module is None or module[0] != "idlewrap.pam_hook":
        return None
    return command, module[1]


def _hook(hooks: list[PamLine], pam_file: str) -> Check:
    if not hooks:
        return check("pam.hook", "warn", f"no idlewrap.pam_hook in {pam_file}'s session "
                     "stack: a connection whose wrapper never starts leaves no trace")
    rule = hooks[0]
    found = hook_command(rule)
    assert found is not None
    command, isolated = found
    problems = [] if isolated else ["it runs as root without -I"]
    unsafe = writable_by_others(command[0])
    if unsafe is not None:
        problems.append(unsafe)
    if problems:
        return check("pam.hook", "fail", f"{rule.where()}: " + "; ".join(problems),
                     fix="the hook runs as root: use PYTHON -I with an interpreter only root "
                     "can change")
    return check("pam.hook", "pass", f"{rule.where()} runs {' '.join(command)}")


def _lock_service(needed: bool) -> Check:
    if not needed:
        return check("pam.lock_service", "n/a", "no rule locks (action = \"lock\")")
    if service_installed():
        return check("pam.lock_service", "pass", f"{LOCK_SERVICE} is installed")
    return check("pam.lock_service", "fail", f"{LOCK_SERVICE} is missing: PAM would check "
                 "lock-screen passwords against /etc/pam.d/other")


def watchdog_check(path: str = WATCHDOG_SOCKET) -> Check:
    """``watchdog.running``: does the watchdog's socket accept a connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(path)
        except OSError as err:
            return check("watchdog.running", "warn", f"{path}: {err.strerror or err}: a "
                         "wrapper killed with SIGKILL leaves jobs that ignore SIGHUP running, "
                         "with no terminal")
    return check("watchdog.running", "pass", f"{path} accepts connections")
