"""The warning drawn over the session when it is about to be closed for idleness.

Two forms, chosen by `open_overlay`:

* a box drawn with urwid on the alternate screen, centred, with a countdown; a
  compact form without a frame when the terminal is too small for the box. Over a
  program that is on the alternate screen itself (vim, less) it is drawn on that
  screen, without switching, and the program repaints afterwards;
* one line redrawn in place with carriage returns, for terminals urwid cannot
  drive (TERM unset, ``dumb``, ``unknown``, or no terminfo entry for it).

The relay owns the event loop, the signals, raw mode and the decision of what
is a key: an overlay only draws, when it is told to.
"""

from __future__ import annotations

import contextlib
import errno
import locale
import os
import re
import signal
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from idlewrap.terminal import drawing_size, write_all

if TYPE_CHECKING:
    import urwid

_HINT = "Press any key to stay connected"

_PAD_X = 3  # blank columns between the frame and the text
_MAX_TEXT_COLS = 60  # a long warning text wraps instead of making a wall-wide box
_WRITE_TIMEOUT = 5.0  # seconds a frame may wait for a terminal that does not drain

# TERM values that name no terminal urwid's escape sequences could drive.
_UNDRIVABLE_TERMS = frozenset({"", "dumb", "unknown"})
# Characters terminfo names use: TERM comes from the user and becomes a path.
_TERM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._-]*")
# ncurses' compiled-in search path, after TERMINFO, ~/.terminfo and TERMINFO_DIRS.
_SYSTEM_TERMINFO_DIRS = (
    "/etc/terminfo",
    "/lib/terminfo",
    "/usr/share/terminfo",
    "/usr/lib/terminfo",
)


class Overlay(Protocol):
    """A warning on the user's terminal; one per warning, spent after `close`."""

    def show(self, remaining: int) -> None:
        """Draw the warning; `remaining` is the whole seconds left."""

    def update(self, remaining: int) -> None:
        """Redraw the countdown (the relay calls this once a second)."""

    def resize(self) -> None:
        """The window size changed: redraw at the new size."""

    def close(self) -> None:
        """Remove the warning: main screen, cursor visible where it was before `show`.

        Drawn `on_alt_screen`, the box stays there for the program to repaint over.
        """

    def hand_over(self) -> bool:
        """Remove the warning for the lock screen, which is drawn next.

        True if the terminal is left on the alternate screen the warning switched to
        (the lock screen then draws there and switches back when it goes).
        """


def open_overlay(
    out_fd: int, text: str, *, bell: bool, term: str | None, on_alt_screen: bool = False,
    locks: bool = False,
) -> Overlay:
    """The warning for the terminal on `out_fd`, not drawn yet.

    `text` is the policy's warning text, `bell` rings the terminal bell once on
    `show`, `term` is the terminal type (TERM), `on_alt_screen` says the program is
    on the alternate screen, so the box goes there; `locks`: the countdown is to a
    lock ("Session locks in"), not to the end. urwid is imported here, never
    before: a session that is never warned does not pay for it. Writes never
    leave a frame half drawn, even on a non-blocking `out_fd`; a terminal that
    accepts nothing for `_WRITE_TIMEOUT` seconds raises `TimeoutError`.
    """
    if can_draw_boxes(term):
        # A broken or missing urwid must not cost the user the warning.
        with contextlib.suppress(Exception):
            return _BoxOverlay(out_fd, text, bell=bell, term=term, on_alt_screen=on_alt_screen,
                               locks=locks)
    return _LineOverlay(out_fd, text, bell=bell, locks=locks)


def _clock(remaining: int) -> str:
    """'0:42', '10:00', '1:05:00'."""
    minutes, seconds = divmod(max(remaining, 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def can_draw_boxes(term: str | None) -> TypeGuard[str]:
    """Whether urwid can draw on a terminal of type `term` (else: the one-line forms)."""
    return term is not None and term not in _UNDRIVABLE_TERMS and _has_terminfo(term)


def _has_terminfo(term: str) -> bool:
    """Whether a compiled terminfo entry exists for `term`, searched in ncurses' order.

    Not curses.setupterm(): CPython runs it once per process and answers every
    later call, whatever the terminal, with the first one's success.
    """
    if not _TERM_NAME.fullmatch(term):
        return False
    dirs = [os.environ.get("TERMINFO", "")]
    if home := os.environ.get("HOME"):
        dirs.append(os.path.join(home, ".terminfo"))
    dirs += os.environ.get("TERMINFO_DIRS", "").split(":")
    dirs += _SYSTEM_TERMINFO_DIRS
    subdirs = (term[0], f"{ord(term[0]):x}")  # the hexadecimal form is macOS's layout
    return any(os.path.isfile(os.path.join(d, sub, term)) for d in dirs if d for sub in subdirs)


def write_whole(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd`, or raise TimeoutError: a box is never half drawn."""
    if write_all(fd, data, _WRITE_TIMEOUT):
        raise TimeoutError(errno.ETIMEDOUT, "the terminal accepts no output")


class TerminalWriter:
    """The text stream urwid writes to: held until `flush`, then written whole, less `omit`."""

    def __init__(self, fd: int, encoding: str, omit: tuple[str, ...] = ()) -> None:
        self._fd = fd
        self._encoding = encoding
        self.omit = omit
        self._pending: list[str] = []

    def write(self, data: str) -> int:
        self._pending.append(data)
        return len(data)

    def flush(self) -> None:
        text = "".join(self._pending)
        self._pending.clear()
        for sequence in self.omit:
            text = text.replace(sequence, "")
        write_whole(self._fd, text.encode(self._encoding, "replace"))


def _keep_signal(
    signalnum: int | signal.Signals,
    handler: Callable[[int, FrameType | None], Any] | int | signal.Handlers | None,
) -> None:
    """urwid's signal setter, made inert: the relay owns SIGWINCH and SIGTSTP.

    urwid's own SIGWINCH handler would also make draw_screen() skip every frame
    until parse_input() saw the resize; `resize` redraws instead.
    """


class UrwidScreen:
    """urwid's raw Screen as the relay allows it: draws only, never reads the terminal.

    `omit` lists sequences left out of everything it writes (the screen switches, where
    the caller decides about them itself).
    """

    def __init__(self, out_fd: int, term: str, omit: tuple[str, ...] = ()) -> None:
        import urwid

        self.writer = TerminalWriter(out_fd, urwid.util.get_encoding(), omit)
        # urwid's input must not be a tty: given one, start() sends DECRQM probes whose
        # replies would reach the program, and stop() flushes the user's typed-ahead input.
        # Nothing ever reads this pipe; urwid only checks what it is.
        read_end, write_end = os.pipe()
        os.close(write_end)
        self._input = open(read_end, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        try:
            self.screen = urwid.display.raw.Screen(
                input=self._input,
                output=self.writer,
                bracketed_paste_mode=False,
                focus_reporting=False,
            )
        except BaseException:
            self._input.close()
            raise
        self.screen.signal_handler_setter = _keep_signal
        self.screen.term = term  # urwid read TERM from the environment; the caller knows better

    def close(self) -> None:
        """Release the input pipe (after `screen.stop()`, or instead of it)."""
        self._input.close()


class _BoxOverlay:
    """The box (or its compact form) drawn by urwid on the alternate screen."""

    def __init__(
        self, out_fd: int, text: str, *, bell: bool, term: str, on_alt_screen: bool,
        locks: bool,
    ) -> None:
        from urwid.display import escape

        self._fd = out_fd
        self._text = text
        self._bell = bell
        self._locks = locks
        self._remaining = 0
        self._on_alt_screen = on_alt_screen
        # The program's own ?1049h saved the cursor its ?1049l will restore when it exits.
        # xterm saves the cursor again on every ?1049h, also on the alternate screen, so
        # urwid's switch there would lose the program's: its screen is drawn over instead.
        switch = escape.PrivateMode.ALTERNATE_SCREEN_BUFFER
        self._switches = (switch.enable_seq, switch.disable_seq)
        self._drawing = UrwidScreen(out_fd, term, self._switches if on_alt_screen else ())
        self._writer = self._drawing.writer
        self._screen = self._drawing.screen
        self._built: tuple[tuple[int, int], urwid.Widget, urwid.Text] | None = None

    def show(self, remaining: int) -> None:
        self._remaining = remaining
        if self._bell:
            self._writer.write("\a")
        # ?1049h saves the cursor; stop()'s ?1049l puts it back where the prompt left it.
        self._screen.start(alternate_buffer=True)
        self._draw()

    def update(self, remaining: int) -> None:
        self._remaining = remaining
        self._draw()

    def resize(self) -> None:
        # The terminal may have reflowed or cleared cells urwid believes are drawn.
        self._screen.clear()
        self._draw()

    def close(self) -> None:
        try:
            self._screen.stop()
        finally:
            self._drawing.close()

    def hand_over(self) -> bool:
        # Stay on the alternate screen: the shell's screen must not flash up in between.
        self._writer.omit = self._switches
        self.close()
        return not self._on_alt_screen

    def _draw(self) -> None:
        rows, cols = drawing_size(self._fd)
        # The layout is built once per size; a tick only changes the countdown's text.
        # Building it (and urwid's checks of its widgets) was 2/3 of each second's redraw.
        if self._built is None or self._built[0] != (cols, rows):
            self._built = ((cols, rows),
                           *_layout(self._text, self._remaining, cols, rows, locks=self._locks))
        else:
            self._built[2].set_text(_countdown(self._remaining, self._locks))
        canvas = self._built[1].render((cols, rows), focus=True)
        self._screen.draw_screen((cols, rows), canvas)


def _countdown(remaining: int, locks: bool) -> str:
    return f"Session {'locks' if locks else 'closes'} in {_clock(remaining)}"


def _layout(text: str, remaining: int, cols: int, rows: int, *, locks: bool = False
            ) -> tuple[urwid.Widget, urwid.Text]:
    """What fills a `cols` x `rows` screen: the framed box if it fits, else the compact
    form; and the countdown's line in it."""
    import urwid

    lines = [
        urwid.Text(_countdown(remaining, locks), align="center"),
        urwid.Text(_HINT, align="center"),
    ]
    text_cols = min(urwid.Text(text).pack()[0], _MAX_TEXT_COLS)
    inner = min(max(text_cols, len(_HINT)), cols - 2 * _PAD_X - 2)
    if inner >= len(_HINT):
        gap = urwid.Divider()
        body = urwid.Pile(
            [gap, urwid.Text(text, align="center"), gap, lines[0], gap, lines[1], gap]
        )
        box = urwid.LineBox(urwid.Padding(body, left=_PAD_X, right=_PAD_X))
        width = inner + 2 * _PAD_X + 2
        height = box.rows((width,))
        if height <= rows:
            return (urwid.Overlay(box, urwid.SolidFill(" "), "center", width, "middle", height),
                    lines[0])
    return urwid.Filler(urwid.Pile(lines), valign="middle"), lines[0]


class _LineOverlay:
    """One line under the cursor's line, redrawn with CR: all a dumb terminal can do.

    It starts on a new line so the user's half-typed command stays visible above;
    closing blanks the line and leaves the cursor at its start.
    """

    def __init__(self, out_fd: int, text: str, *, bell: bool, locks: bool) -> None:
        self._fd = out_fd
        # One line: no newlines, tabs or control characters from the policy's text.
        self._text = "".join(c for c in " ".join(text.split()) if c.isprintable())
        self._bell = bell
        self._locks = locks
        self._remaining = 0
        self._shown = False
        self._writer = TerminalWriter(out_fd, locale.getpreferredencoding(False))

    def show(self, remaining: int) -> None:
        self._shown = True
        self._writer.write("\a\r\n" if self._bell else "\r\n")
        self.update(remaining)

    def update(self, remaining: int) -> None:
        import urwid  # display widths (CJK, emoji): a warning is due, so it may be loaded

        self._remaining = remaining
        width = self._width()
        line = _one_line(self._text, remaining, width, locks=self._locks)
        pad = " " * max(width - urwid.calc_width(line, 0, len(line)), 0)
        # Spaces wipe a longer previous line; the line again leaves the cursor after it.
        self._writer.write(f"\r{line}{pad}\r{line}")
        self._writer.flush()

    def resize(self) -> None:
        self.update(self._remaining)

    def close(self) -> None:
        if self._shown:
            self._shown = False
            self._writer.write(f"\r{' ' * self._width()}\r")
            self._writer.flush()

    def hand_over(self) -> bool:
        self.close()
        return False

    def _width(self) -> int:
        # The last column is left alone: writing there makes some terminals wrap.
        return max(drawing_size(self._fd)[1] - 1, 1)


def _one_line(text: str, remaining: int, width: int, *, locks: bool = False) -> str:
    """The warning text and a short countdown if they fit in `width` columns, else the countdown.

    Columns are display columns: a CJK character or an emoji takes two.
    """
    import urwid

    short = f"{'Locking' if locks else 'Closing'} in {_clock(remaining)}: press any key."
    full = f"{text} {short}"
    if urwid.calc_width(full, 0, len(full)) <= width:
        return full
    end, _ = urwid.calc_text_pos(short, 0, len(short), width)
    return short[:end]
