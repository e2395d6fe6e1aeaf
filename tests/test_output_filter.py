"""OutputFilter: the program cannot make the terminal send ENQ answerbacks or 8-bit reports."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idlewrap.output_filter import OutputFilter

FAST = settings(max_examples=300, deadline=None)


def terminal_executes(data: bytes) -> list[str]:
    """What a VT100-style parser (xterm, PuTTY) runs of ENQ and S8C1T in `data`.

    C0 controls are executed inside an escape sequence, which then goes on; CAN and
    SUB cancel it, ESC starts a new one.
    """
    ran: list[str] = []
    state, intermediates = "ground", b""
    for byte in data:
        if byte == 0x05:
            ran.append("ENQ")
        elif byte in (0x18, 0x1A):
            state = "ground"
        elif byte == 0x1B:
            state, intermediates = "escape", b""
        elif byte < 0x20:
            pass
        elif state == "escape" and 0x20 <= byte <= 0x2F:
            intermediates += bytes([byte])
        elif state == "escape":
            if intermediates == b" " and byte == ord("G"):
                ran.append("S8C1T")
            state = "ground"
    return ran


def filtered(data: bytes, cuts: list[int] = ()) -> bytes:  # type: ignore[assignment]
    f = OutputFilter()
    bounds = [0, *sorted(cuts), len(data)]
    return b"".join(f.feed(data[a:b]) for a, b in pairwise(bounds))


CASES = {
    "enq": (b"ab\x05cd", b"abcd"),
    "only enq": (b"\x05", b""),
    "s8c1t": (b"x\x1b Gy", b"x\x1b Fy"),
    "s8c1t with a bell inside": (b"\x1b\x07 \x07G", b"\x1b\x07 \x07F"),
    "enq inside s8c1t": (b"\x1b\x05 G", b"\x1b F"),
    "cancelled": (b"\x1b\x18 G", b"\x1b\x18 G"),
    "other sequences": (b"\x1b[1mbold\x1b[m \x1b(B G", b"\x1b[1mbold\x1b[m \x1b(B G"),
    "plain text": (b"Go Go G", b"Go Go G"),
}


@pytest.mark.parametrize(("data", "expected"), CASES.values(), ids=CASES.keys())
def test_filter(data: bytes, expected: bytes) -> None:
    assert filtered(data) == expected
    for cut in range(1, len(data)):
        assert filtered(data, [cut]) == expected, cut


def test_split_after_each_byte() -> None:
    f = OutputFilter()
    assert [f.feed(bytes([b])) for b in b"\x1b \x07G"] == [b"\x1b", b" ", b"\x07", b"F"]
    assert f.feed(b"G") == b"G"  # the sequence is over


def test_text_without_escapes_is_the_same_object() -> None:
    chunk = b"x" * 65536
    assert OutputFilter().feed(chunk) is chunk


ANY = st.lists(st.one_of(st.sampled_from(list(b"\x1b\x1b \x05\x07\x18\x1aGF[m")),
                         st.integers(0, 255)), max_size=80).map(bytes)


@FAST
@given(ANY, st.lists(st.integers(0, 80), max_size=6))
def test_the_terminal_never_runs_enq_or_s8c1t(data: bytes, cuts: list[int]) -> None:
    out = filtered(data, [c for c in cuts if c <= len(data)])
    assert terminal_executes(out) == []


@FAST
@given(ANY, st.lists(st.integers(0, 80), max_size=6))
def test_split_anywhere_same_output(data: bytes, cuts: list[int]) -> None:
    assert filtered(data, [c for c in cuts if c <= len(data)]) == filtered(data)


@FAST
@given(ANY)
def test_only_enq_and_the_final_g_change(data: bytes) -> None:
    out = filtered(data)
    without_enq = data.replace(b"\x05", b"")
    assert len(out) == len(without_enq)
    changed = [(a, b) for a, b in zip(without_enq, out, strict=True) if a != b]
    assert all((a, b) == (ord("G"), ord("F")) for a, b in changed)
    if not terminal_executes(data):
        assert out == data


@FAST
@given(st.lists(ANY, max_size=6))
def test_a_quiet_filter_passes_a_chunk_without_esc_or_enq_unchanged(chunks: list[bytes]) -> None:
    # The relay skips the filter for such chunks while it is quiet: that must change nothing.
    f = OutputFilter()
    for chunk in chunks:
        if f.quiet and 0x1B not in chunk and 0x05 not in chunk:
            assert f.feed(chunk) == chunk
            assert f.quiet
        else:
            f.feed(chunk)
