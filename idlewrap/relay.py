"""The event loop: relay bytes between the user's terminal and the program.

One thread, one `poll`. Signals arrive through a wakeup pipe (`signals.SignalWakeup`)
and timers through one alarm fd (`deadline.Alarm`), both polled with the rest, so the
loop sleeps until there is I/O, a signal or a due time: an idle session costs no CPU.
The poll set is recomputed from the relay's state each turn (as OpenSSH's
channel_prepare_poll does), and each direction holds at most one chunk: while it is
unwritten its source is not read, so a flood of output blocks the program
(backpressure) instead of growing memory.

What input and time mean for idleness is not decided here: the `IdleGuard` (idle.py)
says which input bytes reach the program, when it must be woken, and when the
deadline has passed. The relay also implements the `Screen` the guard draws on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
from collections.abc import Callable
from enum import Enum

from idlewrap import deadline as clock
from idlewrap.modes import ModeTracker
from idlewrap.output_filter import OutputFilter
from idlewrap.records import NamedTuple
from idlewrap.signals import ENDING, LOCK
from idlewrap.spawn import reap_children
from idlewrap.terminal import get_size, set_size, write_all

TYPE_CHECKING = False  # not typing's: a session never imports typing (records.py)
if TYPE_CHECKING:
    from typing import Protocol

    from idlewrap.deadline import Alarm
    from idlewrap.idle import IdleGuard
    from idlewrap.spawn import Child

    class SignalSource(Protocol):
        """signals.SignalWakeup."""

        def fileno(self) -> int: ...
        def received(self) -> list[int]: ...


CHUNK = 65536
OUTPUT_BURST = 16  # chunks read in a row before input gets its turn
# A pty hands out at most about 4 KiB a read. After a shorter read it is drained for now,
# and another read would fail with EAGAIN: a Python exception costs thousands of
# instructions (measured with bench/relay-cost), a poll does not.
FULL_READ = 3072
DRAIN_QUIET = 0.1  # after the program exits, stop reading once its pty has been quiet this long
DRAIN_HELD = 0.2  # at a timeout, how long output held under the warning may take to show
DRAIN_HELD_BYTES = 1 << 20

_ESC, _ENQ = 0x1B, 0x05  # as ints: see output_filter._ESC
_POLL_IN = select.POLLIN | select.POLLHUP | select.POLLERR
_POLL_OUT = select.POLLOUT | select.POLLERR


class Outcome(Enum):
    """Why the relay stopped."""

    EXITED = "exited"  # the program exited
    TIMEOUT = "timeout"  # the idle deadline passed
    DISCONNECT = "disconnect"  # the user's terminal went away
    KILLED = "killed"  # the wrapper was told to stop by a signal
    ERROR = "error"  # the wrapper failed; the session is ended rather than left unguarded


class Result(NamedTuple):
    """How a session ended."""

    outcome: Outcome
    wait_status: int | None  # the program's, when it exited
    signal: int | None  # the signal that ended the wrapper (KILLED) or its session (DISCONNECT)
    idle: float  # seconds without user input at the end
    reason: str = ""


class PollSet:
    """The fds a relay waits on and what for, handed to poll(2) again only on a change.

    `wait(timeout_ms=None)` returns the ready fds and their events; it sleeps until one
    is, or `timeout_ms` has passed (None: no end).
    """

    def __init__(self) -> None:
        self._poll = select.poll()
        self._fds: tuple[int, ...] = ()
        # poll(2) itself, not a method around it: the relay calls it once a turn.
        self.wait: Callable[..., list[tuple[int, int]]] = self._poll.poll

    def update(self, wants: dict[int, int]) -> None:
        """Wait on exactly `wants` (fd to POLLIN, POLLOUT, ...) from now on."""
        for fd in set(self._fds) - wants.keys():
            self._poll.unregister(fd)
        for fd, mask in wants.items():
            self._poll.register(fd, mask)
        self._fds = tuple(wants)


class SessionLoop:
    """What the pty relay and the stream relay (streams.py) share: poll until there is a
    result, the signals that end a session, and every way out, a bug included, ending it.

    A subclass makes one turn of its loop (`_turn`), answers its own signals
    (`_on_signal`), reaps (`reap`) and ends (`_finish`).
    """

    result: Result | None
    signals: SignalSource

    def _loop(self) -> Result:
        self.reap()  # a program that died before the signal handlers were in place
        try:
            while self.result is None:
                self._turn()
        except Exception as error:  # a bug must end the session, never leave it unguarded
            self.result = None
            self._finish(Outcome.ERROR, reason=f"{type(error).__name__}: {error}")
        assert self.result is not None
        return self.result

    def _on_signals(self) -> None:
        for signum in self.signals.received():
            if signum == signal.SIGCHLD:
                self.reap()
            elif signum == signal.SIGHUP:
                self._finish(Outcome.DISCONNECT, signum=signum, reason="hangup")
            elif signum in ENDING:
                self._finish(Outcome.KILLED, signum=signum, reason="signal")
            else:
                self._on_signal(signum)
            if self.result is not None:
                return

    def _turn(self) -> None:
        raise NotImplementedError

    def _on_signal(self, signum: int) -> None:
        """A watched signal that neither reaps nor ends the session (none by default)."""

    def reap(self) -> None:
        raise NotImplementedError

    def _finish(self, outcome: Outcome, *, signum: int | None = None, reason: str = "") -> None:
        raise NotImplementedError


class Relay(SessionLoop):
    """Relays one session until the program exits, the deadline passes or the user leaves."""

    def __init__(
        self, child: Child, *, user_in: int, user_out: int, signals: SignalSource, alarm: Alarm
    ) -> None:
        self.child = child
        self.user_in = user_in
        self.user_out = user_out
        self.signals = signals
        self.alarm = alarm
        self.modes = ModeTracker()
        self.output_filter = OutputFilter()  # no ENQ, no S8C1T: their replies look typed
        self.guard: IdleGuard | None = None
        self.to_child = b""
        self.to_user = b""
        self.user_in_open = True
        self.child_in_open = True
        self.child_out_open = child.pty
        self.child_status: int | None = None
        self.exited_at: float | None = None
        self.last_output = 0.0
        # Neither the filter nor the mode tracker has a sequence open (both `quiet`):
        # a chunk without ESC and ENQ passes them unchanged (see _on_child_output).
        self._plain = True
        self.result: Result | None = None
        self._interest: tuple[object, ...] = ()  # as last registered (`_turn`)
        self._pollset = PollSet()
        os.set_blocking(child.fd, False)

    # -- the loop ---------------------------------------------------------------------------

    def run(self, guard: IdleGuard | None) -> Result:
        """Relay until the session ends (`guard` None: no deadline); the caller tears down."""
        self.guard = guard
        return self._loop()

    def _turn(self) -> None:
        # One function, not one per step: a key and its echo after a pause run on cold
        # caches, where every call and every object touched costs (bench/key_cost.py).
        # The turn prepares the poll; `_relay_steady` then carries plain keys and output
        # for as long as nothing else happens, and what it leaves is dispatched here.
        guard = self.guard
        wake = None if guard is None else guard.wake
        if self.exited_at is not None:
            wake = self._drained_at(wake)
        if wake != self.alarm.at:
            self.alarm.set(wake)
        holds = guard is not None and guard.holds_output
        interest = (
            self.user_in_open and not self.to_child,
            bool(self.to_child) and self.child_in_open,
            self.child_out_open and not self.to_user and not holds,
            bool(self.to_user),
            guard.fds if guard is not None and holds else (),  # only with box or lock up
        )
        if interest != self._interest:
            self._register(interest)
        ready = self._pollset.wait()
        # at_rest implies that neither the box nor the lock holds output
        if (not self.to_child and not self.to_user and self._plain
                and self.child_in_open and self.exited_at is None
                and (guard is None or (guard.at_rest and not guard.awaits_output))):
            ready = self._relay_steady(ready)
        for fd, mask in ready:
            if fd == self.child.fd:
                if mask & _POLL_OUT and self.to_child and self.child_in_open:
                    self.to_child = self._write(fd, self.to_child, user_side=False)
                if mask & _POLL_IN and self.child_out_open:
                    self._on_child_output()
            elif fd == self.user_out and mask & _POLL_OUT:
                if self.to_user:
                    self.to_user = self._write(fd, self.to_user, user_side=True)
                    if not self.to_user and self.exited_at is not None:
                        self._end_if_drained()
            elif fd == self.user_in:
                self._on_user_input()
            elif fd == self.alarm.fileno():
                self.alarm.clear()
                self._on_time(clock.now())
            elif fd == self.signals.fileno():
                self._on_signals()
            elif self.guard is not None:
                self.guard.on_fd(fd, clock.now())  # the guard's own (a password check's verdict)
            if self.result is not None:
                return

    def _relay_steady(self, ready: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Relay what changes nothing but the deadline, until something else is ready.

        Called when nothing is buffered, the guard is at rest (a key without ESC only
        moves the deadline: idle.py) and neither the filter nor the mode tracker is inside
        a sequence (output without ESC or ENQ passes them unchanged). That is most of a
        session: a key and its echo. One fd readable at a time is read and written here,
        wholly, and the poll set and the alarm stay as the turn left them. Anything else
        (another fd or event, a read error, bytes the guard or the filter must see, a
        full read, a short write) goes the general way: returns the ready fds left to
        dispatch, or [] once bytes read here were handed on, for a new turn.
        """
        wait, read, write = self._pollset.wait, os.read, os.write
        user_in, child_fd, user_out = self.user_in, self.child.fd, self.user_out
        touch = None if self.guard is None else self.guard.deadline.touch
        while len(ready) == 1 and ready[0][1] == select.POLLIN:
            fd = ready[0][0]
            if fd != user_in and fd != child_fd:
                return ready
            try:
                data = read(fd, CHUNK)
            except OSError:  # EAGAIN, EIO: the general way reads again and knows what to do
                return ready
            if fd == user_in:
                if not data or _ESC in data:
                    self._took_user_input(data)
                    return []
                to = child_fd
            elif not data or _ESC in data or _ENQ in data or len(data) >= FULL_READ:
                self._on_child_output(data)
                return []
            else:
                to = user_out
            try:
                written = write(to, data)
            except OSError:
                written = 0  # _write_rest writes again and knows what to do
            if to == child_fd and touch is not None:  # after the write: the echo need not wait
                touch(clock.now())
            if written != len(data):
                self._write_rest(to, data[written:])
                return []
            ready = wait()
        return ready

    def _write_rest(self, fd: int, data: bytes) -> None:
        """What the program or the user did not take now: written later (or why not)."""
        if fd == self.user_out:
            self.to_user = self._write(fd, data, user_side=True)
        else:
            self.to_child = self._write(fd, data, user_side=False)

    def _drained_at(self, wake: float | None) -> float:
        """The program exited: wake when its pty has been quiet long enough, or at `wake`."""
        assert self.exited_at is not None
        drained = max(self.exited_at, self.last_output) + DRAIN_QUIET
        return drained if wake is None else min(wake, drained)

    def _register(self, interest: tuple[bool, bool, bool, bool, tuple[int, ...]]) -> None:
        """Poll each fd for what `interest` says it is wanted for now (see `_turn`)."""
        read_user, write_child, read_child, write_user, guard_fds = interest
        wants = {self.signals.fileno(): select.POLLIN, self.alarm.fileno(): select.POLLIN}
        wants.update(dict.fromkeys(guard_fds, _POLL_IN))
        if read_user:
            wants[self.user_in] = _POLL_IN
        if write_child or read_child:
            wants[self.child.fd] = (_POLL_OUT if write_child else 0) | (
                _POLL_IN if read_child else 0)
        if write_user:
            wants[self.user_out] = wants.get(self.user_out, 0) | _POLL_OUT
        self._pollset.update(wants)
        self._interest = interest

    # -- user input -------------------------------------------------------------------------

    def _on_user_input(self) -> None:
        try:
            data = os.read(self.user_in, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._took_user_input(data)

    def _took_user_input(self, data: bytes) -> None:
        if not data:
            self._user_input_closed()
            return
        if self.guard is not None:
            data = self.guard.on_input(data, clock.now())
        if data and self.child_in_open:
            self.to_child = self._write(self.child.fd, data, user_side=False)

    def _user_input_closed(self) -> None:
        self.user_in_open = False
        if self.child.pty:
            self._finish(Outcome.DISCONNECT, reason="eof")
        else:
            self._close_child_input()  # ssh -T: end of input is the shell's to see
            self._stop_deadline()

    def _stop_deadline(self) -> None:
        """No pty and no more input: nobody can type, so nothing is idle (`ssh host < job`)."""
        if self.guard is not None:
            self.guard.stand_down()
            self.guard = None

    def _close_child_input(self) -> None:
        self.to_child = b""
        if self.child_in_open:
            self.child_in_open = False
            with contextlib.suppress(OSError):
                os.close(self.child.fd)

    # -- program output ---------------------------------------------------------------------

    def _on_child_output(self, first: bytes | None = None) -> None:
        """Read and relay a burst of the program's output (`first`: its first chunk, read)."""
        # Reading on while the pty has more and the terminal keeps up costs one poll per
        # burst instead of one per chunk, and input is still read between bursts.
        # The per-chunk path is kept to a read, a test for ESC and ENQ, and a write: the
        # filter and the mode tracker leave a chunk without either alone while no
        # sequence of theirs is open (`_plain`), so only other chunks are handed to them.
        fd, out = self.child.fd, self.user_out
        plain = self._plain
        guard = self.guard
        watch = self.exited_at is not None or (guard is not None and guard.awaits_output)
        data = first
        for _ in range(OUTPUT_BURST):
            if data is None:
                try:
                    data = os.read(fd, CHUNK)
                except BlockingIOError:
                    return
                except OSError:  # EIO: every slave fd is closed
                    data = b""
            if not data:
                self.child_out_open = False
                if self.exited_at is not None:
                    self._end_if_drained()
                return
            if watch:
                self._noticed_output()
            if not plain or _ESC in data or _ENQ in data:
                data = self._filter(data)
                plain = self._plain
            try:
                written = os.write(out, data)
            except BlockingIOError:
                self.to_user = data
                return
            except OSError as e:
                self._user_gone(e)
                return
            if written < len(data):
                self.to_user = data[written:]
                return
            if written < FULL_READ:
                return
            data = None

    def _filter(self, data: bytes) -> bytes:
        """Output on its way to the user: filtered, and its modes noted."""
        data = self.output_filter.feed(data)
        self.modes.feed(data)
        self._plain = self.output_filter.quiet and self.modes.quiet
        return data

    def _noticed_output(self) -> None:
        """Output that matters beyond relaying: after exit (drain) or for a repaint."""
        now = clock.now()
        if self.exited_at is not None:
            self.last_output = now
        if self.guard is not None and self.guard.awaits_output:
            self.guard.on_output(now)

    def _end_if_drained(self) -> None:
        """The program exited: end once its output is read and written out."""
        if not self.child_out_open and not self.to_user:
            self._finish(Outcome.EXITED)

    # -- writing (and the Screen the guard draws on) ----------------------------------------

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
        return b"" if written == len(data) else data[written:]

    @property
    def user_fd(self) -> int:
        """The user's terminal, for the warning to draw on."""
        return self.user_out

    def flush_to_user(self, timeout: float) -> None:
        """Write out held output before the screen is drawn over or the session ends."""
        try:
            self.to_user = write_all(self.user_out, self.to_user, max(timeout, 0.0))
        except OSError as e:
            self.to_user = b""
            self._user_gone(e)

    def send_to_user(self, data: bytes) -> None:
        """Queue `data` for the user's terminal after what is already waiting."""
        self.to_user = self._write(self.user_out, self.to_user + data, user_side=True)

    def resize_program(self, *, shrink: bool) -> None:
        """Give the program the user's window size, or one row less (to make it repaint)."""
        rows, cols = get_size(self.user_out)
        with contextlib.suppress(OSError):
            set_size(self.child.fd, max(rows - 1, 1) if shrink else rows, cols)

    def _user_gone(self, error: OSError) -> None:
        """Writing to the user's terminal failed: the client has gone."""
        self._finish(Outcome.DISCONNECT, reason=errno.errorcode.get(error.errno or 0, "error"))

    # -- signals and time -------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGWINCH:
            self._on_resize()
        elif signum == LOCK:
            self._on_lock_request()

    def reap(self) -> None:
        """Collect every exited child; the end may come with the program's."""
        status = reap_children(self.child.pid)
        if status is not None and self.child_status is None:
            self.child_status = status
            self.exited_at = clock.now()
            if not self.child.pty:
                self._finish(Outcome.EXITED)
            else:
                self._end_if_drained()

    def _on_lock_request(self) -> None:
        """`idlewrap lock`: the guard's to answer; an exempt session has none to lock it."""
        if self.guard is not None:
            self.guard.lock_now(clock.now())
        elif self.child.pty:
            self.send_to_user(b"\r\nidlewrap: this session cannot be locked: it is exempt "
                              b"from idle limits\r\n")

    def _on_resize(self) -> None:
        if not self.child.pty:
            return
        self.resize_program(shrink=False)
        if self.guard is not None:
            self.guard.on_resize()

    def _on_time(self, now: float) -> None:
        exited = self.exited_at
        if exited is not None and now >= max(exited, self.last_output) + DRAIN_QUIET:
            # Quiet since the program exited (a background job may hold the pty open).
            self.flush_to_user(1.0)
            self._finish(Outcome.EXITED)
            return
        if self.guard is not None and self.guard.on_time(now):
            self._finish(Outcome.TIMEOUT, reason=self.guard.end_reason)

    # -- the end ----------------------------------------------------------------------------

    def _finish(self, outcome: Outcome, *, signum: int | None = None, reason: str = "") -> None:
        if self.result is not None:
            return
        idle = 0.0
        guard = self.guard
        if guard is not None:
            idle = guard.deadline.idle_for(clock.now())
            with contextlib.suppress(Exception):  # an error here must not skip the end
                if guard.stop(draw=outcome is not Outcome.DISCONNECT):
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
            self.to_user += self._filter(data)
            self.flush_to_user(end - clock.now())

    def terminal_reset(self) -> bytes:
        """Bytes that hand the user's terminal back in the modes the program found it."""
        return self.modes.reset_sequence()
