"""Run a program under the idle deadline: spawn, relay, goodbye, teardown, exit status.

`login.py` decides what to run for a login; `run_demo` runs a command without
policy or log. Both end up in `run_relayed`; a command without a pty that has a
deadline runs in `run_streamed` (its streams relayed, streams.py).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import sys
import termios
from collections.abc import Mapping

from idlewrap import deadline as clock
from idlewrap import teardown
from idlewrap.deadline import Alarm, IdleDeadline
from idlewrap.durations import format_duration
from idlewrap.hardening import DeadMansSwitch, protect_process
from idlewrap.idle import (
    DEADMAN_GRACE,
    IdleGuard,
    LockPlan,
    WarningStyle,
)
from idlewrap.libc import name_process
from idlewrap.relay import Outcome, Relay, Result
from idlewrap.session import Plan
from idlewrap.settings import Settings
from idlewrap.signals import SignalWakeup
from idlewrap.spawn import Child, spawn_in_pty, spawn_on_pipe, spawn_on_pipes
from idlewrap.terminal import get_size, nonblocking, raw_mode, write_all
from idlewrap.watchdog import protocol
from idlewrap.watchdog.link import ReportingDeadMan, WatchdogLink

TYPE_CHECKING = False  # not typing's: a session never imports typing (records.py)
if TYPE_CHECKING:
    from idlewrap.idle import DeadMan, Events, PasswordCheck

EXIT_TIMEOUT = 124  # as timeout(1): the session was ended for being idle
EXIT_INTERNAL = 70  # EX_SOFTWARE (sysexits.h): the wrapper failed and ended the session
EXIT_NO_SHELL = 127
WRAPPER_NAME = "idlewrap"  # the wrapper's process name (comm), as ps and `idlewrap lock` see it


class _NoEvents:
    """The demo logs nothing: it is nobody's audit trail."""

    def emit(self, event: str, **fields: object) -> None:
        pass


def run_demo(
    *, idle_timeout: int, warn_before: int, argv: list[str], env: Mapping[str, str]
) -> int:
    """`idlewrap demo`: the same relay and deadline, no policy, no log, no root."""
    protect_process()
    todo = Plan("interactive" if os.isatty(0) else "pipe", argv[0], argv, dict(env))
    settings = Settings(
        idle_timeout=idle_timeout,
        warn_before=warn_before,
        message="idlewrap demo: session closed after {idle} without input.",
        warning="This demo session is idle and will be closed.",
    )
    return run_relayed(todo, settings, _NoEvents(), term=env.get("TERM"))


def run_relayed(todo: Plan, settings: Settings, events: Events, *, term: str | None,
                rhost: str | None = None, check: PasswordCheck | None = None,
                watchdog: WatchdogLink | None = None) -> int:
    """Start the program under the deadline, relay until the end, tear down, report.

    `rhost` is the client's address (for the lock's PAM check); `check` replaces
    that check (tests: the real one is PAM, as the wrapper's own user). `watchdog`
    (registered) hears of each deadline and, once no process is left, of the clean end.
    """
    pty = todo.mode == "interactive"
    name_process(WRAPPER_NAME)  # how `idlewrap lock` tells its session's wrapper
    with SignalWakeup() as signals, Alarm() as alarm:
        try:
            child = _spawn(todo)
        except OSError as e:
            print(f"idlewrap: cannot run {todo.path}: {e.strerror}", file=sys.stderr)
            return EXIT_NO_SHELL
        relay = Relay(child, user_in=0, user_out=1, signals=signals, alarm=alarm)
        guard = None if settings.exempt else IdleGuard(
            IdleDeadline(settings.idle_timeout, settings.warn_before, clock.now()),
            deadman=_deadman(watchdog),
            events=events,
            style=WarningStyle(settings.warning, settings.bell, term),
            screen=relay if pty else None,
            now=clock.now(),
            lock=_lock_plan(settings, rhost, check) if pty else None,
        )
        with contextlib.ExitStack() as terminal:
            if pty:
                terminal.enter_context(raw_mode(0))
                terminal.enter_context(nonblocking(0, 1))
            result = relay.run(guard)
            status = _report_end(result, events)  # logged at the deadline, not after cleanup
            signals.ignore_ending()  # the goodbye and the teardown run to their end
            _say_goodbye(result, relay, settings, child)
        failed = _end_session(child, relay)
    _after_teardown(failed, events, watchdog)
    return status


def _deadman(watchdog: WatchdogLink | None) -> DeadMan:
    """The dead man's switch; with a watchdog, one that reports each deadline to it."""
    switch = DeadMansSwitch()
    return switch if watchdog is None else ReportingDeadMan(switch, watchdog, late=DEADMAN_GRACE)


def _after_teardown(failed: str | None, events: Events, watchdog: WatchdogLink | None) -> None:
    """Say how the teardown went: to the log if it failed (the watchdog ends what is
    left), to the watchdog as the clean end if it did not."""
    if failed is not None:
        events.emit("teardown_failed", reason=failed)
    elif watchdog is not None:
        watchdog.send(protocol.END)


def _lock_plan(settings: Settings, rhost: str | None, check: PasswordCheck | None) -> LockPlan:
    """Whose password unlocks: the account the wrapper runs as, never a name typed."""
    try:
        tty: str | None = os.ttyname(0)
    except OSError:
        tty = None
    return LockPlan(pwd.getpwuid(os.getuid()).pw_name, tty, rhost,
                    at_deadline=settings.action == "lock", attempts=settings.unlock_attempts,
                    terminate_after=settings.terminate_after, check=check)


def _spawn(todo: Plan) -> Child:
    if todo.mode == "interactive":
        # the client's terminal settings, read before fd 0 goes raw
        return spawn_in_pty(todo.path, todo.argv, todo.env, get_size(0), termios.tcgetattr(0))
    return spawn_on_pipe(todo.path, todo.argv, todo.env)


def _say_goodbye(result: Result, relay: Relay, settings: Settings, child: Child) -> None:
    """Leave the user's terminal sane and, on a timeout, tell the user why it ended."""
    if result.outcome is Outcome.DISCONNECT:
        return
    text = b""
    if child.pty:
        text += relay.terminal_reset()
    if result.outcome is Outcome.TIMEOUT:
        message = _timeout_message(result.reason, settings)
        text += f"\r\n{message}\r\n".encode() if child.pty else f"{message}\n".encode()
    with contextlib.suppress(OSError):  # a client that stopped reading gets 1 s, not more
        write_all(1 if child.pty else 2, text, 1.0)


def _timeout_message(reason: str, settings: Settings) -> str:
    """The policy's message with its limit: idle_timeout, or terminate_after for a lock."""
    if reason == "unlock_attempts":
        return f"idlewrap: session closed after {settings.unlock_attempts} wrong passwords."
    limit = settings.terminate_after if reason == "locked" else None
    return settings.message.replace("{idle}", format_duration(limit or settings.idle_timeout))


def run_streamed(todo: Plan, settings: Settings, events: Events, *,
                 watchdog: WatchdogLink | None = None) -> int:
    """A command without a pty, under `command_idle_timeout`: relay its streams, report.

    At the deadline, a disconnect or an error every process of the session is ended,
    as for a pty session. When the command exits on its own the wrapper leaves as
    sshd would have: jobs it detached (`nohup job >log 2>&1 &`) live on.
    """
    assert settings.command_idle_timeout is not None
    # Here, not at the top: an interactive session (every login) never loads them.
    from idlewrap.activity import ActivityGuard
    from idlewrap.streams import StreamRelay

    with SignalWakeup() as signals, Alarm() as alarm:
        try:
            child = spawn_on_pipes(todo.path, todo.argv, todo.env)
        except OSError as e:
            print(f"idlewrap: cannot run {todo.path}: {e.strerror}", file=sys.stderr)
            return EXIT_NO_SHELL
        guard = ActivityGuard(
            IdleDeadline(settings.command_idle_timeout, 0, clock.now()),
            output_counts=settings.command_activity == "any",
            deadman=_deadman(watchdog),
            now=clock.now(),
        )
        relay = StreamRelay(child, guard=guard, signals=signals, alarm=alarm)
        with nonblocking(0, 1, 2):
            result = relay.run()
            status = _report_end(result, events)
            signals.ignore_ending()
            if result.outcome is Outcome.TIMEOUT:
                message = settings.message.replace(
                    "{idle}", format_duration(settings.command_idle_timeout))
                with contextlib.suppress(OSError):
                    write_all(2, f"{message}\n".encode(), 1.0)
        relay.close()
        # Exited on its own: detached jobs live on, as without idlewrap.
        failed = None if result.outcome is Outcome.EXITED else teardown.end_all(relay.reap)
    _after_teardown(failed, events, watchdog)
    return status


def _end_session(child: Child, relay: Relay) -> str | None:
    """No process of the session outlives it (the wrapper is their subreaper); else why."""
    with contextlib.suppress(OSError):
        os.close(child.fd)  # a pty master's close hangs up the session at once
    return teardown.end_all(relay.reap)


def _report_end(result: Result, events: Events) -> int:
    """Log how the session ended; return the wrapper's exit status."""
    idle = round(result.idle)
    if result.outcome is Outcome.TIMEOUT:
        events.emit("timeout", idle=idle, reason=result.reason or None)
        return EXIT_TIMEOUT
    if result.outcome is Outcome.DISCONNECT:
        events.emit("disconnect", reason=result.reason, idle=idle)
        return 128 + signal.SIGHUP
    if result.outcome is Outcome.ERROR:
        events.emit("session_end", reason="error", error=result.reason)
        with contextlib.suppress(OSError):
            os.write(2, f"idlewrap: internal error, session ended: {result.reason}\r\n".encode())
        return EXIT_INTERNAL
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
