"""The event loop of a command without a pty: its stdin, stdout and stderr, relayed.

sshd hands such a command three pipes (Debian's OpenSSH is built with USE_PIPES;
a build without it hands a socketpair for stdin and stdout and one for stderr). To
time the command the wrapper stays its parent, with pipes of its own between each
of sshd's fds and the command's, and one `Stream` per direction:

- zero-copy: `splice(2)` moves the pages from one fd to the other without passing
  them through Python. One side is always the wrapper's own pipe, which is all the
  kernel asks; where it still refuses (a file or a tty on the other side, when a
  login is started without sshd) that direction falls back to read/write.
- backpressure: a stream whose destination is full stops reading its source until
  the destination drains, so a client that reads slowly slows the command down and
  nothing piles up in the wrapper.
- pacing: a transfer rests a millisecond between moves while its widened pipes can
  take it, so that it costs the relay a wake-up per few hundred KiB, not per write
  (PACE below; docs/performance.md has the figures).
- end of stream per direction (half-close): the end of the client's input closes the
  command's stdin, the end of the command's stdout ends ours (close, or
  shutdown(SHUT_WR) on a socket), each when it happens; a command that closes its
  stdin has the client's input refused in turn. `ssh host 'cat > f' < file` ends
  when the file is sent.
- activity: the relay never looks at the bytes. It tells the `ActivityGuard`
  (activity.py) that a direction moved some, and the guard keeps the deadline.

The loop has the pty relay's shape (relay.py): one poll, signals through a
`SignalWakeup`, the deadline through one `Alarm`, the poll set recomputed from the
streams' state each turn. Without a pty sshd sends no signal when the client goes
away (GUIDE): the relay sees it as EPIPE, or as POLLERR on our stdout or stderr
(their reader is gone), and ends the session as a disconnect.

The session ends like one without idlewrap: when the command has exited and its
stdout and stderr have ended (a background job that keeps them open keeps the
session, and its deadline, going).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import stat
from typing import TYPE_CHECKING

from idlewrap import deadline as clock
from idlewrap.relay import Outcome, PollSet, Result, SessionLoop
from idlewrap.spawn import reap_children

if TYPE_CHECKING:
    from idlewrap.activity import ActivityGuard
    from idlewrap.deadline import Alarm
    from idlewrap.relay import SignalSource
    from idlewrap.spawn import PipedChild

CHUNK = 1 << 20  # most one splice or read moves (a pipe holds 64 KiB unless widened)
# Pacing a transfer. A poll round costs more than the splice it leads to, and a
# pipe written 4 KiB at a time (head, cat), or read 32 KiB at a time (sshd), would
# wake the relay for each of those. Once a stream has carried BULK_AFTER bytes it is
# a transfer: its two pipes are widened to PIPE_SIZE, and after a move it rests for
# PACE while they fill (or drain), so that one splice moves what took dozens. It
# rests only while PACE's worth of its rate fits in half the pipes (a `Pacer` keeps
# the rate), else the rest would block the writer or starve the reader: a faster
# transfer runs unpaced, and so does one whose pipes could not be widened (the user
# is over the kernel's pipe-user-pages-soft). Keys, prompts and short outputs never rest.
BULK_AFTER = 1 << 20
PIPE_SIZE = 1 << 20  # Linux's default limit for an unprivileged F_SETPIPE_SZ
PACE = 0.001
RATE_WINDOW = 8 * PACE  # a Pacer's memory: the rate of about the last few ms

_POLL_IN = select.POLLIN | select.POLLHUP | select.POLLERR
_GONE = select.POLLERR | select.POLLHUP
_SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
# Errors of a move that say the reader of the destination has gone.
_READER_GONE = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN})
_F_SETPIPE_SZ = 1031
_F_GETPIPE_SZ = 1032


class Stream:
    """One direction: bytes from `src` to `dst`, until `src` ends or `dst` stops taking them."""

    def __init__(self, src: int, dst: int, *, inbound: bool) -> None:
        self.src = src
        self.dst = dst
        self.inbound = inbound  # from the client to the command
        self.open = True
        self.blocked = False  # `dst` is full: wait for it to drain, leave `src` unread
        self.failed: int | None = None  # errno when `dst` refused bytes (else the end was EOF)
        self.resume_at: float | None = None  # resting (pacing) until then
        self.carried = 0  # bytes so far, until the stream counts as a transfer
        self.pacer: Pacer | None = None  # once it is one
        self._spliced = True
        self._held = b""  # read/write fallback: read, not yet written

    def pump(self, src_ready: bool) -> int:
        """Make one move; return how many bytes moved (0 at the end: `open` turns False).

        `src_ready`: poll said `src` has something (or ended). A splice that then
        moves nothing was stopped by a full `dst`. Without that, EAGAIN may also mean
        an empty `src`, and the next poll tells the two apart.
        """
        try:
            moved = self._move()
        except BlockingIOError:
            # read/write knows which side it waits for; splice says EAGAIN for both
            self.blocked = bool(self._held) if not self._spliced else src_ready
            return 0
        if not moved:
            self.open = False
        return moved

    def widen(self) -> int:
        """Give the stream's pipes PIPE_SIZE where the system allows; return what they hold."""
        sizes = []
        for fd in (self.src, self.dst):
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
            with contextlib.suppress(OSError):  # a socket or a file has no pipe size
                sizes.append(fcntl.fcntl(fd, _F_GETPIPE_SZ))
        return min(sizes, default=0)

    def _move(self) -> int:
        if self._spliced:
            try:
                return os.splice(self.src, self.dst, CHUNK, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                raise
            except OSError as error:
                if error.errno in _READER_GONE:
                    self.failed = error.errno
                    return 0
                # EINVAL: the kernel cannot splice this pair; any other error shows
                # up again, on the side it belongs to, in the plain read or write.
                self._spliced = False
        return self._copy()

    def _copy(self) -> int:
        if not self._held:
            try:
                self._held = os.read(self.src, CHUNK)
            except BlockingIOError:
                raise
            except OSError:  # a source that fails has ended
                return 0
            if not self._held:
                return 0
        try:
            written = os.write(self.dst, self._held)
        except BlockingIOError:
            raise
        except OSError as error:
            self.failed = error.errno or errno.EPIPE
            self._held = b""
            return 0
        self._held = self._held[written:]
        self.blocked = bool(self._held)
        return written


class Pacer:
    """Whether a transfer may rest for PACE: only while that much of it fits in half its pipes."""

    def __init__(self, capacity: int, now: float) -> None:
        self.room = capacity // 2
        self.since = now  # the rate is `moved` bytes since then
        self.moved = 0.0

    def rests_after(self, moved: int, now: float) -> bool:
        """`moved` bytes just moved: rest now?"""
        self.moved += moved
        elapsed = now - self.since
        rate = self.moved / max(elapsed, PACE)
        if rate * PACE < self.room:
            self.since, self.moved = now, 0.0
            return True
        if elapsed > RATE_WINDOW:  # keep the rate, forget how it was reached
            self.since, self.moved = now - PACE, rate * PACE
        return False


def end_of(fd: int, how: int) -> None:
    """Pass an end of stream on through our end `fd` of one of sshd's streams.

    A pipe: its reference goes (replaced by /dev/null, so the fd number stays taken
    and nothing reuses it); a socket, which may carry the other direction too:
    `shutdown(how)`.
    """
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(os.fstat(fd).st_mode):
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(how)
            return
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        os.dup2(null, fd, inheritable=False)
        os.close(null)


class StreamRelay(SessionLoop):
    """Relays a command's three streams until it has exited and they ended, or the deadline."""

    def __init__(self, child: PipedChild, *, guard: ActivityGuard, signals: SignalSource,
                 alarm: Alarm) -> None:
        """Relay between sshd's fds 0, 1 and 2 and the command's pipes in `child`."""
        self.child = child
        self.guard = guard
        self.signals = signals
        self.alarm = alarm
        self.streams = (
            Stream(0, child.stdin, inbound=True),
            Stream(child.stdout, 1, inbound=False),
            Stream(child.stderr, 2, inbound=False),
        )
        for fd in (child.stdin, child.stdout, child.stderr):
            os.set_blocking(fd, False)
        self.child_status: int | None = None
        self.result: Result | None = None
        self._interest: tuple[tuple[bool, bool, bool], ...] = ()
        self._pollset = PollSet()

    def run(self) -> Result:
        """Relay until the session ends; the caller tears down."""
        return self._loop()

    def _turn(self) -> None:
        self.alarm.set(self.guard.wake)
        self._register()
        for fd, mask in self._pollset.wait(self._rest()):
            self._dispatch(fd, mask)
            if self.result is not None:
                return
        self._resume_rested()

    def _rest(self) -> float | None:
        """Milliseconds poll may wait: until the first resting stream's turn, if any rests."""
        resting = [s.resume_at for s in self.streams if s.resume_at is not None]
        if not resting:
            return None
        return max(min(resting) - clock.now(), 0.0) * 1000

    def _resume_rested(self) -> None:
        now = clock.now()
        for stream in self.streams:
            if stream.resume_at is not None and now >= stream.resume_at:
                stream.resume_at = None
                if stream.open and self.result is None:
                    self._pump(stream, src_ready=False)

    def _register(self) -> None:
        """Poll each open stream's source, or its destination while that is full."""
        interest = tuple((s.open, s.blocked, s.resume_at is None) for s in self.streams)
        if interest == self._interest:
            return
        wants = {self.signals.fileno(): select.POLLIN, self.alarm.fileno(): select.POLLIN}
        for stream in self.streams:
            if not stream.open:
                continue
            if stream.resume_at is None and stream.blocked:
                wants[stream.dst] = wants.get(stream.dst, 0) | select.POLLOUT
            elif stream.resume_at is None:
                wants[stream.src] = wants.get(stream.src, 0) | _POLL_IN
            if not stream.inbound:
                # Registered even when not written to: POLLERR there means the client left.
                wants.setdefault(stream.dst, 0)
        self._pollset.update(wants)
        self._interest = interest

    def _dispatch(self, fd: int, mask: int) -> None:
        if fd == self.alarm.fileno():
            self.alarm.clear()
            if self.guard.on_time(clock.now()):
                self._finish(Outcome.TIMEOUT)
            return
        if fd == self.signals.fileno():
            self._on_signals()
            return
        for stream in self.streams:
            if not stream.open or self.result is not None:
                continue
            if fd == stream.dst and mask & _GONE and not stream.inbound:
                self._finish(Outcome.DISCONNECT, reason="EPIPE")
            elif stream.resume_at is not None:
                continue
            elif fd == stream.dst and stream.blocked:
                stream.blocked = False
                self._pump(stream, src_ready=True)  # the bytes that waited are still there
            elif fd == stream.src and not stream.blocked and mask & _POLL_IN:
                self._pump(stream, src_ready=True)

    def _pump(self, stream: Stream, *, src_ready: bool) -> None:
        moved = stream.pump(src_ready)
        if moved:
            now = clock.now()
            self.guard.on_moved(stream.inbound, now)
            self._pace(stream, moved, now)
        if not stream.open:
            self._stream_ended(stream)

    def _pace(self, stream: Stream, moved: int, now: float) -> None:
        """Let a transfer rest after a move, where it can (see PACE)."""
        if stream.pacer is None:
            stream.carried += moved
            if stream.carried < BULK_AFTER:
                return
            stream.pacer = Pacer(stream.widen(), now)
        if stream.pacer.rests_after(moved, now):
            stream.resume_at = now + PACE

    def _stream_ended(self, stream: Stream) -> None:
        if stream.inbound:
            if stream.failed is not None:  # the command closed its stdin: refuse in turn
                end_of(stream.src, socket.SHUT_RD)
            os.close(stream.dst)  # the client's EOF: the command's stdin ends
            self.guard.on_input_closed()
            return
        os.close(stream.src)
        if stream.failed is not None:
            self._finish(Outcome.DISCONNECT, reason=errno.errorcode.get(stream.failed, "EPIPE"))
            return
        end_of(stream.dst, socket.SHUT_WR)
        self._end_if_done()

    def _end_if_done(self) -> None:
        """As sshd: the session is over once the command exited and its output ended."""
        if self.child_status is not None and not any(s.open for s in self.streams[1:]):
            self._finish(Outcome.EXITED)

    def reap(self) -> None:
        """Collect every exited child; the end may come with the command's."""
        status = reap_children(self.child.pid)
        if status is not None and self.child_status is None:
            self.child_status = status
            self._end_if_done()

    def _finish(self, outcome: Outcome, *, signum: int | None = None, reason: str = "") -> None:
        if self.result is not None:
            return
        self.guard.stop()
        idle = self.guard.deadline.idle_for(clock.now())
        self.result = Result(outcome, self.child_status, signum, idle, reason)

    def close(self) -> None:
        """Close our ends of the command's pipes (at the end, before the teardown)."""
        for stream in self.streams:
            if stream.open:
                stream.open = False
                with contextlib.suppress(OSError):
                    os.close(stream.dst if stream.inbound else stream.src)

