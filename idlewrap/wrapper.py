"""Run a program under the idle deadline: spawn, relay, goodbye, teardown, exit status.

`login.py` decides what to run for a login; `run_demo` runs a command without
policy or log. Both end up in `run_relayed`; a command without a pty that has a
deadline runs in `run_streamed` (its streams relayed, streams.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
from collections.abc import Mapping

from idlewrap import deadline as clock
from idlewrap import teardown
from idlewrap.activity import ActivityGuard
from idlewrap.deadline import Alarm, IdleDeadline
from idlewrap.durations import format_duration
from idlewrap.hardening import DeadMansSwitch, protect_process
from idlewrap.idle import Events, IdleGuard, WarningStyle
from idlewrap.relay import Outcome, Relay, Result
from idlewrap.session import Plan
from idlewrap.settings import Settings
from idlewrap.signals import SignalWakeup
from idlewrap.spawn import Child, spawn_in_pty, spawn_on_pipe, spawn_on_pipes
from idlewrap.streams import StreamRelay
from idlewrap.terminal import get_size, nonblocking, raw_mode, write_all

EXIT_TIMEOUT = 124  # as timeout(1): the session was ended for being idle
EXIT_INTERNAL = 70  # EX_SOFTWARE (sysexits.h): the wrapper failed and ended the session
EXIT_NO_SHELL = 127


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


def run_relayed(todo: Plan, settings: Settings, events: Events, *, term: str | None) -> int:
    """Start the program under the deadline, relay until the end, tear down, report."""
    pty = todo.mode == "interactive"
    with SignalWakeup() as signals, Alarm() as alarm:
        try:
            child = _spawn(todo)
        except OSError as e:
            print(f"idlewrap: cannot run {todo.path}: {e.strerror}", file=sys.stderr)
            return EXIT_NO_SHELL
        relay = Relay(child, user_in=0, user_out=1, signals=signals, alarm=alarm)
        guard = None if settings.exempt else IdleGuard(
            IdleDeadline(settings.idle_timeout, settings.warn_before, clock.now()),
            deadman=DeadMansSwitch(),
            events=events,
            style=WarningStyle(settings.warning, settings.bell, term),
            screen=relay if pty else None,
            now=clock.now(),
        )
        with contextlib.ExitStack() as terminal:
            if pty:
                terminal.enter_context(raw_mode(0))
                terminal.enter_context(nonblocking(0, 1))
            result = relay.run(guard)
            status = _report_end(result, events)  # logged at the deadline, not after cleanup
            signals.ignore_ending()  # the goodbye and the teardown run to their end
            _say_goodbye(result, relay, settings, child)
        _end_session(child, relay)
    return status


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
        message = _closing_message(settings, settings.idle_timeout)
        text += f"\r\n{message}\r\n".encode() if child.pty else f"{message}\n".encode()
    with contextlib.suppress(OSError):  # a client that stopped reading gets 1 s, not more
        write_all(1 if child.pty else 2, text, 1.0)


def _closing_message(settings: Settings, limit: int) -> str:
    return settings.message.replace("{idle}", format_duration(limit))


def run_streamed(todo: Plan, settings: Settings, events: Events) -> int:
    """A command without a pty, under `command_idle_timeout`: relay its streams, report.

    At the deadline, a disconnect or an error every process of the session is ended,
    as for a pty session. When the command exits on its own the wrapper leaves as
    sshd would have: jobs it detached (`nohup job >log 2>&1 &`) live on.
    """
    assert settings.command_idle_timeout is not None
    with SignalWakeup() as signals, Alarm() as alarm:
        try:
            child = spawn_on_pipes(todo.path, todo.argv, todo.env)
        except OSError as e:
            print(f"idlewrap: cannot run {todo.path}: {e.strerror}", file=sys.stderr)
            return EXIT_NO_SHELL
        guard = ActivityGuard(
            IdleDeadline(settings.command_idle_timeout, 0, clock.now()),
            output_counts=settings.command_activity == "any",
            deadman=DeadMansSwitch(),
            now=clock.now(),
        )
        relay = StreamRelay(child, guard=guard, signals=signals, alarm=alarm)
        with nonblocking(0, 1, 2):
            result = relay.run()
            status = _report_end(result, events)
            signals.ignore_ending()
            if result.outcome is Outcome.TIMEOUT:
                message = _closing_message(settings, settings.command_idle_timeout)
                with contextlib.suppress(OSError):
                    write_all(2, f"{message}\n".encode(), 1.0)
        relay.close()
        if result.outcome is not Outcome.EXITED:
            teardown.end_all(relay.reap)
    return status


def _end_session(child: Child, relay: Relay) -> None:
    """No process of the session outlives it (the wrapper is their subreaper)."""
    with contextlib.suppress(OSError):
        os.close(child.fd)  # a pty master's close hangs up the session at once
    teardown.end_all(relay.reap)


def _report_end(result: Result, events: Events) -> int:
    """Log how the session ended; return the wrapper's exit status."""
    idle = round(result.idle)
    if result.outcome is Outcome.TIMEOUT:
        events.emit("timeout", idle=idle)
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
