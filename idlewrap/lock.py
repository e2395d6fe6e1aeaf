"""The LOCKED state of the idle machine: the lock screen, the password typed, its check.

`IdleGuard` (idle.py) creates a `Lock` when a lock is due and hands it every byte the
user types (none reaches the program), the fd of a running check, and the time. The
lock says when it is over: `unlocked` (the password was right) or `exhausted`
(`unlock_attempts` wrong ones); the guard does the rest (the screen back, or the end).

Imported only when a lock is due, like the lock screen and python-pam behind it.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from idlewrap.lock_screen import LockInfo, LockScreen, open_lock_screen
from idlewrap.unlock import RunningCheck, start_check

if TYPE_CHECKING:
    from idlewrap.idle import Events, LockPlan, PasswordCheck

MAX_PASSWORD = 512  # bytes; PAM's own limit (PAM_MAX_RESP_SIZE)

# PasswordLine's states: text, after ESC, in a CSI, after SS3, in a string (OSC, DCS,
# APC, PM, SOS), after ESC inside a string.
_TEXT, _ESC, _CSI, _SS3, _STRING, _STRING_ESC = range(6)
_ENTER = frozenset(b"\r\n")
_ERASE = frozenset(b"\x7f\x08")
_KILL = frozenset(b"\x15\x03")  # Ctrl-U, and Ctrl-C: start over
_STRING_INTROS = frozenset(b"]P_^X")


class PasswordLine:
    """The password being typed: text kept, editing keys applied, escape sequences skipped.

    Backspace (DEL or ^H) erases the last character, Ctrl-U and Ctrl-C the whole line,
    Enter ends it (an empty line is ignored). Other control keys, Alt+key, cursor and
    function keys, and what the terminal sends on its own (focus, reports, paste
    brackets) are dropped; pasted text is kept. A lone ESC at the end of a read is the
    Esc key: terminals send a sequence in one write, so the next read starts afresh.
    """

    def __init__(self) -> None:
        self._typed = bytearray()
        self._state = _TEXT

    def feed(self, data: bytes) -> bytes | None:
        """Take typed bytes; the password when Enter completes it (what follows is dropped)."""
        for byte in data:
            if self._state != _TEXT:
                self._in_sequence(byte)
            elif byte == 0x1B:
                self._state = _ESC
            elif byte in _ENTER:
                if self._typed:  # an empty Enter is no attempt (a key pressed to wake up)
                    return self._take()
            elif byte in _ERASE:
                self._erase()
            elif byte in _KILL:
                self.clear()
            elif byte >= 0x20 and len(self._typed) < MAX_PASSWORD:
                self._typed.append(byte)
        if self._state == _ESC:
            self._state = _TEXT
        return None

    def clear(self) -> None:
        """Forget what was typed (overwritten first: it may be part of a password)."""
        self._typed[:] = bytes(len(self._typed))
        self._typed.clear()

    def _take(self) -> bytes:
        password = bytes(self._typed)
        self.clear()
        return password

    def _erase(self) -> None:
        # one character: a UTF-8 lead byte and its continuation bytes
        while self._typed:
            last = self._typed.pop()
            if last & 0xC0 != 0x80:
                return

    def _in_sequence(self, byte: int) -> None:
        state = self._state
        if state == _ESC:
            if byte == 0x1B:
                return
            self._state = (_CSI if byte == 0x5B else _SS3 if byte == 0x4F
                           else _STRING if byte in _STRING_INTROS else _TEXT)
        elif state == _CSI:
            if byte == 0x1B:
                self._state = _ESC
            elif 0x40 <= byte <= 0x7E:
                self._state = _TEXT
        elif state == _SS3:
            self._state = _TEXT
        elif state == _STRING:
            if byte == 0x07:
                self._state = _TEXT
            elif byte == 0x1B:
                self._state = _STRING_ESC
        else:  # ESC inside a string: ST ends it, anything else starts a new sequence
            self._state = _TEXT if byte == 0x5C else _ESC
            if byte != 0x5C:
                self._in_sequence(byte)


class Lock:
    """One lock, from the screen going dark to the unlock or the last wrong password."""

    def __init__(
        self,
        plan: LockPlan,
        check: PasswordCheck,
        out_fd: int,
        events: Events,
        *,
        term: str | None,
        enter: bool,
        leave: bool,
        closes_in: float | None,
    ) -> None:
        """`closes_in`: seconds until a locked session ends (terminate_after), or None."""
        self._plan = plan
        self._check = check
        self._events = events
        self._line = PasswordLine()
        self._running: RunningCheck | None = None
        self._broken = False  # the terminal took no output: typing blind still works
        self.failures = 0
        self.unlocked = False
        wall = time.time()
        info = LockInfo(plan.user, socket.gethostname(), _when(wall, wall),
                        None if closes_in is None else _when(wall + closes_in, wall))
        self._screen: LockScreen = open_lock_screen(out_fd, info, term=term, enter=enter,
                                                    leave=leave)
        self._draw(self._screen.show)

    @property
    def exhausted(self) -> bool:
        """`unlock_attempts` wrong passwords: the session must end."""
        return self.failures >= self._plan.attempts

    @property
    def fds(self) -> tuple[int, ...]:
        """The running check's verdict pipe, for the relay to poll."""
        return () if self._running is None else (self._running.fd,)

    @property
    def wake(self) -> float | None:
        """When a check that has not answered is given up."""
        return None if self._running is None else self._running.deadline

    def on_input(self, data: bytes, now: float) -> None:
        """Keys typed at the lock screen; while a check runs they are dropped."""
        if self._running is not None or self.unlocked or self.exhausted:
            return
        password = self._line.feed(data)
        if password is None:
            return
        self._running = start_check(self._check, self._plan, password, now)
        self._draw(self._screen.checking)

    def on_fd(self, fd: int, now: float) -> None:
        """The check's pipe is readable: its verdict (or its end without one)."""
        if self._running is None or fd != self._running.fd:
            return
        verdict = self._running.verdict()
        if verdict is None:
            return
        self._finish_check(verdict)

    def on_time(self, now: float) -> None:
        """A check that has not answered by its deadline fails."""
        if self._running is not None and now >= self._running.deadline:
            self._finish_check(False)

    def on_resize(self) -> None:
        """The window changed size: redraw."""
        self._draw(self._screen.resize)

    def close(self, *, conceal: bool, draw: bool) -> None:
        """Take the lock away: after the unlock, or (`conceal`) as the session ends."""
        self._line.clear()
        if self._running is not None:
            self._running.cancel()
            self._running = None
        if draw and not self._broken:
            with contextlib.suppress(OSError):
                self._screen.close(conceal=conceal)

    def _finish_check(self, verdict: bool) -> None:
        assert self._running is not None
        self._running.cancel()  # it has answered (or is given up): nothing of it is left
        self._running = None
        if verdict:
            self.unlocked = True
            return
        self.failures += 1
        self._events.emit("unlock_failed", attempt=self.failures)
        left = self._plan.attempts - self.failures
        if left > 0:
            plural = "s" if left > 1 else ""
            self._draw(lambda: self._screen.prompt(
                f"Wrong password: {left} attempt{plural} left."))

    def _draw(self, action: Callable[[], None]) -> None:
        """Draw, unless the terminal stopped taking output; the lock holds either way."""
        if self._broken:
            return
        try:
            action()
        except OSError:
            self._broken = True


def _when(wall: float, now: float) -> str:
    """'14:03', or 'Tue 07 May 14:03' when not today."""
    moment, today = time.localtime(wall), time.localtime(now)
    same_day = moment[:3] == today[:3]
    return time.strftime("%H:%M" if same_day else "%a %d %b %H:%M", moment)
