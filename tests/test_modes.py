"""ModeTracker: the terminal modes a program set, from its output."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idlewrap.modes import MAX_PARAMS, Modes, ModeTracker

FAST = settings(max_examples=200, deadline=None)
DEFAULT = Modes()


def track(*chunks: bytes) -> Modes:
    tracker = ModeTracker()
    for chunk in chunks:
        tracker.feed(chunk)
    return tracker.snapshot()


def track_pieces(data: bytes, cuts: list[int]) -> Modes:
    bounds = [0, *sorted(cuts), len(data)]
    return track(*(data[a:b] for a, b in pairwise(bounds)))


# -- each mode ------------------------------------------------------------------------------------

SET = {
    "alt 47": (b"\x1b[?47h", Modes(alt_screen=47)),
    "alt 1047": (b"\x1b[?1047h", Modes(alt_screen=1047)),
    "alt 1049": (b"\x1b[?1049h", Modes(alt_screen=1049)),
    "cursor hidden": (b"\x1b[?25l", Modes(cursor_visible=False)),
    "mouse x10": (b"\x1b[?9h", Modes(mouse_tracking=9)),
    "mouse normal": (b"\x1b[?1000h", Modes(mouse_tracking=1000)),
    "mouse highlight": (b"\x1b[?1001h", Modes(mouse_tracking=1001)),
    "mouse button": (b"\x1b[?1002h", Modes(mouse_tracking=1002)),
    "mouse any": (b"\x1b[?1003h", Modes(mouse_tracking=1003)),
    "utf-8 mouse": (b"\x1b[?1005h", Modes(mouse_encoding=1005)),
    "sgr mouse": (b"\x1b[?1006h", Modes(mouse_encoding=1006)),
    "urxvt mouse": (b"\x1b[?1015h", Modes(mouse_encoding=1015)),
    "sgr pixel mouse": (b"\x1b[?1016h", Modes(mouse_encoding=1016)),
    "focus": (b"\x1b[?1004h", Modes(focus_events=True)),
    "bracketed paste": (b"\x1b[?2004h", Modes(bracketed_paste=True)),
    "cursor keys": (b"\x1b[?1h", Modes(app_cursor_keys=True)),
    "keypad": (b"\x1b=", Modes(app_keypad=True)),
    "keypad DECNKM": (b"\x1b[?66h", Modes(app_keypad=True)),
}
UNSET = {
    "alt 47": b"\x1b[?47l",
    "alt 1047": b"\x1b[?1047l",
    "alt 1049": b"\x1b[?1049l",
    "cursor hidden": b"\x1b[?25h",
    "mouse x10": b"\x1b[?9l",
    "mouse normal": b"\x1b[?1000l",
    "mouse highlight": b"\x1b[?1001l",
    "mouse button": b"\x1b[?1002l",
    "mouse any": b"\x1b[?1003l",
    "utf-8 mouse": b"\x1b[?1005l",
    "sgr mouse": b"\x1b[?1006l",
    "urxvt mouse": b"\x1b[?1015l",
    "sgr pixel mouse": b"\x1b[?1016l",
    "focus": b"\x1b[?1004l",
    "bracketed paste": b"\x1b[?2004l",
    "cursor keys": b"\x1b[?1l",
    "keypad": b"\x1b>",
    "keypad DECNKM": b"\x1b[?66l",
}


@pytest.mark.parametrize("name", SET)
def test_each_mode_set_and_unset(name: str) -> None:
    enable, expected = SET[name]
    assert track(enable) == expected
    assert track(enable + UNSET[name]) == DEFAULT


@pytest.mark.parametrize("name", SET)
def test_each_mode_split_at_every_position(name: str) -> None:
    enable, expected = SET[name]
    data = b"text\x1b[1;31m" + enable + b"\x1b[0m"
    for cut in range(1, len(data)):
        assert track(data[:cut], data[cut:]) == expected, cut


@pytest.mark.parametrize("name", SET)
def test_restore_and_reset_each_mode(name: str) -> None:
    enable, expected = SET[name]
    tracker = ModeTracker()
    tracker.feed(enable)
    assert track(tracker.restore_sequence()) == expected._replace(alt_screen=0)
    tracker.feed(tracker.reset_sequence())
    assert tracker.snapshot() == DEFAULT


def test_alt_screen_property() -> None:
    tracker = ModeTracker()
    assert not tracker.alt_screen
    tracker.feed(b"\x1b[?1049h")
    assert tracker.alt_screen
    tracker.feed(b"\x1b[?47l")  # any of the three leaves the one alternate screen
    assert not tracker.alt_screen


def test_multiple_parameters() -> None:
    assert track(b"\x1b[?1049;1;25l\x1b[?1049;1;1006;1002h") == Modes(
        alt_screen=1049,
        cursor_visible=False,
        app_cursor_keys=True,
        mouse_tracking=1002,
        mouse_encoding=1006,
    )


def test_empty_and_unknown_parameters_are_ignored() -> None:
    assert track(b"\x1b[?;2004;;7;12345h") == Modes(bracketed_paste=True)
    assert track(b"\x1b[?" + b"9" * 100 + b"h") == DEFAULT


def test_mouse_tracking_is_one_mode() -> None:
    assert track(b"\x1b[?1000h\x1b[?1003h") == Modes(mouse_tracking=1003)
    assert track(b"\x1b[?1003h\x1b[?1000l") == DEFAULT  # xterm: any reset turns it off


def test_mouse_encoding_reset_only_ends_its_own() -> None:
    assert track(b"\x1b[?1015h\x1b[?1006h\x1b[?1015l") == Modes(mouse_encoding=1006)
    assert track(b"\x1b[?1006h\x1b[?1006l") == DEFAULT


def test_ris_resets_everything() -> None:
    everything = b"\x1b[?1049;25;1;1003;1006;1004;2004h\x1b[?25l\x1b="
    assert track(everything) != DEFAULT
    assert track(everything + b"\x1bc") == DEFAULT


def test_decstr_resets_cursor_and_keys_only() -> None:
    everything = b"\x1b[?1049;1;1003;1006;1004;2004h\x1b[?25l\x1b="
    kept = Modes(
        alt_screen=1049,
        mouse_tracking=1003,
        mouse_encoding=1006,
        focus_events=True,
        bracketed_paste=True,
    )
    assert track(everything + b"\x1b[!p") == kept


def test_other_sequences_change_nothing() -> None:
    noise = (
        b"\x1b[1;31mred\x1b[0m\x1b[2J\x1b[H\x1b[4i\x1b[>1c\x1b[?2026$p"
        b"\x1b(B\x1b7\x1b8\x1b[?1049$p\x1b[=1c\x1b[?1049;1s"
    )
    assert track(noise) == DEFAULT


def test_lookalikes_inside_strings_are_ignored() -> None:
    strings = (
        b"\x1b]0;[?1049h title [?25l c = >\x07"
        b"\x1bP1$r[?1h\x1b\\"
        b"\x1b_Ga=T;[?1003h\x1b\\"
        b"\x1b^[?2004h\x1b\\"
        b"\x1bX[?1004h\x1b\\"
    )
    assert track(strings) == DEFAULT


def test_esc_inside_a_string_ends_it_like_xterm() -> None:
    # xterm abandons the string at an ESC that is not ST and runs what follows
    assert track(b"\x1b]2;title\x1b[?1049h\x07") == Modes(alt_screen=1049)
    assert track(b"\x1bPtmux;\x1b\x1b[?25l\x1b\\") == Modes(cursor_visible=False)


def test_string_terminator_is_not_a_mode() -> None:
    assert track(b"\x1b]0;x\x1b\\=") == DEFAULT
    assert track(b"\x1b]0;x\x1b", b"\\c") == DEFAULT


def test_partial_sequence_is_carried() -> None:
    tracker = ModeTracker()
    tracker.feed(b"output\x1b[?10")
    assert tracker.snapshot() == DEFAULT
    tracker.feed(b"49h")
    assert tracker.alt_screen


def test_carry_is_bounded() -> None:
    tracker = ModeTracker()
    tracker.feed(b"\x1b[?")
    for _ in range(MAX_PARAMS):
        tracker.feed(b"1")
        assert len(tracker._carry) <= MAX_PARAMS + 3
    tracker.feed(b"1")
    assert tracker._carry == b""
    tracker.feed(b"h")
    assert tracker.snapshot() == DEFAULT


def test_reset_leaves_screen_with_the_code_that_entered_it() -> None:
    for code in (47, 1047, 1049):
        tracker = ModeTracker()
        tracker.feed(b"\x1b[?%dh" % code)
        assert tracker.reset_sequence().startswith(b"\x1b[?%dl" % code)
    assert b"1049" not in ModeTracker().reset_sequence()  # 1049l would move the cursor


def test_restore_of_defaults_is_empty() -> None:
    assert ModeTracker().restore_sequence() == b""


def test_restore_never_switches_screens() -> None:
    tracker = ModeTracker()
    tracker.feed(b"\x1b[?2004h\x1b=\x1b[?25l\x1b[?1049h")
    assert b"1049" not in tracker.restore_sequence()
    assert track(tracker.restore_sequence()) == Modes(
        cursor_visible=False, app_keypad=True, bracketed_paste=True
    )


# -- properties -----------------------------------------------------------------------------------

TRACKED = (1, 9, 25, 47, 66, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1015, 1016, 1047, 1049, 2004)
codes = st.sampled_from([*TRACKED, 0, 7, 12])  # and a few that are not tracked
decset = st.builds(
    lambda cs, action: b"\x1b[?" + b";".join(b"%d" % c for c in cs) + action,
    st.lists(codes, min_size=1, max_size=4),
    st.sampled_from([b"h", b"l"]),
)
fragments = st.one_of(
    decset,
    st.sampled_from([b"\x1b=", b"\x1b>", b"\x1bc", b"\x1b[!p", b"\x1b[0m", b"\x1b[38;5;1m", b"x"]),
    st.sampled_from([b"\x1b]0;t\x07", b"\x1bPq#0\x1b\\", b"\x1b", b"\x1b[", b"\x1b[?", b"\x07"]),
    st.binary(max_size=6),
)
outputs = st.lists(fragments, max_size=25).map(b"".join)


@st.composite
def split_outputs(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    data = draw(outputs)
    return data, draw(st.lists(st.integers(0, len(data)), max_size=8))


@FAST
@given(split_outputs())
def test_split_anywhere_same_modes(case: tuple[bytes, list[int]]) -> None:
    data, cuts = case
    assert track_pieces(data, cuts) == track(data)


@FAST
@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=8))
def test_random_bytes(data: bytes, cuts: list[int]) -> None:
    assert track_pieces(data, [c for c in cuts if c <= len(data)]) == track(data)


@FAST
@given(outputs)
def test_restore_recreates_modes(data: bytes) -> None:
    tracker = ModeTracker()
    tracker.feed(data)
    restored = track(tracker.restore_sequence())
    for field in Modes._fields:
        expected = getattr(tracker.snapshot() if field in ModeTracker.RESTORED else DEFAULT, field)
        assert getattr(restored, field) == expected, field


@FAST
@given(outputs)
def test_reset_reaches_defaults(data: bytes) -> None:
    tracker = ModeTracker()
    tracker.feed(data)
    tracker.feed(tracker.reset_sequence())
    assert tracker.snapshot() == DEFAULT


def test_modes_are_hashable() -> None:
    assert len({DEFAULT, DEFAULT._replace(), Modes(alt_screen=47)}) == 2


@FAST
@given(st.lists(st.one_of(outputs, st.binary(max_size=40)), max_size=8))
def test_a_quiet_tracker_ignores_a_chunk_without_esc(chunks: list[bytes]) -> None:
    # The relay skips the tracker for such chunks while it is quiet: that must change nothing.
    tracker = ModeTracker()
    for chunk in chunks:
        if tracker.quiet and 0x1B not in chunk:
            before = tracker.snapshot()
            tracker.feed(chunk)
            assert tracker.snapshot() == before
            assert tracker.quiet
        else:
            tracker.feed(chunk)
