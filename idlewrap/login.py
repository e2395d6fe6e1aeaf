"""The deployed wrapper for one login: who it is, what the policy says, what to run.

sshd starts it as a ForceCommand (`python3 -I -m idlewrap`) or as the account's
login shell (the launcher). Sessions with a pty, and a login shell without one, run
under the deadline through wrapper.run_relayed; a command without a pty through
wrapper.run_streamed when `command_idle_timeout` gives it a deadline, else it is
exec'd untouched.
"""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Mapping

from idlewrap.environment import exec_environment
from idlewrap.events import EventLog, new_session_id
from idlewrap.hardening import EXIT_TRACED, protect_process, tracer
from idlewrap.identity import session_kind
from idlewrap.login_policy import Login, read_policy
from idlewrap.session import Plan, command_name, plan, real_shell
from idlewrap.settings import Settings
from idlewrap.spawn import exec_replacing
from idlewrap.watchdog import protocol
from idlewrap.watchdog.link import WatchdogLink
from idlewrap.wrapper import EXIT_NO_SHELL, run_relayed, run_streamed

TYPE_CHECKING = False  # not typing's: a session never imports typing (records.py)
if TYPE_CHECKING:
    from idlewrap.session import Mode

REGISTER_WAIT = 0.5  # a command waits this long at most for the watchdog to check its wrapper


def run_login(*, config: str, command: str | None, env: Mapping[str, str]) -> int:
    """The deployed wrapper (ForceCommand or login shell): one guarded session.

    `env` identifies the connection (SSH_CONNECTION, TERM); the session gets the
    environment sshd started this process with, not what the interpreter made of it.
    """
    session_env = exec_environment()  # before protect_process: then only root may read it
    protect_process()
    account = pwd.getpwuid(os.getuid())
    tty = os.isatty(0)
    tty_name = os.ttyname(0) if tty else None
    kind = session_kind(command=command, tty=tty)
    policy = read_policy(config, Login(account.pw_name, account.pw_uid, kind, env))
    settings = policy.settings
    shell = real_shell(settings.shell, account.pw_shell)
    todo = plan(shell=shell, command=command, tty=tty, env=session_env)
    events = EventLog(
        policy.log_socket,
        base={
            "user": account.pw_name,
            "uid": account.pw_uid,
            **policy.connection,
            "tty": tty_name,
            "session": new_session_id(),
            "pid": os.getpid(),
            "mode": todo.mode,
            "command": None if command is None else command_name(command),
            "rule": policy.rule,
            **_deadline_fields(todo.mode, settings),
            "action": settings.action,
        },
        stderr_fd=-1 if todo.mode == "command" else 2,
    )
    if _traced(events):
        return EXIT_TRACED
    _report_problems(policy.problems, config, events)
    _report_loader_variables(env, events)
    watchdog = _register(policy.watchdog_socket, events, tty=tty_name)
    events.emit("session_start", shell=shell)
    if settings.exempt:
        events.emit("exempt", reason=f"policy {policy.sources.get('exempt', 'default')}")
    streamed = todo.mode == "command"
    if streamed and (settings.exempt or settings.command_idle_timeout is None):
        if watchdog is not None:
            watchdog.send(protocol.EXEC)  # the socket closes at exec: no wrapper died
            watchdog.answered(REGISTER_WAIT)
        events.close()
        return _exec(todo)
    settings = settings._replace(message=settings.message.replace("{user}", account.pw_name))
    rhost = policy.connection.get("rhost")  # the client's address, for the lock's PAM check
    try:
        if streamed:
            return run_streamed(todo, settings, events, watchdog=watchdog)
        return run_relayed(todo, settings, events, term=env.get("TERM"),
                           rhost=rhost if isinstance(rhost, str) else None, watchdog=watchdog)
    finally:
        events.close()


def _traced(events: EventLog) -> bool:
    """Someone attached before the process turned non-dumpable: run no session under them."""
    pid = tracer()
    if not pid:
        return False
    events.emit("config_error", reason="traced", tracer=pid)
    events.close()
    print(f"idlewrap: process {pid} traces the wrapper: no session", file=sys.stderr)
    return True


def _register(socket_path: str, events: EventLog, *, tty: str | None) -> WatchdogLink | None:
    """Tell the watchdog this session's wrapper runs (it takes the terminal away from the
    user's other processes); say so in the log when there is no watchdog to tell."""
    watchdog = WatchdogLink.connect(socket_path)
    if watchdog is None:
        events.emit("config_error", reason="no_watchdog", socket=socket_path)
        return None
    watchdog.send(protocol.REGISTER, kind="session", tty=tty)
    return watchdog


def _deadline_fields(mode: Mode, settings: Settings) -> dict[str, object]:
    """The limits every event of the session carries (none when it is not timed)."""
    if settings.exempt:
        return {}
    if mode == "command":
        if settings.command_idle_timeout is None:
            return {}
        return {"idle_timeout": settings.command_idle_timeout,
                "activity": settings.command_activity}
    return {"idle_timeout": settings.idle_timeout, "warn_before": settings.warn_before}


def _exec(todo: Plan) -> int:
    try:
        exec_replacing(todo.path, todo.argv, todo.env)
    except OSError as e:
        print(f"idlewrap: cannot run {todo.path}: {e.strerror}", file=sys.stderr)
    return EXIT_NO_SHELL


# glibc variables besides LD_* that make a program load code or change how it runs
_LOADER_VARIABLES = frozenset({"GCONV_PATH", "GLIBC_TUNABLES", "LOCPATH", "NLSPATH", "HOSTALIASES"})


def _report_loader_variables(env: Mapping[str, str], events: EventLog) -> None:
    """LD_* (or the like) reached the wrapper: the deployment lets users set its environment.

    A preloaded library ran before this line and could hide itself, so this only
    catches the careless; the fix is in PAM/sshd (docs/deploy.md, "pam_env").
    """
    found = sorted(name for name in env if name.startswith("LD_") or name in _LOADER_VARIABLES)
    if found:
        events.emit("config_error", reason="unsafe_environment", variables=",".join(found))


def _report_problems(problems: list[str], config: str, events: EventLog) -> None:
    """A broken policy means built-in defaults: say so once on stderr and once in the log."""
    if not problems:
        return
    missing = not os.path.lexists(config)
    first = problems[0]
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    events.emit(
        "config_error",
        reason="missing" if missing else "invalid",
        problem=first + more,
        config=config,
    )
    if not missing:
        print(f"idlewrap: {first}{more}; using built-in defaults", file=sys.stderr)
