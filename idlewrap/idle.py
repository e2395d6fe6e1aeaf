"""The idle machine: what the user's input and the passing time mean for a session.

`IdleGuard` owns everything about idleness: the deadline, the input classifier (which
bytes are a person), the warning with its countdown, the lock, the repaint after
either, and the dead man's switch. The relay only moves bytes; it asks the guard:

- `wake`: when the guard must be called next (None: never, until something happens);
- `on_time(now)`: a wake time came; True means the session must end (`end_reason` why);
- `on_input(data, now)`: bytes from the user; returns what of them reaches the program;
- `on_output(now)`: program output, reported only while `awaits_output` is set;
- `fds` / `on_fd(fd, now)`: extra fds to poll for reading (a running password check);
- `lock_now(now)`: the user asked for the lock (`idlewrap lock`, through a signal).

States: ACTIVE, then WARNED from `warn_at` (a key goes back to ACTIVE), then at
`expires_at` the end, or with `action = "lock"` LOCKED (lock.py, imported then): the
lock screen, every key for the password prompt and none for the program, until the
right password (back to ACTIVE, a whole idle_timeout ahead), `unlock_attempts` wrong
ones or `terminate_after` (the end). While the box or the lock is up (`holds_output`)
the relay leaves the program's output unread, so it is never drawn over and nothing is
lost.

The relay calls `on_time` only when `wake` comes, and the guard re-arms lazily: a key
moves the deadline but not `wake`, so while the user types the guard wakes once per
`idle_timeout - warn_before`, finds the warning not due, and sets `wake` to the new
time (re-arming the dead man's switch then). Keys cost no timer call, and while
nothing is up, held or pending (`at_rest`) a key without ESC only moves the deadline:
the relay then calls `deadline.touch` instead of `on_input` (its steady path, the one
most keys take; test_idle_guard.py holds the two to the same answers).
"""

from __future__ import annotations

import contextlib
import os

from idlewrap.input_classifier import PASTE_END, PASTE_START, InputClassifier
from idlewrap.records import NamedTuple

TYPE_CHECKING = False  # not typing's: a session never imports typing (records.py)
if TYPE_CHECKING:
    from typing import Protocol

    from idlewrap.deadline import IdleDeadline
    from idlewrap.lock import Lock
    from idlewrap.modes import ModeTracker
    from idlewrap.overlay import Overlay

    class Events(Protocol):
        """Where the guard reports what the user did (events.EventLog fits)."""

        def emit(self, event: str, **fields: object) -> None: ...

    class DeadMan(Protocol):
        """hardening.DeadMansSwitch (watchdog.link.ReportingDeadMan with a watchdog)."""

        def arm(self, seconds: float) -> None: ...
        def hold(self) -> None: ...  # no deadline for now: a lock with no end
        def disarm(self) -> None: ...  # the session is ending

    class Screen(Protocol):
        """The user's terminal and the program's pty, as the warning uses them (the relay)."""

        @property
        def user_fd(self) -> int: ...
        @property
        def modes(self) -> ModeTracker: ...
        def flush_to_user(self, timeout: float) -> None: ...
        def send_to_user(self, data: bytes) -> None: ...
        def resize_program(self, *, shrink: bool) -> None: ...

    class PasswordCheck(Protocol):
        """How a typed password is checked: unlock.PamCheck (tests inject their own)."""

        def unavailable(self) -> str | None:
            """Why no password can be checked here (a `config_error` reason), or None."""

        def verify(self, user: str, password: bytes, tty: str | None, rhost: str | None) -> bool:
            """True if `password` opens the lock for `user` (runs in a child: may block)."""


ESC_DELAY = 0.05  # like a terminal's escape delay: a lone ESC not followed by more is the Esc key
DEADMAN_GRACE = 5.0  # the kernel kills a wrapper that missed its deadline by this much
REPAINT_WAIT = 0.5  # longest wait for a full-screen program to react to the first resize


class WarningStyle(NamedTuple):
    """What the warning shows (from the policy)."""

    text: str
    bell: bool
    term: str | None


class LockPlan(NamedTuple):
    """How this session locks: whose password opens it, and the policy's lock settings."""

    user: str  # the login's own account, from the wrapper's uid: no other password unlocks
    tty: str | None  # PAM_TTY: the session's terminal
    rhost: str | None  # PAM_RHOST: the client's address
    at_deadline: bool  # action = "lock": the deadline locks instead of ending the session
    attempts: int  # unlock_attempts
    terminate_after: int | None  # a locked session ends this long after the last input
    check: PasswordCheck | None = None  # None: PAM, loaded when a lock is due


class IdleGuard:
    """Holds one session to its idle deadline (see the module docstring)."""

    def __init__(
        self,
        deadline: IdleDeadline,
        *,
        deadman: DeadMan,
        events: Events,
        style: WarningStyle,
        screen: Screen | None,
        now: float,
        lock: LockPlan | None = None,
    ) -> None:
        """`screen` None: no pty (ssh -T), the warning is one line on stderr.

        `lock` None: the session cannot be locked (no pty, or nobody to check a
        password for); an `action = "lock"` then ends it at the deadline.
        """
        self.deadline = deadline
        self._deadman = deadman
        self._events = events
        self._style = style
        self._screen = screen
        self._lock_plan = lock if screen is not None else None
        self._lock: Lock | None = None
        self._locked_at = 0.0
        self._terminate_at: float | None = None  # a locked session ends then
        self.end_reason = ""  # why on_time said True: "" (idle), "locked", "unlock_attempts"
        self._classifier = InputClassifier()
        self._warned = False
        self._overlay: Overlay | None = None
        self._overlay_broken = False  # the terminal took no output while the box was drawn
        self._paste_tail: bytes | None = None  # swallowing a dismissing paste: its last bytes
        self._esc_at: float | None = None
        self._tick_at: float | None = None
        self._repaint_at: float | None = None
        self.awaits_output = False
        self.wake: float | None = None
        # Kept by `_settle` after each call that may change them; plain attributes, not
        # properties: the relay reads them every turn and at every key.
        self.holds_output = False  # the warning box or the lock is up: output must wait
        self.at_rest = True  # nothing up, held or pending: a key only moves the deadline
        self._arm(now)
        self._update_wake()
        self._settle()

    def _settle(self) -> None:
        self.holds_output = self._overlay is not None or self._lock is not None
        self.at_rest = not (self.holds_output or self._warned or self._paste_tail is not None
                            or self._esc_at is not None or self._classifier.pending)

    @property
    def fds(self) -> tuple[int, ...]:
        """Fds the relay polls for reading on the guard's behalf (`on_fd`)."""
        return () if self._lock is None else self._lock.fds

    # -- input --------------------------------------------------------------------------

    def on_input(self, data: bytes, now: float) -> bytes:
        """Bytes read from the user's terminal; returns those the program gets.

        While the box is up the first key or paste dismisses it and is swallowed whole;
        what the terminal sent on its own before it and every byte after it go on.
        While locked every byte is the password prompt's and none the program's.
        """
        data = self._take_input(data, now)
        self._settle()
        return data

    def _take_input(self, data: bytes, now: float) -> bytes:
        if self._lock is not None:
            self._lock.on_input(data, now)
            self._after_lock_step(now)
            return b""
        if self._overlay is not None or self._paste_tail is not None:
            return self._on_input_dismissing(data, now)
        if self._classifier.feed(data):
            self._user_acted(now)
        self._note_pending(now)
        return data

    def _on_input_dismissing(self, data: bytes, now: float) -> bytes:
        if self._paste_tail is not None:
            data = self._swallow_paste(data, now)
            return b"" if self._paste_tail is not None else self._take_input(data, now)
        taken = self._classifier.take_action(data)
        if not taken.action:
            self._note_pending(now)
            return taken.before
        self._user_acted(now)
        rest = taken.after
        if taken.action == PASTE_START:
            self._paste_tail = b""
            rest = self._swallow_paste(rest, now)
            if self._paste_tail is not None:
                return taken.before
        return taken.before + self._take_input(rest, now) if rest else taken.before

    def _swallow_paste(self, data: bytes, now: float) -> bytes:
        """Drop paste content up to its end marker (which may arrive split); return the rest."""
        assert self._paste_tail is not None
        self.deadline.touch(now)
        buf = self._paste_tail + data
        end = buf.find(PASTE_END)
        if end < 0:
            self._paste_tail = buf[-(len(PASTE_END) - 1):]
            return b""
        self._paste_tail = None
        return buf[end + len(PASTE_END):]

    def _note_pending(self, now: float) -> None:
        """An incomplete escape sequence waits at most ESC_DELAY for the rest."""
        if not self._classifier.pending:
            self._esc_at = None
            return
        self._esc_at = now + ESC_DELAY
        if self.wake is None or self._esc_at < self.wake:
            self.wake = self._esc_at

    def _user_acted(self, now: float) -> None:
        if not self._warned:
            self.deadline.touch(now)  # the wake stays: on_time finds the deadline moved
            return
        idle = self.deadline.idle_for(now)
        self.deadline.touch(now)
        self._warned = False
        self._tick_at = None
        self._close_warning(now)
        self._events.emit("activity_resumed", idle=round(idle))
        self._arm(now)
        self._update_wake()

    # -- output -------------------------------------------------------------------------

    def on_output(self, now: float) -> None:
        """The program wrote after the shrink: it has repainted, the real size may return.

        (less repaints only on a real size change, so it must not miss the small one.)
        """
        self.awaits_output = False
        self._repaint_at = now
        self.wake = now

    def on_resize(self) -> None:
        """The user's window changed size: redraw the box or the lock at the new size."""
        if self._lock is not None:
            self._lock.on_resize()
        elif self._overlay is not None and not self._overlay_broken:
            try:
                self._overlay.resize()
            except OSError:
                self._overlay_broken = True

    # -- time ---------------------------------------------------------------------------

    def on_time(self, now: float) -> bool:
        """Act on every timer that is due; True when the session must end (`end_reason`)."""
        ends = self._on_time(now)
        self._settle()
        return ends

    def _on_time(self, now: float) -> bool:
        if self._esc_at is not None and now >= self._esc_at:
            self._esc_at = None
            if self._classifier.expire():
                # Nothing was forwarded of bytes held under the box: the key is swallowed.
                self._user_acted(now)
        if self._repaint_at is not None and now >= self._repaint_at and self._screen:
            self._repaint_at = None
            self.awaits_output = False
            self._screen.resize_program(shrink=False)
        if self._lock is not None:
            return self._on_time_locked(now)
        if now >= self.deadline.expires_at:
            plan = self._lock_plan
            if plan is None or not plan.at_deadline or self._start_lock(now, "idle") is not None:
                return True
            self._update_wake()
            return False
        if not self._warned:
            # A half-read escape sequence may be a key: the warning waits for the ESC delay.
            if now >= self.deadline.warn_at and self._esc_at is None:
                self._open_warning(now)
            self._arm(now)
        elif self._tick_at is not None and now >= self._tick_at:
            self._tick(now)
        self._update_wake()
        return False

    def _update_wake(self) -> None:
        if self._lock is not None:
            times = (self._repaint_at, self._lock.wake, self._terminate_at)
            self.wake = min((t for t in times if t is not None), default=None)
            return
        deadline = self.deadline.expires_at if self._warned else self.deadline.warn_at
        self.wake = min(t for t in (self._esc_at, self._tick_at, self._repaint_at, deadline)
                        if t is not None)

    def _arm(self, now: float) -> None:
        self._deadman.arm(self.deadline.expires_at - now + DEADMAN_GRACE)

    # -- the warning --------------------------------------------------------------------

    def _open_warning(self, now: float) -> None:
        self._warned = True
        remaining = self.deadline.expires_at - now
        shown = self._show_box(now, remaining) if self._screen else self._show_line(remaining)
        self._events.emit("warning", remaining=round(remaining),
                          idle=round(self.deadline.idle_for(now)), shown=None if shown else False)

    def _show_box(self, now: float, remaining: float) -> bool:
        from idlewrap.overlay import open_overlay  # urwid is paid for only when a warning is due

        assert self._screen is not None
        self._screen.flush_to_user(1.0)
        self._overlay_broken = False
        try:
            self._overlay = open_overlay(
                self._screen.user_fd,
                self._style.text,
                bell=self._style.bell,
                term=self._style.term,
                on_alt_screen=self._screen.modes.alt_screen,
                locks=self._lock_plan is not None and self._lock_plan.at_deadline,
            )
            self._overlay.show(round(remaining))
        except OSError:
            # The client stopped reading (~^Z, a laptop asleep under tail -f): the box
            # cannot be drawn, the deadline holds anyway, and a key still dismisses.
            self._overlay_broken = True
            return False
        self._tick_at = now + _to_next_second(remaining)
        return True

    def _show_line(self, remaining: float) -> bool:
        """No pty: no screen to draw on; one line on stderr, once per idle stretch."""
        line = f"idlewrap: {self._style.text} ({round(remaining)}s left)\n"
        try:
            os.write(2, line.encode())
        except OSError:
            return False
        return True

    def _tick(self, now: float) -> None:
        assert self._overlay is not None
        remaining = self.deadline.expires_at - now
        try:
            self._overlay.update(round(remaining))
        except OSError:
            self._overlay_broken = True
            self._tick_at = None
            return
        self._tick_at = now + _to_next_second(remaining)

    def _close_warning(self, now: float) -> None:
        """Take the box away and give the program its screen back."""
        if self._remove_box():
            self._give_screen_back(now)

    def _give_screen_back(self, now: float) -> None:
        """The box or the lock is gone: the program's modes back, and its screen repainted."""
        assert self._screen is not None
        modes = self._screen.modes
        restore = modes.restore_sequence()
        if restore:
            self._screen.send_to_user(restore)
        if modes.alt_screen:
            # a full-screen program lost its screen under the box: a size change makes it repaint
            self._screen.resize_program(shrink=True)
            self._repaint_at = now + REPAINT_WAIT
            self.awaits_output = True

    def _remove_box(self) -> bool:
        """Close the box if one is up; True if one was."""
        overlay, self._overlay = self._overlay, None
        if overlay is None:
            return False
        with contextlib.suppress(OSError):
            overlay.close()
        self._overlay_broken = False
        return True

    # -- the lock -----------------------------------------------------------------------

    def lock_now(self, now: float) -> None:
        """The user asked for the lock (`idlewrap lock`): at once, or say why not."""
        if self._lock is not None:
            return
        why = self._start_lock(now, "user")
        self._settle()
        if why is None:
            self._update_wake()
            return
        notice = f"\r\nidlewrap: this session cannot be locked: {why}\r\n".encode()
        if self._screen is not None:
            self._screen.send_to_user(notice)
        else:
            with contextlib.suppress(OSError):
                os.write(2, notice.replace(b"\r", b""))

    def on_fd(self, fd: int, now: float) -> None:
        """One of `fds` is readable."""
        if self._lock is not None:
            self._lock.on_fd(fd, now)
            self._after_lock_step(now)
            self._settle()

    def _start_lock(self, now: float, reason: str) -> str | None:
        """Lock the session (LOCKED); if it cannot be, say why (and stay as it was)."""
        plan, screen = self._lock_plan, self._screen
        if plan is None or screen is None:
            return "it has no terminal"
        from idlewrap.lock import Lock  # the lock screen and PAM: paid for when a lock is due
        from idlewrap.unlock import PAM_SERVICE_FILE, PamCheck

        check = plan.check or PamCheck()
        problem = check.unavailable()
        if problem is not None:
            self._events.emit("config_error", reason=problem)
            return f"{PAM_SERVICE_FILE} is missing (see docs/lock.md)"
        limit: float | None = plan.terminate_after
        if limit is None and not plan.at_deadline:
            # The policy ends idle sessions: a lock the user asked for must not hold one
            # open past its idle deadline (only `action = "lock"` may lock without an end).
            limit = self.deadline.idle_timeout
        terminate_at = None if limit is None else self.deadline.last_input + limit
        if terminate_at is not None and now >= terminate_at:
            return "terminate_after has passed"  # rules combined badly: the end, unlocked
        screen.flush_to_user(1.0)
        over_box = self._hand_over_warning()
        on_alt = bool(screen.modes.alt_screen)
        self._warned = False
        self._tick_at = self._esc_at = None
        self._paste_tail = None
        self._classifier = InputClassifier()  # a half-read sequence is not the program's now
        self._lock = Lock(plan, check, screen.user_fd, self._events, term=self._style.term,
                          enter=not on_alt and not over_box, leave=not on_alt,
                          closes_in=None if terminate_at is None else terminate_at - now)
        self._locked_at = now
        self._terminate_at = terminate_at
        self._events.emit("lock", reason=reason, idle=round(self.deadline.idle_for(now)))
        if terminate_at is None:
            self._deadman.hold()  # a stopped wrapper leaves the session locked: safe
        else:
            self._deadman.arm(terminate_at - now + DEADMAN_GRACE)
        return None

    def _hand_over_warning(self) -> bool:
        """Take the box away for the lock; True if it leaves the alternate screen on."""
        overlay, self._overlay = self._overlay, None
        if overlay is None or self._overlay_broken:
            return False
        try:
            return overlay.hand_over()
        except OSError:
            return False

    def _on_time_locked(self, now: float) -> bool:
        assert self._lock is not None
        self._lock.on_time(now)
        self._after_lock_step(now)
        if self._lock is None:
            return False
        if self._lock.exhausted:
            self.end_reason = "unlock_attempts"
            return True
        if self._terminate_at is not None and now >= self._terminate_at:
            self.end_reason = "locked"
            return True
        self._update_wake()
        return False

    def _after_lock_step(self, now: float) -> None:
        """After the lock took input, a verdict or the time: unlock, or end soon."""
        assert self._lock is not None
        if self._lock.unlocked:
            self._unlock(now)
        elif self._lock.exhausted:
            self.wake = now  # on_time ends the session, the one way a session ends
        else:
            self._update_wake()

    def _unlock(self, now: float) -> None:
        lock, self._lock = self._lock, None
        assert lock is not None
        lock.close(conceal=False, draw=True)
        self._terminate_at = None
        self._give_screen_back(now)
        self._events.emit("unlock", locked=round(now - self._locked_at))
        self.deadline.touch(now)
        self._arm(now)
        self._update_wake()

    def stand_down(self) -> None:
        """Nobody can type any more (no pty, the client's input ended): no deadline from
        now on. The switch is held, not disarmed: the session is not ending."""
        self._deadman.hold()

    # -- the end ------------------------------------------------------------------------

    def stop(self, *, draw: bool) -> bool:
        """The session ends: disarm the switch, take the box away if `draw` is allowed.

        Returns True if a box was up, so output held under it is still to be shown.
        A box the terminal would not take is not closed: that would only wait again.
        A session that ends locked shows nothing more: the lock leaves the screen
        cleared and the output held under it is never shown (False).
        """
        self._deadman.disarm()
        shown = self._stop(draw=draw)
        self._settle()
        return shown

    def _stop(self, *, draw: bool) -> bool:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.close(conceal=True, draw=draw)
            return False
        if self._overlay is None:
            return False
        if draw and not self._overlay_broken:
            return self._remove_box()
        self._overlay = None
        return draw


def _to_next_second(remaining: float) -> float:
    """Time until the displayed whole-second countdown changes."""
    frac = remaining - int(remaining)
    return frac if frac > 0.001 else 1.0
