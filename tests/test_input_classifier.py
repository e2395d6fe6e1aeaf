"""InputClassifier: which bytes from the user's terminal are a person acting."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idlewrap.input_classifier import MAX_CSI_BODY, InputClassifier

FAST = settings(max_examples=200, deadline=None)


def classify(data: bytes) -> bool:
    """Feed data in one piece, then let the escape delay pass."""
    c = InputClassifier()
    acted = c.feed(data)
    return c.expire() or acted


def classify_pieces(data: bytes, cuts: list[int]) -> bool:
    """Feed data split at cuts, then let the escape delay pass."""
    c = InputClassifier()
    acted = False
    bounds = [0, *sorted(cuts), len(data)]
    for a, b in pairwise(bounds):
        acted = c.feed(data[a:b]) or acted
    return c.expire() or acted


# -- keys -------------------------------------------------------------------------------------

KEYS = {
    "letter": b"a",
    "utf-8": "é€".encode(),
    "enter": b"\r",
    "ctrl-c": b"\x03",
    "ctrl-space": b"\x00",
    "backspace": b"\x7f",
    "arrow": b"\x1b[A",
    "arrow app mode": b"\x1bOA",
    "ctrl-arrow": b"\x1b[1;5A",
    "f1": b"\x1bOP",
    "f5": b"\x1b[15~",
    "f3 unmodified": b"\x1b[R",
    "shift-tab": b"\x1b[Z",
    "kitty key": b"\x1b[97;5u",
    "kitty key with event type": b"\x1b[97;5:1u",
    "modifyOtherKeys": b"\x1b[27;5;9~",
    "win32-input-mode": b"\x1b[65;30;97;1;0;1_",
    "alt-x": b"\x1bx",
    "alt-utf-8": "\x1bé".encode(),
    "alt-arrow": b"\x1b\x1b[A",
    "paste": b"\x1b[200~pasted text\x1b[201~",
    "empty paste": b"\x1b[200~\x1b[201~",
    "sgr click": b"\x1b[<0;10;5M",
    "sgr release": b"\x1b[<0;10;5m",
    "sgr wheel": b"\x1b[<64;10;5M",
    "sgr drag": b"\x1b[<32;10;5M",
    "sgr wheel right": b"\x1b[<67;10;5M",
    "x10 click": b"\x1b[M !!",
    "x10 drag": b"\x1b[M@!!",
    "urxvt click": b"\x1b[32;10;5M",
    "urxvt drag": b"\x1b[64;10;5M",
    "unknown sequence": b"\x1b[5;5;5Q",
    "malformed sequence": b"\x1b[1\rx",
    "alt-[ then a report": b"\x1b[\x1b[I",
    "parameter after intermediate": b"\x1b[1$2y",
    "alt-/ then a letter": b"\x1b/x",
    "alt-/ then alt-z": b"\x1b/\x1bZ",
}


@pytest.mark.parametrize("data", KEYS.values(), ids=KEYS.keys())
def test_keys_are_activity(data: bytes) -> None:
    assert classify(data)
    c = InputClassifier()
    assert c.feed(data)  # no escape delay needed: the sequence is complete
    assert not c.pending


# -- what the terminal sends on its own ----------------------------------------------------------

REPORTS = {
    "focus in": b"\x1b[I",
    "focus out": b"\x1b[O",
    "DA1": b"\x1b[?65;1;2;6;9;15;16;17;18;21;22;28;29c",
    "DA2": b"\x1b[>41;380;0c",
    "DA3 as CSI": b"\x1b[=0c",
    "DA3 as DCS": b"\x1bP!|00000000\x1b\\",
    "DECRPM private": b"\x1b[?2004;2$y",
    "DECRPM ansi": b"\x1b[4;2$y",
    "CPR": b"\x1b[24;80R",
    "CPR at 1;2 (also Shift-F3)": b"\x1b[1;2R",
    "DECXCPR": b"\x1b[?24;80;1R",
    "OSC BEL": b"\x1b]11;rgb:0000/0000/0000\x07",
    "OSC ST": b"\x1b]10;rgb:ffff/ffff/ffff\x1b\\",
    "OSC 52": b"\x1b]52;c;aGVsbG8=\x07",
    "XTGETTCAP": b"\x1bP1+r436f=1b5b48\x1b\\",
    "DECRQSS": b"\x1bP1$r0;1m\x1b\\",
    "XTVERSION": b"\x1bP>|XTerm(388)\x1b\\",
    "APC kitty graphics": b"\x1b_Gi=1;OK\x1b\\",
    "text area chars": b"\x1b[8;24;80t",
    "text area pixels": b"\x1b[4;480;640t",
    "open": b"\x1b[1t",
    "iconified": b"\x1b[2t",
    "position": b"\x1b[3;10;20t",
    "DSR ok": b"\x1b[0n",
    "kitty flags": b"\x1b[?1u",
    "colour scheme": b"\x1b[?997;1n",
    "sgr motion": b"\x1b[<35;10;5M",
    "sgr motion with shift": b"\x1b[<39;10;5M",
    "x10 motion": b"\x1b[MC!!",
    "x10 motion past column 95": b"\x1b[MC\xff\x80",
    "urxvt motion": b"\x1b[67;10;5M",
    "OSC ended by a new sequence": b"\x1b]11;rgb:0000\x1b[I",
    "DECREQTPARM (PuTTY, xterm)": b"\x1b[2;1;1;112;112;1;0x",
    "DECREQTPARM solicited": b"\x1b[3;1;1;120;120;1;0x",
    "DECRQLP locator report": b"\x1b[1;0;12;40;0&w",
    "DECRQLP locator unavailable": b"\x1b[0&w",
    "VT52 DECID reply": b"\x1b/Z",
}


@pytest.mark.parametrize("data", REPORTS.values(), ids=REPORTS.keys())
def test_terminal_reports_are_not_activity(data: bytes) -> None:
    c = InputClassifier()
    assert not c.feed(data)
    assert not c.pending
    assert not c.expire()


@pytest.mark.parametrize("data", REPORTS.values(), ids=REPORTS.keys())
def test_report_split_at_every_position(data: bytes) -> None:
    for cut in range(1, len(data)):
        c = InputClassifier()
        assert not c.feed(data[:cut])
        assert c.pending
        assert not c.feed(data[cut:])
        assert not c.pending


@pytest.mark.parametrize("data", KEYS.values(), ids=KEYS.keys())
def test_key_split_at_every_position(data: bytes) -> None:
    for cut in range(1, len(data)):
        assert classify_pieces(data, [cut])


def test_esc_esc_is_the_esc_key_then_a_new_sequence() -> None:
    c = InputClassifier()
    assert c.feed(b"\x1b\x1b")  # Alt+Esc, or Esc then a sequence: the first ESC is a key
    assert c.pending
    assert c.expire()


def test_key_among_reports() -> None:
    c = InputClassifier()
    assert not c.feed(b"\x1b[I\x1b[24;80R")
    assert c.feed(b"\x1b[Ix\x1b[O")


def test_report_does_not_hide_following_key() -> None:
    assert InputClassifier().feed(b"\x1b]11;rgb:0/0/0\x07q")
    assert InputClassifier().feed(b"\x1bP1$r0m\x1b\\q")
    assert InputClassifier().feed(b"\x1b[MC!!q")


# -- escape delay ---------------------------------------------------------------------------------


def test_lone_esc_waits_then_is_the_esc_key() -> None:
    c = InputClassifier()
    assert not c.feed(b"\x1b")
    assert c.pending
    assert c.expire()
    assert not c.pending
    assert not c.expire()


def test_esc_then_rest_of_sequence() -> None:
    c = InputClassifier()
    assert not c.feed(b"\x1b")
    assert not c.feed(b"[I")  # focus in, split after ESC
    assert not c.pending


def test_stalled_sequence_is_a_person() -> None:
    for typed in (b"\x1b[", b"\x1b[1;", b"\x1b[M!", b"\x1b]", b"\x1b]abc", b"\x1bPq\x1b",
                  b"\x1b/"):  # the last is Alt+/, or the start of the VT52 identify reply
        c = InputClassifier()
        assert not c.feed(typed)
        assert c.pending
        assert c.expire(), typed


def test_after_expire_keys_count_again() -> None:
    c = InputClassifier()
    c.feed(b"\x1b]")  # Alt+]
    assert c.expire()
    assert c.feed(b"abc")


def test_empty_feed() -> None:
    c = InputClassifier()
    assert not c.feed(b"")
    assert not c.pending


# -- bounds ---------------------------------------------------------------------------------------


def test_unterminated_string_buffers_nothing() -> None:
    c = InputClassifier()
    assert not c.feed(b"\x1b]52;c;")
    for _ in range(1000):
        assert not c.feed(b"A" * 4096)
    assert c.pending
    assert c._carry == b""
    assert not c.feed(b"\x07")
    assert not c.pending


def test_overlong_control_sequence_is_capped() -> None:
    c = InputClassifier()
    assert not c.feed(b"\x1b[?" + b"1" * (MAX_CSI_BODY - 1))
    assert c.pending
    assert len(c._carry) == MAX_CSI_BODY + 2
    assert c.feed(b"1c")  # one byte too long: no terminal report is that long
    assert not c.pending


def test_string_terminator_split() -> None:
    c = InputClassifier()
    assert not c.feed(b"\x1bPq#0\x1b")
    assert c.pending
    assert not c.feed(b"\\")
    assert not c.pending


# -- properties -----------------------------------------------------------------------------------

# Bytes that steer the parser, so random streams reach its states often.
INTERESTING = st.sampled_from(
    list(b"\x1b\x1b\x1b[]P_^X\\\x07M<?>=;0123$ycRtnIOu~\x9b\xc3\x00/Zx&w"))
ANY_BYTE = st.integers(0, 255)
streams = st.lists(st.one_of(INTERESTING, ANY_BYTE), max_size=120).map(bytes)


@st.composite
def split_streams(draw: st.DrawFn, data: st.SearchStrategy[bytes]) -> tuple[bytes, list[int]]:
    raw = draw(data)
    cuts = draw(st.lists(st.integers(0, len(raw)), max_size=8))
    return raw, cuts


@FAST
@given(split_streams(streams))
def test_split_anywhere_same_answer(case: tuple[bytes, list[int]]) -> None:
    data, cuts = case
    assert classify_pieces(data, cuts) == classify(data)


@FAST
@given(streams)
def test_random_bytes_state_stays_bounded(data: bytes) -> None:
    c = InputClassifier()
    for byte in data:
        c.feed(bytes([byte]))
        assert len(c._carry) <= MAX_CSI_BODY + 2


numbers = st.integers(0, 9999).map(lambda n: b"%d" % n)
positions = st.integers(1, 500).map(lambda n: b"%d" % n)
string_body = st.binary(max_size=40)
modifiers = st.sampled_from([0, 4, 8, 16, 28])


def _csi(*parts: bytes) -> bytes:
    return b"\x1b[" + b"".join(parts)


reports = st.one_of(
    st.sampled_from([b"\x1b[I", b"\x1b[O"]),
    st.builds(
        lambda m, ps: _csi(m, b";".join(ps), b"c"),
        st.sampled_from([b"?", b">", b"="]),
        st.lists(numbers, min_size=1, max_size=8),
    ),
    st.builds(lambda a, b: _csi(b"?", a, b";", b, b"$y"), numbers, numbers),
    st.builds(lambda a, b: _csi(a, b";", b, b"$y"), numbers, numbers),
    st.builds(lambda r, c: _csi(r, b";", c, b"R"), positions, positions),
    st.builds(lambda r, c: _csi(b"?", r, b";", c, b";1R"), positions, positions),
    st.builds(
        lambda body, end: b"\x1b]" + body.replace(b"\x1b", b"").replace(b"\x07", b"") + end,
        string_body,
        st.sampled_from([b"\x07", b"\x1b\\"]),
    ),
    st.builds(
        lambda intro, body: b"\x1b" + intro + body.replace(b"\x1b", b"") + b"\x1b\\",
        st.sampled_from([b"P", b"_", b"^", b"X"]),
        string_body,
    ),
    st.builds(
        lambda kind, h, w: _csi(kind, b";", h, b";", w, b"t"),
        st.sampled_from([b"3", b"4", b"5", b"6", b"8", b"9"]),
        numbers,
        numbers,
    ),
    st.sampled_from([b"\x1b[1t", b"\x1b[2t", b"\x1b[0n", b"\x1b/Z"]),
    st.builds(lambda ps: _csi(b";".join(ps), b"x"), st.lists(numbers, max_size=7)),
    st.builds(lambda ps: _csi(b";".join(ps), b"&w"), st.lists(numbers, max_size=5)),
    st.builds(
        lambda m, x, y, f: _csi(b"<%d;" % (35 | m), x, b";", y, f),
        modifiers,
        positions,
        positions,
        st.sampled_from([b"M", b"m"]),
    ),
    st.builds(
        lambda m, x, y: b"\x1b[M" + bytes([32 + (35 | m), 32 + x, 32 + y]),
        modifiers,
        st.integers(1, 223),
        st.integers(1, 223),
    ),
    st.builds(
        lambda m, x, y: _csi(b"%d;" % (32 + (35 | m)), x, b";", y, b"M"),
        modifiers,
        positions,
        positions,
    ),
)


@FAST
@given(split_streams(st.lists(reports, max_size=12).map(b"".join)))
def test_reports_in_any_order_are_never_activity(case: tuple[bytes, list[int]]) -> None:
    data, cuts = case
    assert not classify(data)
    assert not classify_pieces(data, cuts)


printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E).map(str.encode)


@FAST
@given(
    st.lists(reports, max_size=8),
    st.integers(0, 8),
    printable,
    st.lists(st.integers(0, 400), max_size=6),
)
def test_a_key_between_reports_is_activity(
    before: list[bytes], where: int, key: bytes, cuts: list[int]
) -> None:
    parts = [*before]
    parts.insert(min(where, len(parts)), key)
    data = b"".join(parts)
    assert classify(data)
    assert classify_pieces(data, [cut for cut in cuts if cut <= len(data)])
