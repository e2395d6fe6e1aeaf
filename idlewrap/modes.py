"""Terminal modes the program set, tracked from its output.

Two uses. After the warning (urwid switches screens and resets mouse modes and
cursor visibility) the program's modes are put back. At the end of the session the
terminal is handed back as the program found it: every mode the program left set is
reset, and nothing else, so a session whose program set nothing ends without a
single byte of resets (as it would without idlewrap). Tracked, with xterm's
semantics (ctlseqs, charproc.c):

- alternate screen `CSI ? 47|1047|1049 h/l`: one screen flag; the code last set is kept
  so the restore and the final reset use the same one (1049 also saves the cursor)
- DEC private modes: cursor visible `?25`, application cursor keys `?1`, autowrap `?7`,
  origin `?6`, focus events `?1004`, bracketed paste `?2004`, synchronized output
  `?2026`; application keypad `ESC =` / `ESC >` (and DECNKM `?66`)
- mouse tracking `?9|1000|1001|1002|1003`: one at a time; resetting any turns it off
- mouse encoding `?1005|1006|1015|1016`: one at a time; a reset only ends its own
- insert mode (IRM, `CSI 4 h/l`), the scroll region (DECSTBM, `CSI t;b r`)
- modifyOtherKeys and its kin (XTMODKEYS `CSI > Pp;Pv m`, vim sends `CSI >4;2m`), the
  kitty keyboard stack (`CSI > f u` push, `CSI < n u` pop, `CSI = f;m u` set)
- G0/G1 character sets (`ESC ( X`, `ESC ) X`: the DEC line-drawing set is `0`)
- SGR attributes: whether the last `CSI ... m` left any on
- RIS `ESC c` resets them all; DECSTR `CSI ! p` resets most (not the screen, the mouse,
  the keyboard protocols or autowrap)

Every sequence starts with ESC and, as in xterm's parser, an ESC always begins a new
sequence, also inside an OSC/DCS/APC/PM/SOS string (it ends the string). So string
content can never hold a mode change and one regex over the chunk finds them all; a
possibly incomplete sequence at the end of a chunk is carried over (bounded). SGR,
by far the most frequent sequence, costs one backwards search per chunk: only the
last one matters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from idlewrap.records import NamedTuple

MAX_PARAMS = 256  # bytes of parameters in one sequence; longer ones are ignored
_P = b"{0,%d}" % MAX_PARAMS
_SEQUENCE = re.compile(
    rb"\x1b(?:\[(?:"
    rb"\?([0-9;]" + _P + rb")([hl])"  # 1, 2: DEC private modes
    rb"|([0-9;]" + _P + rb")([hlr])"  # 3, 4: ANSI modes, DECSTBM
    rb"|([<>=])([0-9;]" + _P + rb")([mu])"  # 5, 6, 7: XTMODKEYS, kitty keyboard
    rb"|!p)"  # DECSTR
    rb"|([()])([\x20-\x2f]{0,2}[\x30-\x7e])"  # 8, 9: G0 / G1 designation
    rb"|([c=>]))"  # 10: RIS, DECKPAM, DECKPNM
)
_LAST_SGR = re.compile(rb".*\x1b\[([0-9;:]" + _P + rb")m", re.DOTALL)
_PARTIAL = re.compile(rb"\x1b(?:\[[?<>=!]?[0-9;:]*|[()][\x20-\x2f]{0,2})?")
_LONGEST_PARTIAL = len(b"\x1b[?") + MAX_PARAMS  # bounds the carry-over

_ALT_SCREENS = frozenset({47, 1047, 1049})
_MOUSE_TRACKING = (9, 1000, 1001, 1002, 1003)
_MOUSE_ENCODINGS = (1005, 1006, 1015, 1016)
_SWITCHES = {
    1: "app_cursor_keys",
    6: "origin",
    7: "autowrap",
    25: "cursor_visible",
    66: "app_keypad",
    1004: "focus_events",
    2004: "bracketed_paste",
    2026: "synchronized",
}
_INSERT_MODE = 4
_ASCII = b"B"
_KEYPAD_APPLICATION = b"\x1b="
_KEYPAD_NUMERIC = b"\x1b>"
_SAVE_CURSOR, _RESTORE_CURSOR = b"\x1b7", b"\x1b8"


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
    autowrap: bool = True
    origin: bool = False
    synchronized: bool = False
    insert: bool = False
    scroll_region: bool = False
    key_modifiers: frozenset[int] = frozenset()  # XTMODKEYS resources set to a value
    kitty_pushed: int = 0  # kitty keyboard entries pushed and not popped
    kitty_flags: bool = False  # kitty keyboard flags set in place (CSI = f u)
    g0: bytes = _ASCII  # final byte(s) of the G0 / G1 designation
    g1: bytes = _ASCII
    attributes: bool = False  # the last SGR left some attribute on


_DEFAULTS = Modes()


def _private_modes(codes: Iterable[int], enable: bool) -> bytes:
    """One DECSET (enable) or DECRST sequence for codes; nothing for no codes."""
    listed = b";".join(b"%d" % code for code in codes)
    return b"\x1b[?%s%s" % (listed, b"h" if enable else b"l") if listed else b""


def _numbers(params: bytes) -> list[int]:
    """The numeric parameters; an empty one is 0 (the default)."""
    return [int(field) if field else 0 for field in params.split(b";")]


class ModeTracker:
    """Streaming tracker of the modes the program's output set on the terminal."""

    def __init__(self) -> None:
        self._modes = _DEFAULTS
        self._carry = b""  # a possibly incomplete sequence that ended the last chunk

    @property
    def alt_screen(self) -> bool:
        """The program is on the alternate screen."""
        return self._modes.alt_screen != 0

    @property
    def quiet(self) -> bool:
        """No sequence is cut off: a chunk without ESC changes no mode."""
        return not self._carry

    def snapshot(self) -> Modes:
        """The current modes (immutable, comparable)."""
        return self._modes

    def feed(self, data: bytes) -> None:
        """Track the modes set by the next bytes of the program's output."""
        if not self._carry and 0x1B not in data:  # ESC as an int (output_filter._ESC)
            return
        buf = self._carry + data
        reset_at = -1  # where the last RIS or DECSTR ended: an SGR before it no longer counts
        for match in _SEQUENCE.finditer(buf):
            if self._apply(match):
                reset_at = match.end()
        sgr = _LAST_SGR.match(buf)
        if sgr is not None and sgr.end() > reset_at:
            on = sgr[1].strip(b"0;") != b""
            if on != self._modes.attributes:
                self._modes = self._modes._replace(attributes=on)
        last_esc = buf.rfind(b"\x1b", max(0, len(buf) - _LONGEST_PARTIAL))
        partial = last_esc >= 0 and _PARTIAL.fullmatch(buf, last_esc) is not None
        self._carry = buf[last_esc:] if partial else b""

    RESTORED = ("cursor_visible", "app_cursor_keys", "app_keypad", "mouse_tracking",
                "mouse_encoding", "focus_events", "bracketed_paste", "g0", "g1")

    def restore_sequence(self) -> bytes:
        """Bytes that re-enter the program's modes after the warning (urwid reset them).

        The screen is left out: the warning is drawn on whichever screen the program is
        on, so it is never left, and re-entering ?1049 would overwrite the cursor the
        program saved there. Only the `RESTORED` modes, the ones urwid resets, are sent.
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
                _designations(modes) if (modes.g0, modes.g1) != (_ASCII, _ASCII) else b"",
            )
        )

    def reset_sequence(self) -> bytes:
        """Bytes that take the terminal from the program's modes back to the defaults.

        Only modes the program left set are reset: b"" when it set none. Synchronized
        output goes first (until it ends the terminal shows nothing), the scroll region
        and origin mode before leaving the alternate screen (resetting them homes the
        cursor, which matters only on the main screen: there the cursor is saved around
        them), SGR and character sets last, after the screen switch restored the
        cursor and with it the main screen's saved attributes.
        """
        m = self._modes
        if m == _DEFAULTS:
            return b""
        parts = [_private_modes((2026,) if m.synchronized else (), False)]
        margins = (b"\x1b[r" if m.scroll_region else b"") + (b"\x1b[?6l" if m.origin else b"")
        if m.alt_screen:
            parts += [margins, _private_modes((m.alt_screen,), False)]
        elif m.scroll_region:
            parts += [_SAVE_CURSOR, b"\x1b[r", _RESTORE_CURSOR, b"\x1b[?6l" if m.origin else b""]
        elif m.origin:
            parts.append(b"\x1b[?6l")
        off = [code for code, on in ((1, m.app_cursor_keys), (1004, m.focus_events),
                                     (2004, m.bracketed_paste)) if on]
        off += [code for code in (m.mouse_tracking, m.mouse_encoding) if code]
        parts += [
            _private_modes(sorted(off), False),
            _private_modes((() if m.cursor_visible else (25,)) + (() if m.autowrap else (7,)),
                           True),
            b"\x1b[4l" if m.insert else b"",
            _KEYPAD_NUMERIC if m.app_keypad else b"",
            b"".join(b"\x1b[>%dm" % resource for resource in sorted(m.key_modifiers)),
            # Popping past the bottom of the kitty stack empties it and resets its flags.
            b"\x1b[<%du" % m.kitty_pushed if m.kitty_pushed else b"",
            b"\x1b[=0;1u" if m.kitty_flags else b"",
            b"\x1b(B\x1b)B\x0f" if (m.g0, m.g1) != (_ASCII, _ASCII) else b"",
            b"\x1b[m" if m.attributes else b"",
        ]
        return b"".join(parts)

    def _apply(self, match: re.Match[bytes]) -> bool:
        """Apply one sequence; True if it was a reset that also clears SGR attributes."""
        (private, private_action, ansi, ansi_action, marker, keys, keys_final,
         charset_slot, charset, single) = match.groups()
        modes = self._modes
        if private is not None:
            self._set_private_modes(private, private_action == b"h")
            return False
        if ansi is not None:
            if ansi_action == b"r":
                modes = modes._replace(scroll_region=ansi not in (b"", b"0", b"0;0"))
            elif _INSERT_MODE in _numbers(ansi):
                modes = modes._replace(insert=ansi_action == b"h")
        elif marker is not None:
            modes = _keyboard(modes, marker, keys, keys_final)
        elif charset_slot is not None:
            if charset_slot == b"(":
                modes = modes._replace(g0=charset)
            else:
                modes = modes._replace(g1=charset)
        elif single == b"c":  # RIS
            modes = _DEFAULTS
        elif single is None:  # DECSTR
            modes = modes._replace(
                cursor_visible=True, app_cursor_keys=False, app_keypad=False, origin=False,
                insert=False, scroll_region=False, g0=_ASCII, g1=_ASCII, attributes=False,
            )
        else:  # DECKPAM / DECKPNM
            modes = modes._replace(app_keypad=single == b"=")
        self._modes = modes
        return single == b"c" or (single is None and match[0].endswith(b"!p"))

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
                modes = modes._replace(**{_SWITCHES[code]: enable})  # type: ignore[arg-type]
        self._modes = modes


def _keyboard(modes: Modes, marker: bytes, params: bytes, final: bytes) -> Modes:
    """XTMODKEYS (`CSI > Pp;Pv m`) and the kitty keyboard protocol (`CSI >|<|= ... u`)."""
    numbers = _numbers(params)
    if final == b"m":
        if marker != b">":
            return modes
        if not params:
            return modes._replace(key_modifiers=frozenset())  # no resource: all reset
        resource, value = numbers[0], params.partition(b";")[2]
        changed = set(modes.key_modifiers)
        if value:
            changed.add(resource)
        else:
            changed.discard(resource)
        return modes._replace(key_modifiers=frozenset(changed))
    if marker == b">":
        return modes._replace(kitty_pushed=modes.kitty_pushed + 1)
    if marker == b"<":
        return modes._replace(kitty_pushed=max(modes.kitty_pushed - max(numbers[0], 1), 0))
    mode = numbers[1] if len(numbers) > 1 else 1  # 1: set all, 2: set bits, 3: clear bits
    if mode == 1 or (mode == 2 and numbers[0]):
        return modes._replace(kitty_flags=numbers[0] != 0 or mode == 2)
    return modes


def _designations(modes: Modes) -> bytes:
    return b"\x1b(" + modes.g0 + b"\x1b)" + modes.g1
