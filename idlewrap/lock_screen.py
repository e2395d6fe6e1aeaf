"""The lock screen: what a locked session shows instead of itself.

Drawn the way the warning is (overlay.py): urwid without its MainLoop. The relay owns
the loop, the signals, raw mode and the keys; the lock screen only draws, when told to,
and never echoes the password. Two forms:

* full screen, for any terminal urwid can drive: the alternate screen, cleared, then
  centred "This session is locked.", who and since when, when the session will be
  closed if nobody unlocks it, the password prompt and one status line;
* line by line, for the terminals the warning's one-line form is for (TERM=dumb, ...):
  a screen's height of blank lines scrolls the session out of sight, then the same
  facts and a ``Password: `` prompt, again after each wrong password.

Over a program on the alternate screen (vim, less) it draws on that screen without
switching (`enter`/`leave` False) and the program repaints after the unlock, as after
the warning. When a locked session ends instead (`close(conceal=True)`), the terminal
is left on its main screen, cleared, with its scrollback erased: the person who did not
unlock sees nothing of the session afterwards either.
"""

from __future__ import annotations

import contextlib
import locale
from typing import TYPE_CHECKING, NamedTuple, Protocol

from idlewrap.overlay import TerminalWriter, UrwidScreen, can_draw_boxes, write_whole
from idlewrap.terminal import drawing_size

if TYPE_CHECKING:
    import urwid

ENTER = "\x1b[?1049h"  # alternate screen (xterm saves the cursor with the main screen)
LEAVE = "\x1b[?1049l"
CLEAR = "\x1b[H\x1b[2J"
CONCEAL = LEAVE + CLEAR + "\x1b[3J"  # ED 3: the scrollback too (xterm, tmux, VTE, kitty)
TITLE = "This session is locked."
PROMPT = "Password: "


class LockInfo(NamedTuple):
    """What the lock screen says about the session."""

    user: str
    host: str
    since: str  # local time the lock began
    closes: str | None  # local time a locked session ends (terminate_after), or None


class LockScreen(Protocol):
    """The lock on the user's terminal; one per lock, spent after `close`."""

    def show(self) -> None:
        """Hide the session and draw the lock with an empty prompt."""

    def checking(self) -> None:
        """A password was submitted and is being checked."""

    def prompt(self, message: str) -> None:
        """Ask for the password again, with `message` (why the last one failed)."""

    def resize(self) -> None:
        """The window size changed: redraw at the new size."""

    def close(self, *, conceal: bool) -> None:
        """Remove the lock: after an unlock (the session comes back), or, with `conceal`,
        because the session ends locked (main screen, cleared, scrollback erased)."""


def open_lock_screen(out_fd: int, info: LockInfo, *, term: str | None, enter: bool,
                     leave: bool) -> LockScreen:
    """The lock screen for the terminal on `out_fd`, not drawn yet.

    `enter`: switch to the alternate screen first (the program is on the main screen
    and no warning box switched already); `leave`: switch back on an unlock (the
    program is on the main screen). urwid is imported here, when a lock is due.
    Writes are whole or raise `TimeoutError` (overlay.write_whole).
    """
    if can_draw_boxes(term):
        # A broken or missing urwid must not cost the user the lock.
        with contextlib.suppress(Exception):
            return _FullScreen(out_fd, info, term=term, enter=enter, leave=leave)
    return _LineForm(out_fd, info)


def lines_of(info: LockInfo, status: str) -> list[str]:
    """The lock screen's text, top to bottom (the prompt has no echo after it)."""
    lines = [TITLE, "", f"{info.user} on {info.host}, locked since {info.since}"]
    if info.closes is not None:
        lines.append(f"It will be closed at {info.closes} unless unlocked.")
    return [*lines, "", f"Password for {info.user}:", "", status]


class _FullScreen:
    """The lock drawn by urwid over the whole alternate screen."""

    def __init__(self, out_fd: int, info: LockInfo, *, term: str, enter: bool,
                 leave: bool) -> None:
        self._fd = out_fd
        self._info = info
        self._enter = enter
        self._leave = leave
        self._status = ""
        # urwid's own switches are left out: whether to switch is `enter` and `leave`.
        self._drawing = UrwidScreen(out_fd, term, omit=(ENTER, LEAVE))
        self._screen = self._drawing.screen

    def show(self) -> None:
        if self._enter:
            write_whole(self._fd, ENTER.encode())
        self._screen.start(alternate_buffer=True)
        # Every cell: nothing of the session may show through, whatever urwid believes
        # is already on the screen.
        self._drawing.writer.write(CLEAR)
        self._draw()

    def checking(self) -> None:
        self._status = "Checking..."
        self._draw()

    def prompt(self, message: str) -> None:
        self._status = message
        self._draw()

    def resize(self) -> None:
        self._screen.clear()
        self._drawing.writer.write(CLEAR)
        self._draw()

    def close(self, *, conceal: bool) -> None:
        try:
            self._screen.stop()
        finally:
            self._drawing.close()
        if conceal:
            write_whole(self._fd, CONCEAL.encode())
        elif self._leave:
            write_whole(self._fd, LEAVE.encode())

    def _draw(self) -> None:
        rows, cols = drawing_size(self._fd)
        canvas = layout(self._info, self._status).render((cols, rows), focus=True)
        self._screen.draw_screen((cols, rows), canvas)


def layout(info: LockInfo, status: str) -> urwid.Widget:
    """The lock screen's widget: its lines centred; cut, never an error, on a tiny screen."""
    import urwid

    pile = urwid.Pile([urwid.Text(line, align="center") for line in lines_of(info, status)])
    return urwid.Filler(pile, valign="middle")


class _LineForm:
    """The lock for a terminal that can only print lines."""

    def __init__(self, out_fd: int, info: LockInfo) -> None:
        self._fd = out_fd
        self._info = info
        self._writer = TerminalWriter(out_fd, locale.getpreferredencoding(False))

    def show(self) -> None:
        rows = drawing_size(self._fd)[0]
        facts = [line for line in lines_of(self._info, "")[:4] if line]
        self._say("\r\n" * rows + "\r\n".join(facts) + "\r\n" + PROMPT)

    def checking(self) -> None:
        self._say("\r\n")  # the Enter that submitted was not echoed

    def prompt(self, message: str) -> None:
        self._say(f"{message}\r\n{PROMPT}")

    def resize(self) -> None:
        """Nothing to redraw: the prompt is the last line."""

    def close(self, *, conceal: bool) -> None:
        self._say("\r\n")

    def _say(self, text: str) -> None:
        self._writer.write(text)
        self._writer.flush()
