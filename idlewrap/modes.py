"""Terminal modes the program set, tracked from its output.

idlewrap draws its warning with urwid, which switches screens and resets mouse modes
and cursor visibility; afterwards the program's modes must be put back, and at the end
of the session the terminal must be left sane. Only the modes that matter for that are
tracked, with xterm's semantics (ctlseqs, charproc.c):

- alternate screen `CSI ? 47|1047|1049 h/l`: one screen flag; the code last set is kept
  so the restore and the final reset use the same one (1049 also saves the cursor)
- cursor visible `?25`, application cursor keys `?1`, focus events `?1004`,
  bracketed paste `?2004`; application keypad `ESC =` / `ESC >` (and DECNKM `?66`)
- mouse tracking `?9|1000|1001|1002|1003`: one at a time; resetting any turns it off
- mouse encoding `?1005|1006|1015|1016`: one at a time; a reset only ends its own
- RIS `ESC c` resets them all; DECSTR `CSI ! p` shows the cursor and resets the keys

Every sequence starts with ESC and, as in xterm's parser, an ESC always begins a new
sequence, also inside an OSC/DCS/APC/PM/SOS string (it ends the string). So string
content can never hold a mode change and one regex over the chunk finds them all; a
possibly incomplete sequence at the end of a chunk is carried over (bounded).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

MAX_PARAMS = 256  # bytes of parameters in one DECSET; longer ones are ignored
_SEQUENCE = re.compile(rb"\x1b(?:\[(?:\?([0-9;]{0,%d})([hl])|!p)|([c=>]))" % MAX_PARAMS)
_PARTIAL = re.compile(rb"\x1b(?:\[(?:\?[0-9;]*|!)?)?")  # a prefix of a _SEQUENCE
_LONGEST_PARTIAL = len(b"\x1b[?") + MAX_PARAMS  # bounds the carry-over

_ALT_SCREENS = frozenset({47, 1047, 1049})
_MOUSE_TRACKING = (9, 1000, 1001, 1002, 1003)
_MOUSE_ENCODINGS = (1005, 1006, 1015, 1016)
_SWITCHES = {
    1: "app_cursor_keys",
    25: "cursor_visible",
    66: "app_keypad",
    1004: "focus_events",
    2004: "bracketed_paste",
}
_KEYPAD_APPLICATION = b"\x1b="
_KEYPAD_NUMERIC = b"\x1b>"


class Modes(NamedTuple):
    """The tracked modes; the defaults are a freshly reset terminal.

    A NamedTuple, not a dataclass: `dataclasses` imports `inspect`, 1.6 MB that
    every session's relay would carry for nothing.
    """

    alt_screen: int = 0  # 0, or the code last set: 47, 1047 or 1049
    cursor_visible: bool = True
    app_cursor_keys: bool = False
    app_keypad: bool = False
    mouse_tracking: int = 0  # 0 or one of 9, 1000, 1001, 1002, 1003
    mouse_encoding: int = 0  # 0 or one of 1005, 1006, 1015, 1016
    focus_events: bool = False
    bracketed_paste: bool = False


_DEFAULTS = Modes()


def _private_modes(codes: Iterable[int], enable: bool) -> bytes:
    """One DECSET (enable) or DECRST sequence for codes; nothing for no codes."""
    listed = b";".join(b"%d" % code for code in codes)
    return b"\x1b[?%s%s" % (listed, b"h" if enable else b"l") if listed else b""


# The terminal's defaults whatever it holds now. The screen is left separately, with
# the code last set: `?1049l` also restores the cursor saved by `?1049h`, and sent
# when not on the alternate screen it would move the cursor.
_RESET_ALL = (
    _private_modes((1, *_MOUSE_TRACKING, *_MOUSE_ENCODINGS, 1004, 2004), False)
    + _private_modes((25,), True)
    + _KEYPAD_NUMERIC
)


class ModeTracker:
    """Streaming tracker of the modes the program's output set on the terminal."""

    def __init__(self) -> None:
        self._modes = _DEFAULTS
        self._carry = b""  # a possibly incomplete sequence that ended the last chunk

    @property
    def alt_screen(self) -> bool:
        """The program is on the alternate screen."""
        return self._modes.alt_screen != 0

    def snapshot(self) -> Modes:
        """The current modes (immutable, comparable)."""
        return self._modes

    def feed(self, data: bytes) -> None:
        """Track the modes set by the next bytes of the program's output."""
        if not self._carry and b"\x1b" not in data:
            return
        buf = self._carry + data
        for match in _SEQUENCE.finditer(buf):
            params, action, single = match.groups()
            if params is not None:
                self._set_private_modes(params, action == b"h")
            elif single == b"c":  # RIS
                self._modes = _DEFAULTS
            elif single is None:  # DECSTR
                self._modes = self._modes._replace(
                    cursor_visible=True, app_cursor_keys=False, app_keypad=False
                )
            else:  # DECKPAM / DECKPNM
                self._modes = self._modes._replace(app_keypad=single == b"=")
        last_esc = buf.rfind(b"\x1b", max(0, len(buf) - _LONGEST_PARTIAL))
        partial = last_esc >= 0 and _PARTIAL.fullmatch(buf, last_esc) is not None
        self._carry = buf[last_esc:] if partial else b""

    def restore_sequence(self) -> bytes:
        """Bytes that re-enter the program's modes (all but the screen) after the warning.

        The screen is left out: the warning is drawn on whichever screen the program is
        on, so it is never left, and re-entering ?1049 would overwrite the cursor the
        program saved there.
        """
        modes = self._modes
        enable = [code for code in (modes.mouse_tracking, modes.mouse_encoding) if code]
        enable += [
            code
            for code, on in (
                (1, modes.app_cursor_keys),
                (1004, modes.focus_events),
                (2004, modes.bracketed_paste),
            )
            if on
        ]
        return b"".join(
            (
                _private_modes(enable, True),
                _private_modes(() if modes.cursor_visible else (25,), False),
                _KEYPAD_APPLICATION if modes.app_keypad else b"",
            )
        )

    def reset_sequence(self) -> bytes:
        """Bytes that take the terminal from the current modes to the defaults.

        Everything but the screen is reset unconditionally (harmless when already off),
        so a mode set in a way the tracker missed is still cleared at the end.
        """
        alt_screen = self._modes.alt_screen
        return _private_modes((alt_screen,) if alt_screen else (), False) + _RESET_ALL

    def _set_private_modes(self, params: bytes, enable: bool) -> None:
        modes = self._modes
        for field in params.split(b";"):
            if not field:
                continue  # an empty parameter is 0, which is no mode
            code = int(field)
            if code in _ALT_SCREENS:
                modes = modes._replace(alt_screen=code if enable else 0)
            elif code in _MOUSE_TRACKING:
                modes = modes._replace(mouse_tracking=code if enable else 0)
            elif code in _MOUSE_ENCODINGS:
                if enable or modes.mouse_encoding == code:
                    modes = modes._replace(mouse_encoding=code if enable else 0)
            elif code in _SWITCHES:
                modes = modes._replace(**{_SWITCHES[code]: enable})
        self._modes = modes
