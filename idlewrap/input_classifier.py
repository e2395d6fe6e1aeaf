"""Which bytes from the user's terminal are a person acting.

The relay forwards every byte to the program whatever this says; the answer only
decides whether the idle deadline moves. Keys, pastes and mouse clicks are a person.
What a terminal sends on its own is not: focus events, replies to queries (DA, DECRPM,
cursor position, XTWINOPS, DECREQTPARM, DECRQLP locator reports, the VT52 identify reply
`ESC / Z`, OSC/DCS/APC strings, private-marker reports) and mouse motion with no button
held. docs/warning.md ("What counts as a key") has the table. Two replies look exactly
like typing (the ENQ answerback, e.g. `PuTTY`, and reports in 8-bit C1 controls after
S8C1T): those are not told apart here, the program is kept from asking (output_filter.py).

It is a streaming parser: a sequence may arrive split at any byte, and the answer for
the whole stream does not depend on where it was split. Only 7-bit sequences are
recognised: in a UTF-8 stream 0x80-0x9F are continuation bytes, not C1 controls.
"""

from __future__ import annotations

import re

from idlewrap.records import NamedTuple

_ESC = 0x1B
_BEL = 0x07
_CSI_INTRO = 0x5B  # '['
_OSC_INTRO = 0x5D  # ']'
_BACKSLASH = 0x5C  # ESC \ is the string terminator
_X10_MOUSE = 0x4D  # 'M'
_VT52_ID = b"/Z"  # VT52 mode's reply to DECID (`ESC Z`): `ESC / Z`
_STRING_INTROS = frozenset(b"]P_^X")  # OSC, DCS, APC, PM, SOS
_INCOMPLETE = -1

# Terminal reports are short (xterm's longest DA reply is ~40 bytes); the cap bounds
# what a pending sequence can buffer.
MAX_CSI_BODY = 128
_CSI_BODY = re.compile(rb"[\x20-\x3f]{0,%d}" % MAX_CSI_BODY)
_CSI_PARTS = re.compile(rb"([\x30-\x3f]*)([\x20-\x2f]*)")
_NUMBERS = re.compile(rb"[0-9;]*")
_TWO_NUMBERS = re.compile(rb"[0-9]+;[0-9]+")
_MOUSE_REPORT = re.compile(rb"([0-9]+);[0-9]+;[0-9]+")
_OSC_END = re.compile(rb"[\x07\x1b]")  # xterm ends OSC with BEL too
_ST_START = re.compile(rb"\x1b")
_REPORT_MARKERS = (b"?", b">", b"=")


class Taken(NamedTuple):
    """Input split around the first user action (see `InputClassifier.take_action`)."""

    before: bytes  # what the terminal sent on its own before the action (reports)
    action: bytes  # the action: one key, one escape sequence, or b"" if none completed
    after: bytes  # not parsed yet: bytes after the action


PASTE_START = b"\x1b[200~"
PASTE_END = b"\x1b[201~"


class InputClassifier:
    """Streaming classifier of the bytes read from the user's terminal."""

    def __init__(self) -> None:
        self._carry = b""  # unparsed tail: an incomplete sequence, at most MAX_CSI_BODY + 2 bytes
        self._string = 0  # introducer of the OSC/DCS/APC/PM/SOS being skipped, 0 if none

    @property
    def pending(self) -> bool:
        """An escape sequence or string is incomplete: more bytes or `expire()` will tell."""
        return bool(self._carry) or self._string != 0

    def feed(self, data: bytes) -> bool:
        """Parse the next bytes; True iff they completed at least one user action."""
        # ESC as an int (see output_filter._ESC)
        if not self._carry and not self._string and 0x1B not in data:
            return bool(data)
        buf = self._carry + data
        self._carry = b""
        acted = False
        pos = 0
        while True:
            start, end = self._next_action(buf, pos)
            if start < 0:
                return acted
            acted = True
            # Text up to the next ESC is keys too: no need to look at it one by one.
            pos = buf.find(b"\x1b", end)
            if pos < 0:
                return True

    def take_action(self, data: bytes) -> Taken:
        """Parse up to the end of the first user action in the held bytes plus `data`.

        For the key that dismisses the warning: it is swallowed whole while what the
        terminal sent on its own before it (`before`) and the bytes after it
        (`after`, to be fed as usual) still reach the program. A key is one
        character (a UTF-8 sequence whole) or one escape sequence. When no action
        completes, an incomplete sequence at the end stays held: neither in
        `before` nor forwarded, until more bytes or `expire()` tell what it is.
        """
        buf = self._carry + data
        self._carry = b""
        start, end = self._next_action(buf, 0)
        if start < 0:
            return Taken(buf[:end], b"", b"")
        return Taken(buf[:start], buf[start:end], buf[end:])

    def _next_action(self, buf: bytes, pos: int) -> tuple[int, int]:
        """(start, end) of the first action in buf from pos, skipping what the terminal sent.

        No action: (-1, where the held incomplete tail starts), with that tail kept as
        the carry for the next bytes.
        """
        end = len(buf)
        while pos < end:
            if self._string:
                pos = self._skip_string(buf, pos)
                continue
            esc = buf.find(b"\x1b", pos)
            if esc != pos:  # text: a key
                return pos, _character_end(buf, pos)
            after, action = self._escape(buf, esc)
            if after == _INCOMPLETE:
                self._carry = buf[esc:]
                return -1, esc
            if action:
                return esc, after
            pos = after
        return -1, end - len(self._carry)

    def expire(self) -> bool:
        """The escape delay passed with no more bytes: resolve what is pending.

        Terminals write each report in one go, so a sequence still incomplete after
        the delay was typed: a lone ESC is the Esc key, `ESC [` is Alt+[, `ESC ]` and
        what followed is Alt+] and keys. True iff anything was pending.
        """
        stalled = self.pending
        self._carry = b""
        self._string = 0
        return stalled

    def _escape(self, buf: bytes, i: int) -> tuple[int, bool]:
        """Classify the sequence at buf[i] (an ESC): (index after it, is an action)."""
        if i + 1 == len(buf):
            return _INCOMPLETE, False
        intro = buf[i + 1]
        if intro == _CSI_INTRO:
            return _control_sequence(buf, i + 2)
        if intro in _STRING_INTROS:
            self._string = intro
            return i + 2, False
        if intro == _ESC:
            return i + 1, True  # the Esc key; the second ESC starts its own sequence
        if intro == _VT52_ID[0]:
            if i + 2 == len(buf):
                return _INCOMPLETE, False
            if buf[i + 2] == _VT52_ID[1]:
                return i + 3, False
            return i + 2, True  # Alt+/; the next byte is parsed anew
        return i + 2, True  # Alt+key, or an SS3 key (F1-F4, keypad): its final byte is a key too

    def _skip_string(self, buf: bytes, pos: int) -> int:
        """Skip string content from pos; return where parsing goes on.

        Content is never stored, so an unterminated string costs no memory. Like
        xterm, an ESC that does not start ST ends the string and begins a sequence.
        """
        stop = (_OSC_END if self._string == _OSC_INTRO else _ST_START).search(buf, pos)
        if stop is None:
            return len(buf)
        k = stop.start()
        if buf[k] == _BEL:
            self._string = 0
            return k + 1
        if k + 1 == len(buf):
            self._carry = b"\x1b"  # ST or a new sequence: the next byte tells
            return len(buf)
        self._string = 0
        return k + 2 if buf[k + 1] == _BACKSLASH else k


def _character_end(buf: bytes, pos: int) -> int:
    """End of the character starting at buf[pos]: a UTF-8 lead byte takes its continuations."""
    end = pos + 1
    if buf[pos] >= 0xC0:
        while end < len(buf) and end - pos < 4 and 0x80 <= buf[end] <= 0xBF:
            end += 1
    return end


def _control_sequence(buf: bytes, start: int) -> tuple[int, bool]:
    """Classify the CSI whose body starts at buf[start]: (index after it, is an action)."""
    body = _CSI_BODY.match(buf, start)
    assert body is not None  # {0,n} always matches
    final_at = body.end()
    if final_at == len(buf):
        return _INCOMPLETE, False
    final = buf[final_at]
    if not 0x40 <= final <= 0x7E:
        # a control byte, a non-ASCII byte or an overlong body: no terminal reports
        # look like this, so it was typed (Alt+[ then keys); the byte is parsed anew
        return final_at, True
    if final == _X10_MOUSE and final_at == start:
        if len(buf) < final_at + 4:
            return _INCOMPLETE, False
        return final_at + 4, not _is_hover(buf[final_at + 1] - 32)
    return final_at + 1, _csi_is_action(buf[start:final_at], final)


def _csi_is_action(body: bytes, final: int) -> bool:
    """Whether a complete `CSI body final` from a terminal is a person acting."""
    parts = _CSI_PARTS.fullmatch(body)
    if parts is None:
        return True  # a parameter byte after an intermediate: unknown, so a key
    params, intermediates = parts.groups()
    marker = params[:1]
    if marker in _REPORT_MARKERS:
        return False  # DA1-3, DECRPM, DECXCPR, kitty flags, XTQMODKEYS, ...: no key uses these
    if marker == b"<":  # SGR mouse
        sgr = _MOUSE_REPORT.fullmatch(params, 1)
        return not (sgr and final in b"Mm" and not intermediates and _is_hover(int(sgr[1])))
    if intermediates:
        if intermediates == b"&" and final == ord("w"):  # DECRQLP: locator position report
            return _NUMBERS.fullmatch(params) is None
        return not (intermediates == b"$" and final == ord("y") and _TWO_NUMBERS.fullmatch(params))
    if final in b"IO":
        return params != b""  # focus in / out
    if final == ord("R"):
        # cursor position report; Shift/Ctrl/Alt-F3 (`CSI 1;m R`) looks the same and
        # counts as a report, so polling the cursor never keeps a session alive
        return _TWO_NUMBERS.fullmatch(params) is None
    if final in b"tnx":
        return _NUMBERS.fullmatch(params) is None  # XTWINOPS, DSR and DECREQTPARM reports
    if final == _X10_MOUSE:  # urxvt mouse
        urxvt = _MOUSE_REPORT.fullmatch(params)
        return not (urxvt and _is_hover(int(urxvt[1]) - 32))
    return True  # cursor and function keys, kitty `CSI … u`, paste brackets, unknown


def _is_hover(button: int) -> bool:
    """Mouse motion with no button held (button code without the X10 offset)."""
    # 32 is "motion"; low bits 3 with the extended-button bits (64, 128) clear is "none"
    return button >= 0 and bool(button & 32) and button & 0b1100_0011 == 3
