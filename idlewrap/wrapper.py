"""One session from start to end: policy, identity, what to run, the relay, the end."""

from __future__ import annotations

import contextlib
import os
import pwd
import select
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from idlewrap import deadline as clock
from idlewrap import teardown
from idlewrap.deadline import IdleDeadline
from idlewrap.durations import format_duration
from idlewrap.events import EventLog, connection_fields, new_session_id
from idlewrap.hardening import DeadMansSwitch, protect_process
from idlewrap.identity import LoginContext, groups_of, parse_ssh_connection
from idlewrap.policy import Problem, load_policy_failsafe, resolve
from idlewrap.relay import Events, Outcome, Relay, Result, WarningStyle
from idlewrap.session import Plan, plan, real_shell
from idlewrap.spawn import Child, exec_replacing, spawn_in_pty, spawn_on_pipe
from idlewrap.terminal import get_size, nonblocking, raw_mode

EXIT_TIMEOUT = 124  # as timeout(1): the session was ended for being idle
EXIT_NO_SHELL = 127


@dataclass(frozen=True)
class Limits:
    """The parts of the policy the relay enforces."""

    idle_timeout: int
    warn_before: int
    exempt: bool
    message: str
    warning: str
    bell: bool


class _NoEvents:
    """The demo logs nothing: it is nobody's audit trail."""

    def emit(self, event: str, **fields: object) -> None:
        pass


def run_login(*, config: str, command: str | None, env: Mapping[str, str]) -> int:
    """The deployed wrapper (ForceCommand or login shell): one guarded session."""
    protect_process()
    account = pwd.getpwuid(os.getuid())
    tty = os.isatty(0)
    policy, problems = load_policy_failsafe(config)
    address, _ = parse_ssh_connection(env.get("SSH_CONNECTION"))
    kind: Literal["interactive", "command"] = (
        "command" if command is not None and not tty else "interactive"
    )
    ctx = LoginContext(account.pw_name, account.pw_uid, groups_of(account.pw_name), address, kind)
    resolved = resolve(policy, ctx)
    settings = resolved.settings
    shell = real_shell(settings.shell, account.pw_shell)
    todo = plan(shell=shell, command=command, tty=tty, env=dict(env))
    events = EventLog(
        policy.log_socket,
        base={
            "user": account.pw_name,
            "uid": account.pw_uid,
            **connection_fields(env),
            "tty": os.ttyname(0) if tty else None,
            "session": new_session_id(),
            "pid": os.getpid(),
            "mode": todo.mode,
            "rule": resolved.rule,
            "idle_timeout": None if settings.exempt else settings.idle_timeout,
        },
        stderr_fd=-1 if todo.mode == "command" else 2,
    )
    _report_problems(problems, config, events)
    _report_loader_variables(env, events)
    events.emit("session_start", shell=shell, warn_before=settings.warn_before)
    if settings.exempt:
        events.emit("exempt", reason=f"policy {resolved.sources.get('exempt', 'default')}")
    if todo.mode == "command":
        events.close()
        return _exec(todo)
    limits = Limits(
        idle_timeout=settings.idle_timeout,
        warn_before=settings.warn_before,
        exempt=settings.exempt,
        message=settings.message.replace("{user}", account.pw_name),
        warning=settings.warning,
        bell=settings.bell,
    )
    try:
        return run_relayed(todo, limits, events, term=env.get("TERM"))
    finally:
        events.close()


def run_demo(
    *, idle_timeout: int, warn_before: int, argv: list[str], env: Mapping[str, str]
) -> int:
    """`idlewrap demo`: the same relay and deadline, no policy, no log, no root."""
    protect_process()
    todo = Plan("interactive" if os.isatty(0) else "pipe", argv[0], argv, dict(env))
    limits = Limits(
        idle_timeout=idle_timeout,
        warn_before=warn_before,
        exempt=False,
        message="idlewrap demo: session closed after {idle} without input.",
        warning="This demo session is idle and will be closed.",
        bell=True,
    )
    return run_relayed(todo, limits, _NoEvents(), term=env.get("TERM"))


def run_relayed(todo: Plan, limits: Limits, events: Events, *, term: str | None) -> int:
    """Start the program under the deadline, relay until the end, tear down, report."""
    pty = todo.mode == "interactive"
    try:
        if pty:
            child = spawn_in_pty(todo.path, todo.argv, todo.env, get_size(0))
        else:
            child = spawn_on_pipe(todo.path, todo.argv, todo.env)
    except OSError as e:
        print(f"idlewrap: cannot run {todo.path}: {e.strerror}", file=sys.stderr)
        return EXIT_NO_SHELL
    idle = IdleDeadline(limits.idle_timeout, limits.warn_before, clock.now())
    relay = Relay(
        child,
        user_in=0,
        user_out=1,
        deadline=None if limits.exempt else idle,
        deadman=None if limits.exempt else DeadMansSwitch(),
        events=events,
        warning=WarningStyle(limits.warning, limits.bell, term),
    )
    if pty:
        with raw_mode(0), nonblocking(0, 1):
            result = relay.run()
            _say_goodbye(result, relay, limits, child)
    else:
        result = relay.run()
        _say_goodbye(result, relay, limits, child)
    _end_session(child, relay)
    return _report_end(result, events)


def _say_goodbye(result: Result, relay: Relay, limits: Limits, child: Child) -> None:
    """Leave the user's terminal sane and, on a timeout, tell the user why it ended."""
    if result.outcome is Outcome.DISCONNECT:
        return
    text = b""
    if child.pty:
        text += relay.terminal_reset()
    if result.outcome is Outcome.TIMEOUT:
        message = limits.message.replace("{idle}", format_duration(limits.idle_timeout))
        text += f"\r\n{message}\r\n".encode() if child.pty else f"{message}\n".encode()
    fd = 1 if child.pty else 2
    give_up = clock.now() + 1.0  # a client that stopped reading must not hold up the teardown
    while text and clock.now() < give_up:
        try:
            text = text[os.write(fd, text):]
        except BlockingIOError:
            select.select([], [fd], [], 0.1)
        except OSError:
            return


def _end_session(child: Child, relay: Relay) -> None:
    """No process of the session outlives it (the wrapper is their subreaper)."""
    with contextlib.suppress(OSError):
        os.close(child.fd)  # a pty master's close hangs up the session at once
    teardown.end_all(relay.reap)


def _report_end(result: Result, events: Events) -> int:
    idle = round(result.idle)
    if result.outcome is Outcome.TIMEOUT:
        events.emit("timeout", idle=idle)
        return EXIT_TIMEOUT
    if result.outcome is Outcome.DISCONNECT:
        events.emit("disconnect", reason=result.reason, idle=idle)
        return 128 + signal.SIGHUP
    if result.outcome is Outcome.KILLED:
        assert result.signal is not None
        events.emit("session_end", reason="signal", signal=signal.Signals(result.signal).name)
        return 128 + result.signal
    status = result.wait_status or 0
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        events.emit("session_end", signal=signal.Signals(-code).name)
        return 128 - code
    events.emit("session_end", status=code)
    return code


def _exec(todo: Plan) -> int:
    try:
        exec_replacing(todo.path, todo.argv, todo.env)
    except OSError as e:
        print(f"idlewrap: cannot run {todo.path}: {e.strerror}", file=sys.stderr)
    return EXIT_NO_SHELL


def _report_loader_variables(env: Mapping[str, str], events: EventLog) -> None:
    """LD_* reached the wrapper: the deployment lets users set its environment.

    A preloaded library ran before this line and could hide itself, so this only
    catches the careless; the fix is in PAM/sshd (docs/deploy.md, "pam_env").
    """
    found = sorted(name for name in env if name.startswith("LD_"))
    if found:
        events.emit("config_error", reason="unsafe_environment", variables=",".join(found))


def _report_problems(problems: list[Problem], config: str, events: EventLog) -> None:
    """A broken policy means built-in defaults: say so once on stderr and once in the log."""
    if not problems:
        return
    missing = not os.path.lexists(config)
    first = str(problems[0])
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    events.emit(
        "config_error",
        reason="missing" if missing else "invalid",
        problem=first + more,
        config=config,
    )
    if not missing:
        print(f"idlewrap: {first}{more}; using built-in defaults", file=sys.stderr)
