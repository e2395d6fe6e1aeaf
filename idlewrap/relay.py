"""The event loop: relay bytes between the user's terminal and the program, under the deadline.

One thread, one `poll`. Signals arrive through `signal.set_wakeup_fd` on a pipe
polled with the rest, so the loop sleeps until there is I/O, a signal or a
deadline: an idle session costs no CPU. Each direction holds at most one chunk;
while it is unwritten the source is not read, so a flood of output blocks the
program (backpressure) instead of growing memory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
from enum import Enum
from typing import TYPE_CHECKING, NamedTuple, Protocol

from idlewrap import deadline as clock
from idlewrap.input_classifier import InputClassifier
from idlewrap.modes import ModeTracker
from idlewrap.spawn import Child
from idlewrap.terminal import get_size, set_size, write_all

if TYPE_CHECKING:
    from idlewrap.deadline import IdleDeadline
    from idlewrap.overlay import Overlay

CHUNK = 65536
OUTPUT_BURST = 16  # chunks read in a row before input gets its turn
ESC_DELAY = 0.05  # like a terminal's escape delay: a lone ESC not followed by more is the Esc key
DRAIN_QUIET = 0.1  # after the program exits, stop reading once its pty has been quiet this long
DEADMAN_GRACE = 5.0  # the kernel kills a wrapper that missed its deadline by this much
DRAIN_HELD = 0.2  # at a timeout, how long output held under the warning may take to show
DRAIN_HELD_BYTES = 1 << 20
REPAINT_WAIT = 0.5  # longest wait for a full-screen program to react to the first resize

_ENDING_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
)
_IGNORED_SIGNALS = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
_POLL_IN = select.POLLIN | select.POLLHUP | select.POLLERR
_POLL_OUT = select.POLLOUT | select.POLLERR


class Outcome(Enum):
    """Why the relay stopped."""

    EXITED = "exited"  # the program exited
    TIMEOUT = "timeout"  # the idle deadline passed
    DISCONNECT = "disconnect"  # the user's terminal went away
    KILLED = "killed"  # the wrapper was told to stop by a signal


class Result(NamedTuple):
    """How a session ended."""

    outcome: Outcome
    wait_status: int | None  # the program's, when it exited
    signal: int | None  # the signal that ended the wrapper (KILLED) or its session (DISCONNECT)
    idle: float  # seconds without user input at the end
    reason: str = ""


class Events(Protocol):
    """Where the relay reports what the user did (events.EventLog fits)."""

    def emit(self, event: str, **fields: object) -> None: ...


class DeadMan(Protocol):
    """hardening.DeadMansSwitch, or nothing for an exempt session."""

    def arm(self, seconds: float) -> None: ...
    def disarm(self) -> None: ...


class WarningStyle(NamedTuple):
    """What the warning shows (from the policy)."""

    text: str
    bell: bool
    term: str | None


class Relay:
    """Relays one session until the program exits, the deadline passes or the user leaves."""

    def __init__(
        self,
        child: Child,
        *,
        user_in: int,
        user_out: int,
        deadline: IdleDeadline | None,
        deadman: DeadMan | None,
        events: Events,
        warning: WarningStyle,
    ) -> None:
        self.child = child
        self.user_in = user_in
        self.user_out = user_out
        self.deadline = deadline
        self.deadman = deadman
        self.events = events
        self.style = warning
        self.classifier = InputClassifier()
        self.modes = ModeTracker()
        self.to_child = b""
        self.to_user = b""
        self.user_in_open = True
        self.child_in_open = True
        self.child_out_open = child.pty
        self.child_status: int | None = None
        self.exited_at: float | None = None
        self.last_output = 0.0
        self.esc_expires: float | None = None
        self.overlay: Overlay | None = None
        self.warned_for: float | None = None  # the last_input the current warning is about
        self.next_tick: float | None = None
        self.repaint_at: float | None = None
        self.deadman_check = 0.0
        self.result: Result | None = None
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        os.set_blocking(child.fd, False)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> Result:
        """Relay until the session ends; the caller then tears the session down."""
        self._install_signals()
        self._arm_deadman(clock.now())
        poller = select.poll()
        registered: dict[int, int] = {}
        while self.result is None:
            now = clock.now()
            wake = self._next_wake(now)
            self._register(poller, registered)
            ms = None if wake is None else max(0, int((wake - now) * 1000) + 1)
            for fd, mask in poller.poll(ms):
                self._dispatch(fd, mask)
                if self.result is not None:
                    break
            # Timers run only when one is due, or while an exited program is drained:
            # a relayed chunk pays for no bookkeeping.
            due = wake is not None and clock.now() >= wake
            if self.result is None and (due or self.exited_at is not None):
                self._on_time(clock.now())
        self.close()
        assert self.result is not None
        return self.result

    def close(self) -> None:
        """Put signals back and close the loop's own fds (the program's fd stays open)."""
        signal.set_wakeup_fd(-1)
        for fd in (self.wake_r, self.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.deadman is not None:
            self.deadman.disarm()

    def _register(self, poller: select.poll, registered: dict[int, int]) -> None:
        """Poll for what each fd is wanted for now; `registered` is what poll has."""
        wants: dict[int, int] = {self.wake_r: select.POLLIN}
        if self.user_in_open and not self.to_child:
            wants[self.user_in] = _POLL_IN
        if self.to_child and self.child_in_open:
            wants[self.child.fd] = _POLL_OUT
        if self.child_out_open and not self.to_user and self.overlay is None:
            wants[self.child.fd] = wants.get(self.child.fd, 0) | _POLL_IN
        if self.to_user:
            wants[self.user_out] = wants.get(self.user_out, 0) | _POLL_OUT
        if wants == registered:
            return
        for fd in registered.keys() - wants.keys():
            poller.unregister(fd)
        for fd, mask in wants.items():
            if registered.get(fd) != mask:
                poller.register(fd, mask)
        registered.clear()
        registered.update(wants)

    def _dispatch(self, fd: int, mask: int) -> None:
        if fd == self.wake_r:
            self._on_signals()
            return
        if fd == self.user_out and mask & _POLL_OUT and self.to_user:
            self.to_user = self._write(self.user_out, self.to_user, user_side=True)
        if fd == self.child.fd and self.child_in_open:
            if mask & _POLL_OUT and self.to_child:
                self.to_child = self._write(self.child.fd, self.to_child, user_side=False)
            if mask & _POLL_IN and self.child_out_open:
                self._on_child_output()
        if fd == self.user_in and mask & _POLL_IN and self.user_in_open:
            self._on_user_input()

    def _next_wake(self, now: float) -> float | None:
        times = [self.esc_expires, self.next_tick, self.repaint_at]
        if self.deadline is not None:
            times.append(self.deadline.expires_at if self._warned() else self.deadline.warn_at)
            times.append(self.deadman_check)
        if self.exited_at is not None:
            times.append(self._quiet_since() + DRAIN_QUIET)
        return min((t for t in times if t is not None), default=None)

    # -- user input -------------------------------------------------------------------------

    def _on_user_input(self) -> None:
        try:
            data = os.read(self.user_in, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._user_input_closed()
            return
        now = clock.now()
        acted = self.classifier.feed(data)
        self.esc_expires = now + ESC_DELAY if self.classifier.pending else None
        if acted:
            dismissed = self.overlay is not None
            self._user_acted(now)
            if dismissed:
                return  # the key that closed the warning is not the program's
        if self.child_in_open:
            self.to_child = self._write(self.child.fd, data, user_side=False)

    def _user_acted(self, now: float) -> None:
        idle = self.deadline.idle_for(now) if self.deadline else 0.0
        if self.deadline is not None:
            self.deadline.touch(now)
        if self.overlay is not None:
            self._close_warning()
            self.events.emit("activity_resumed", idle=round(idle))

    def _user_input_closed(self) -> None:
        self.user_in_open = False
        if self.child.pty:
            self._finish(Outcome.DISCONNECT, reason="eof")
        else:
            self._close_child_input()  # ssh -T: end of input is the shell's to see

    def _close_child_input(self) -> None:
        self.to_child = b""
        if self.child_in_open:
            self.child_in_open = False
            with contextlib.suppress(OSError):
                os.close(self.child.fd)

    # -- program output ---------------------------------------------------------------------

    def _on_child_output(self) -> None:
        # A pty hands out about 4 KB a read: reading on while the terminal keeps up costs
        # one poll per burst instead of one per chunk, and input is still read between bursts.
        for _ in range(OUTPUT_BURST):
            try:
                data = os.read(self.child.fd, CHUNK)
            except BlockingIOError:
                return
            except OSError:  # EIO: every slave fd is closed
                data = b""
            if not data:
                self.child_out_open = False
                return
            if self.exited_at is not None or self.repaint_at is not None:
                self.last_output = clock.now()
                if self.repaint_at is not None:
                    # it has seen the smaller size (less repaints only on a real change,
                    # so it must not miss it): the full size can come back now
                    self.repaint_at = self.last_output
            self.modes.feed(data)
            self.to_user = self._write(self.user_out, data, user_side=True)
            if self.to_user or self.result is not None:
                return

    # -- writing ----------------------------------------------------------------------------

    def _write(self, fd: int, data: bytes, *, user_side: bool) -> bytes:
        """Write what the fd takes now; return the rest (polled for POLLOUT)."""
        try:
            written = os.write(fd, data)
        except BlockingIOError:
            return data
        except OSError as e:
            if user_side:
                self._user_gone(e)
            elif not self.child.pty:
                self._close_child_input()
            return b""
        return data[written:]

    def _flush_to_user(self, timeout: float) -> None:
        """Write out held output before the screen is drawn over or the session ends."""
        try:
            self.to_user = write_all(self.user_out, self.to_user, max(timeout, 0.0))
        except OSError as e:
            self.to_user = b""
            self._user_gone(e)

    def _user_gone(self, error: OSError) -> None:
        """Writing to the user's terminal failed: the client has gone."""
        self._finish(Outcome.DISCONNECT, reason=errno.errorcode.get(error.errno or 0, "error"))

    # -- signals ----------------------------------------------------------------------------

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for signum in (signal.SIGCHLD, signal.SIGWINCH, signal.SIGHUP, signal.SIGCONT,
                       *_ENDING_SIGNALS):
            signal.signal(signum, _wake_only)
        for signum in _IGNORED_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)

    def _on_signals(self) -> None:
        try:
            received = os.read(self.wake_r, 256)
        except BlockingIOError:
            return
        for signum in dict.fromkeys(received):  # once each, in arrival order
            if signum == signal.SIGCHLD:
                self.reap()
            elif signum == signal.SIGWINCH:
                self._on_resize()
            elif signum == signal.SIGHUP:
                self._finish(Outcome.DISCONNECT, signum=signum, reason="hangup")
            elif signum in _ENDING_SIGNALS:
                self._finish(Outcome.KILLED, signum=signum, reason="signal")
            if self.result is not None:
                return

    def reap(self) -> None:
        """Collect every exited child (orphans too: the wrapper is their subreaper)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child.pid and self.child_status is None:
                self.child_status = status
                self.exited_at = clock.now()
                if not self.child.pty:
                    self._finish(Outcome.EXITED)

    def _on_resize(self) -> None:
        if not self.child.pty:
            return
        rows, cols = get_size(self.user_out)
        with contextlib.suppress(OSError):
            set_size(self.child.fd, rows, cols)
        if self.overlay is not None:
            self.overlay.resize()

    # -- time -------------------------------------------------------------------------------

    def _on_time(self, now: float) -> None:
        if self.esc_expires is not None and now >= self.esc_expires:
            self.esc_expires = None
            if self.classifier.expire():
                self._user_acted(now)
        if self.repaint_at is not None and now >= self.repaint_at:
            self.repaint_at = None
            self._on_resize()
        drained = self.exited_at is not None and now >= self._quiet_since() + DRAIN_QUIET
        if drained:
            self._flush_to_user(1.0)
            self._finish(Outcome.EXITED)
            return
        if self.exited_at is not None and not self.child_out_open and not self.to_user:
            self._finish(Outcome.EXITED)
            return
        if self.deadline is None:
            return
        if now >= self.deadline.expires_at:
            self._finish(Outcome.TIMEOUT)
            return
        if now >= self.deadman_check:
            self._arm_deadman(now)
        if not self._warned() and now >= self.deadline.warn_at:
            self.warned_for = self.deadline.last_input
            if self.child.pty:
                self._open_warning(now)
            else:
                self._warn_plain(now)
        elif self.overlay is not None and self.next_tick is not None and now >= self.next_tick:
            remaining = self.deadline.expires_at - now
            self.overlay.update(round(remaining))
            self.next_tick = now + _to_next_second(remaining)

    def _quiet_since(self) -> float:
        """Since when the program has neither run nor written (only after it exited)."""
        assert self.exited_at is not None
        return max(self.exited_at, self.last_output)

    def _warned(self) -> bool:
        return self.deadline is not None and self.warned_for == self.deadline.last_input

    def _arm_deadman(self, now: float) -> None:
        if self.deadman is None or self.deadline is None:
            return
        self.deadman.arm(self.deadline.expires_at - now + DEADMAN_GRACE)
        self.deadman_check = self.deadline.warn_at

    # -- the warning ------------------------------------------------------------------------

    def _open_warning(self, now: float) -> None:
        assert self.deadline is not None
        from idlewrap.overlay import open_overlay  # urwid is paid for only when a warning is due

        self._flush_to_user(1.0)
        remaining = self.deadline.expires_at - now
        self.overlay = open_overlay(
            self.user_out,
            self.style.text,
            bell=self.style.bell,
            term=self.style.term,
            on_alt_screen=self.modes.alt_screen,
        )
        self.overlay.show(round(remaining))
        self.next_tick = now + _to_next_second(remaining)
        self._log_warning(now, remaining)

    def _warn_plain(self, now: float) -> None:
        """ssh -T: no screen to draw on; one line on stderr, once per idle stretch."""
        assert self.deadline is not None
        remaining = self.deadline.expires_at - now
        with contextlib.suppress(OSError):
            os.write(2, f"idlewrap: {self.style.text} ({round(remaining)}s left)\n".encode())
        self._log_warning(now, remaining)

    def _log_warning(self, now: float, remaining: float) -> None:
        assert self.deadline is not None
        idle = self.deadline.idle_for(now)
        self.events.emit("warning", remaining=round(remaining), idle=round(idle))

    def _close_warning(self) -> None:
        assert self.overlay is not None
        self.overlay.close()
        self.overlay = None
        self.next_tick = None
        restore = self.modes.restore_sequence()
        if restore:
            self.to_user = self._write(self.user_out, self.to_user + restore, user_side=True)
        if self.modes.alt_screen:
            # a full-screen program lost its screen under the box: a size change makes it repaint
            rows, cols = get_size(self.user_out)
            with contextlib.suppress(OSError):
                set_size(self.child.fd, max(rows - 1, 1), cols)
            self.repaint_at = clock.now() + REPAINT_WAIT

    # -- the end ----------------------------------------------------------------------------

    def _finish(self, outcome: Outcome, *, signum: int | None = None, reason: str = "") -> None:
        if self.result is not None:
            return
        idle = self.deadline.idle_for(clock.now()) if self.deadline else 0.0
        if self.overlay is not None and outcome is not Outcome.DISCONNECT:
            with contextlib.suppress(OSError):
                self.overlay.close()
            self.overlay = None
            self._drain_held()
            if self.result is not None:  # the terminal went away while draining
                return
        self.result = Result(outcome, self.child_status, signum, idle, reason)

    def _drain_held(self) -> None:
        """Output held under the warning is shown before the goodbye, not dropped."""
        end = clock.now() + DRAIN_HELD
        budget = DRAIN_HELD_BYTES
        while self.child_out_open and budget > 0 and self.result is None and clock.now() < end:
            try:
                data = os.read(self.child.fd, min(CHUNK, budget))
            except OSError:  # EAGAIN: nothing more is held; EIO: the program is gone
                return
            if not data:
                return
            budget -= len(data)
            self.modes.feed(data)
            self.to_user += data
            self._flush_to_user(end - clock.now())

    def terminal_reset(self) -> bytes:
        """Bytes that leave the user's terminal in sane modes whatever the program set."""
        return self.modes.reset_sequence()


def _wake_only(signum: int, frame: object) -> None:
    """A Python-level handler must exist for set_wakeup_fd to see the signal; the loop acts."""


def _to_next_second(remaining: float) -> float:
    """Time until the displayed whole-second countdown changes."""
    frac = remaining - int(remaining)
    return frac if frac > 0.001 else 1.0
