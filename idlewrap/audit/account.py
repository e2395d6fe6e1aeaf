"""One account: what ends its idle sessions, and could the user escape it.

The checks read sshd's effective settings for that account (Match blocks applied), its
login shell and the policy its wrapper reads. Coverage follows from them: an account is
only as covered as its weakest way in, so one failed check that opens a way out (its
``way_out``) makes the account "escapable".
"""

from __future__ import annotations

import functools
from ipaddress import ip_address
from typing import Literal, NamedTuple

from idlewrap.audit.findings import (
    CIS_SECONDS,
    PRIVILEGED_GROUPS,
    STIG_OTHERS_SECONDS,
    STIG_PRIVILEGED_SECONDS,
    Check,
    check,
)
from idlewrap.audit.launch import (
    LAUNCHER_HOLDS_USER_RC,
    Wrapper,
    parse_force_command,
    read_launcher,
    starts_no_session,
    user_file_before_command,
    writable_by_others,
)
from idlewrap.audit.sshd import (
    Connection,
    SshdConfig,
    channel_timeout,
    pattern_list_match,
    refusal,
)
from idlewrap.durations import format_duration
from idlewrap.identity import LoginContext, login_context
from idlewrap.policy import Policy, Problem, Resolved, load_policy_failsafe, resolve

Coverage = Literal["covered", "escapable", "uncovered", "exempt"]
Mode = Literal["launcher", "forcecommand", "sftp"]

# Variables that make the dynamic loader run the user's code inside the interpreter.
LOADER_VARIABLES = ("LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT")
# Channel types each forwarding setting opens, for sshd.forwarding.
FORWARD_CHANNELS = {
    "allowtcpforwarding": {"local": ["direct-tcpip"], "remote": ["forwarded-tcpip"]},
    "allowstreamlocalforwarding": {"local": ["direct-streamlocal@openssh.com"],
                                   "remote": ["forwarded-streamlocal@openssh.com"]},
}


class HostFacts(NamedTuple):
    """What every account's audit needs from the host."""

    sshd_version: tuple[int, int] | None
    connection: Connection  # what sshd -T was told about the connection
    default_config: str  # the policy file when the wrapper names none
    way_outs: tuple[str, ...]  # host-wide escapes (PAM), for every wrapped account


class AccountReport(NamedTuple):
    """The audit of one account."""

    user: str
    coverage: Coverage
    why: str
    idle_timeout: int | None  # seconds, for a covered or escapable account
    checks: list[Check]


@functools.lru_cache(maxsize=16)
def policy_at(path: str) -> tuple[Policy, tuple[Problem, ...]]:
    """The policy the wrapper would use at login (built-in defaults if ``path`` is broken)."""
    policy, problems = load_policy_failsafe(path)
    return policy, tuple(problems)


def audit_account(user: str, shell: str, sshd: SshdConfig, host: HostFacts) -> AccountReport:
    """Audit ``user`` (login shell ``shell``) under sshd's settings for that account."""
    connection = host.connection
    ctx = login_context(user, address=ip_address(connection.addr), command=False)
    if starts_no_session(shell):
        return _no_session(user, f"login shell {shell} starts no session")
    refused = refusal(sshd, user, ctx.uid, ctx.groups, host=connection.host,
                      addr=connection.addr)
    if refused is not None:
        return _no_session(user, f"sshd refuses this account ({refused})")
    forced = sshd.get("forcecommand", "none")
    launcher = read_launcher(shell)
    wrapper = launcher or (parse_force_command(forced) if forced != "none" else None)
    config = wrapper.config if wrapper and wrapper.config else host.default_config
    policy, problems = policy_at(config)
    resolved = resolve(policy, ctx)
    deployment, mode = _force_command(shell, forced, launcher, wrapper)
    checks = [
        deployment,
        _launcher(shell, launcher),
        _permit_user_rc(sshd, mode, shell),
        _permit_user_environment(sshd),
        _accept_env(sshd),
        _client_alive(sshd, host.sshd_version),
        _forwarding(sshd, host.sshd_version),
        _command_sessions(sshd, mode, resolve(policy, ctx._replace(session="command"))),
        _idle_timeout(resolved, ctx, config, host, problems, mode),
    ]
    if mode is None and resolved.settings.exempt:
        checks[0] = checks[0]._replace(status="warn", detail=f"{checks[0].detail} (the "
                                       f"policy exempts it: {resolved.sources['exempt']})")
    coverage, why = _coverage(checks, mode, resolved, host, shell)
    timed = coverage in ("covered", "escapable") and mode != "sftp"
    idle = resolved.settings.idle_timeout if timed else None
    return AccountReport(user, coverage, why, idle, checks)


def _no_session(user: str, reason: str) -> AccountReport:
    return AccountReport(user, "covered", reason, None,
                         [check("sshd.force_command", "n/a", reason)])


def _coverage(checks: list[Check], mode: Mode | None, resolved: Resolved, host: HostFacts,
              shell: str) -> tuple[Coverage, str]:
    if resolved.settings.exempt:
        rule = resolved.sources["exempt"]
        extra = "" if mode else "; no wrapper runs for it either"
        return "exempt", f"exempt by policy ({rule}){extra}"
    if mode is None:
        return "uncovered", checks[0].detail
    way_outs = [c.way_out for c in checks if c.status == "fail" and c.way_out]
    if mode != "sftp":
        way_outs += host.way_outs
    if way_outs:
        return "escapable", "; ".join(way_outs)
    if mode == "launcher":
        return "covered", (f"login shell {shell} is the idlewrap launcher: sshd starts it "
                           "before any user file")
    if mode == "sftp":
        return "covered", "ForceCommand internal-sftp: sftp only, no shell"
    return "covered", f"ForceCommand runs idlewrap and {shell} reads no user file first"


def _wrapper_problems(wrapper: Wrapper) -> list[str]:
    """Why the user could change or bypass this idlewrap start; empty if they cannot."""
    problems = []
    if not wrapper.isolated:
        problems.append(f"{wrapper.interpreter} runs without -I (user site-packages "
                        "and PYTHON* variables reach it)")
    files = [wrapper.interpreter] if wrapper.kind == "module" else [wrapper.path,
                                                                    wrapper.interpreter]
    problems += [r for r in map(writable_by_others, files) if r is not None]
    return problems


def _force_command(shell: str, forced: str, launcher: Wrapper | None,
                   wrapper: Wrapper | None) -> tuple[Check, Mode | None]:
    """``sshd.force_command``, and how idlewrap starts for the account (None: it does not)."""
    name = "sshd.force_command"
    if launcher is not None:
        if forced == "none":
            return check(name, "n/a", f"none: login-shell mode ({shell} is the launcher)"), \
                "launcher"
        if parse_force_command(forced) is not None:
            return check(name, "pass", f"{forced}: runs through the launcher (wrapped "
                         "twice, harmless)"), "launcher"
        return check(name, "warn", f"{forced}: runs through the launcher as a command, "
                     "under the deadline only with a pty",
                     fix="drop the ForceCommand for accounts in login-shell mode"), "launcher"
    if forced == "none":
        return check(name, "fail", f"no ForceCommand, and the login shell {shell} is not the "
                     "launcher: sessions run without idlewrap"), None
    if forced.split()[0] == "internal-sftp":
        return check(name, "pass", f"{forced}: sftp only, served by sshd without a shell"), \
            "sftp"
    if wrapper is None:
        return check(name, "fail", f"{forced}: not idlewrap, so sessions run without it"), None
    problems = _wrapper_problems(wrapper)
    read_first = user_file_before_command(shell)
    if read_first is not None:
        problems.insert(0, f"{shell} reads {read_first} before the ForceCommand")
    if problems:
        return check(name, "fail", f"{forced}: " + "; ".join(problems),
                     way_out="; ".join(problems)), "forcecommand"
    return check(name, "pass", f"{forced}: -I, only root can change the interpreter, and "
                 f"{shell} reads no user file first"), "forcecommand"


def _launcher(shell: str, launcher: Wrapper | None) -> Check:
    name = "shell.launcher"
    if launcher is None:
        return check(name, "n/a", f"login shell {shell} is not the launcher")
    problems = _wrapper_problems(launcher)
    if problems:
        return check(name, "fail", f"{shell}: " + "; ".join(problems),
                     way_out="; ".join(problems))
    return check(name, "pass", f"{shell}: #!{launcher.interpreter} -I, only root can change "
                 "it or its interpreter")


def _permit_user_rc(sshd: SshdConfig, mode: Mode | None, shell: str) -> Check:
    name = "sshd.permit_user_rc"
    value = sshd.get("permituserrc", "yes")
    if mode is None:
        return check(name, "n/a", f"PermitUserRC {value}: no wrapper runs for this account")
    if mode != "launcher":
        return check(name, "n/a", f"PermitUserRC {value}: sshd skips ~/.ssh/rc when a "
                     "ForceCommand is set")
    if value == "no":
        return check(name, "pass", "PermitUserRC no: ~/.ssh/rc never runs")
    if LAUNCHER_HOLDS_USER_RC:
        return check(name, "pass", "PermitUserRC yes: the launcher runs ~/.ssh/rc without a "
                     "terminal, for a few seconds at most")
    escape = "~/.ssh/rc runs before the wrapper, untimed (PermitUserRC yes)"
    return check(name, "fail", f"PermitUserRC yes: sshd runs `{shell} -c '/bin/sh .ssh/rc'` "
                 "first and the launcher execs that command untimed, so ~/.ssh/rc can "
                 "start a shell on the session's terminal", way_out=escape)


def _loader_variables_allowed(allowed: list[str]) -> list[str]:
    return [v for v in LOADER_VARIABLES if pattern_list_match(v, allowed)]


def _permit_user_environment(sshd: SshdConfig) -> Check:
    name = "sshd.permit_user_environment"
    value = sshd.get("permituserenvironment", "no")
    if value == "no":
        return check(name, "pass", "PermitUserEnvironment no: ~/.ssh/environment is ignored")
    allowed = LOADER_VARIABLES if value == "yes" else tuple(
        _loader_variables_allowed(value.split(",")))
    if not allowed:
        return check(name, "pass", f"PermitUserEnvironment {value}: no LD_* variable passes")
    return check(name, "fail", f"PermitUserEnvironment {value}: ~/.ssh/environment can set "
                 f"{', '.join(allowed)} for the wrapper's interpreter",
                 way_out=f"~/.ssh/environment can set {allowed[0]} (PermitUserEnvironment "
                 f"{value})")


def _accept_env(sshd: SshdConfig) -> Check:
    name = "sshd.accept_env"
    patterns = " ".join(sshd.all("acceptenv")).split()
    if not patterns:
        return check(name, "pass", "AcceptEnv: none")
    allowed = [v for v in LOADER_VARIABLES
               if any(pattern_list_match(v, [p]) for p in patterns)]
    shown = " ".join(patterns)
    if not allowed:
        return check(name, "pass", f"AcceptEnv {shown}: no LD_* variable")
    return check(name, "fail", f"AcceptEnv {shown}: the client can send {', '.join(allowed)} "
                 "for the wrapper's interpreter",
                 way_out=f"the ssh client can send {allowed[0]} (AcceptEnv {shown})")


def _client_alive(sshd: SshdConfig, version: tuple[int, int] | None) -> Check:
    name = "sshd.client_alive"
    interval = int(sshd.get("clientaliveinterval", "0") or 0)
    count = int(sshd.get("clientalivecountmax", "3") or 0)
    shown = f"ClientAliveInterval {interval}, ClientAliveCountMax {count}"
    behaves = ("it measures a client that stops answering, never an idle user (the "
               "client answers for them)")
    if interval == 0:
        return check(name, "warn", f"{shown}: sshd never asks whether the client still "
                     f"answers; a checker fails it; {behaves}")
    if count == 0:
        if version is not None and version < (8, 2):
            return check(name, "warn", f"{shown}: before OpenSSH 8.2 this drops a "
                         f"connection after {interval} s without data from the client; a "
                         "client with ServerAliveInterval keeps it open forever")
        return check(name, "fail", f"{shown}: since OpenSSH 8.2 a count of 0 turns the check "
                     "off, so it ends nothing, yet checkers written for it (older STIGs) "
                     f"pass it; {behaves}")
    if interval * count > STIG_PRIVILEGED_SECONDS:
        return check(name, "warn", f"{shown}: a silent client is dropped after "
                     f"{interval * count} s, the STIG asks for 600 s; {behaves}")
    return check(name, "pass", f"{shown}: a checker passes it; as it behaves, a client "
                 f"that stops answering is dropped after {interval * count} s; {behaves}")


def _needs_92(version: tuple[int, int] | None) -> bool:
    return version is not None and version < (9, 2)


def _forwarding(sshd: SshdConfig, version: tuple[int, int] | None) -> Check:
    name = "sshd.forwarding"
    if sshd.get("disableforwarding") == "yes":
        return check(name, "pass", "DisableForwarding yes")
    channels: list[str] = []
    for key, kinds in FORWARD_CHANNELS.items():
        value = sshd.get(key, "no")
        if value in ("yes", "all"):
            channels += kinds["local"] + kinds["remote"]
        elif value in kinds:
            channels += kinds[value]
    if sshd.get("x11forwarding") == "yes":
        channels.append("x11-connection")
    if sshd.get("allowagentforwarding") == "yes":
        channels.append("agent-connection")
    if sshd.get("permittunnel", "no") != "no":
        channels.append("tun-connection")
    if not channels:
        return check(name, "pass", "no forwarding allowed")
    untimed = [c for c in channels if channel_timeout(sshd, c) is None]
    unused = sshd.seconds("unusedconnectiontimeout")
    gaps = []
    if untimed:
        gaps.append(f"no ChannelTimeout for {', '.join(untimed)}")
    if unused is None:
        gaps.append("no UnusedConnectionTimeout")
    if not gaps:
        return check(name, "pass", f"ChannelTimeout covers {', '.join(channels)}; "
                     f"UnusedConnectionTimeout {format_duration(unused or 0)}")
    fix = ("DisableForwarding yes (ChannelTimeout and UnusedConnectionTimeout need OpenSSH "
           "9.2)") if _needs_92(version) else None
    return check(name, "warn", f"forwarding allowed with {' and '.join(gaps)}: a connection "
                 "that only forwards (ssh -N -L ...) has no session for idlewrap to end and "
                 "stays open", fix=fix)


def _command_sessions(sshd: SshdConfig, mode: Mode | None, commands: Resolved) -> Check:
    """Is `ssh host bash` (no pty) closed when idle: by sshd, or by the policy's limit?"""
    name = "sshd.command_sessions"
    timeout = channel_timeout(sshd, "session")
    if timeout is not None:
        return check(name, "pass", f"ChannelTimeout session={format_duration(timeout)}: an "
                     "idle command session (ssh host bash, no pty) is closed by sshd")
    limit = commands.settings.command_idle_timeout
    if mode is not None and limit is not None and not commands.settings.exempt:
        source = commands.sources["command_idle_timeout"]
        return check(name, "pass", f"command_idle_timeout {format_duration(limit)} ({source}): "
                     "idlewrap ends an idle command session (ssh host bash, no pty)")
    return check(name, "warn", "no ChannelTimeout for session channels and no "
                 "command_idle_timeout: `ssh host bash` gives a shell without a pty, which "
                 "runs without a deadline (docs/policy.md, Command sessions)")


def stig_limit(ctx: LoginContext) -> tuple[int, str]:
    """The STIG's idle limit for this login, and whom it applies to."""
    if ctx.uid == 0:
        return STIG_PRIVILEGED_SECONDS, "root"
    if ctx.groups & PRIVILEGED_GROUPS:
        return STIG_PRIVILEGED_SECONDS, "members of sudo, wheel or adm"
    return STIG_OTHERS_SECONDS, "accounts outside sudo, wheel and adm"


def _idle_timeout(resolved: Resolved, ctx: LoginContext, config: str, host: HostFacts,
                  problems: tuple[Problem, ...], mode: Mode | None) -> Check:
    name = "policy.idle_timeout"
    if mode is None:
        return check(name, "n/a", "no wrapper runs for this account, so no policy applies")
    if mode == "sftp":
        return check(name, "n/a", "sftp only: no interactive session to time")
    notes = "" if config == host.default_config else f" (policy {config})"
    if any(not p.warning for p in problems):
        notes += f"; {config} cannot be used, so the built-in defaults apply"
    settings = resolved.settings
    if settings.exempt:
        return check(name, "warn", f"exempt = true ({resolved.sources['exempt']}): no idle "
                     f"limit{notes}", fix="document the exemption, or remove it")
    idle = format_duration(settings.idle_timeout)
    limit, whom = stig_limit(ctx)
    source = resolved.sources["idle_timeout"]
    if settings.idle_timeout > limit:
        return check(name, "fail", f"idle_timeout {idle} ({source}) is longer than the STIG's "
                     f"{format_duration(limit)} for {whom} (CIS: "
                     f"{format_duration(CIS_SECONDS)}){notes}")
    return check(name, "pass", f"idle_timeout {idle} ({source}): within the STIG's "
                 f"{format_duration(limit)} for {whom} and CIS's "
                 f"{format_duration(CIS_SECONDS)}{notes}")
