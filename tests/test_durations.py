"""Durations: the grammar, the limits, and format/parse round trips."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idlewrap.durations import MAX_SECONDS, DurationError, format_duration, parse_duration


@pytest.mark.parametrize(("value", "seconds"), [
    (90, 90), ("90", 90), ("90s", 90), ("10m", 600), ("1h30m", 5400), ("2h", 7200),
    ("1d", 86400), ("7d", MAX_SECONDS), ("1d2h3m4s", 93784), ("0005m", 300), ("1h0m", 3600),
    ("90m", 5400), (MAX_SECONDS, MAX_SECONDS), (1, 1),
])
def test_parses(value: object, seconds: int) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", [
    0, -1, "0", "0s", "0h0m", "", " 10m", "10m ", "10M", "1m1h", "1.5h", "1h 30m", "10x",
    "1h1h", "10mm", "s", "m1", "+5", "-5", "1e3", "\u0663", "\uff11m", "7d1s", MAX_SECONDS + 1,
    "9" * 5000, "9" * 5000 + "s", True, False, 1.5, 90.0, None, [], {}, b"10m",
])
def test_rejects(value: object) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(value)
    assert "\n" not in str(info.value)


def test_says_why() -> None:
    with pytest.raises(DurationError, match="whole number"):
        parse_duration(1.5)
    with pytest.raises(DurationError, match="longer than 7 days"):
        parse_duration("8d")
    with pytest.raises(DurationError, match="at least 1 second"):
        parse_duration(0)
    with pytest.raises(DurationError, match="boolean"):
        parse_duration(True)


@pytest.mark.parametrize(("seconds", "text"), [
    (45, "45s"), (60, "1m"), (900, "15m"), (5400, "1h30m"), (3601, "1h1s"), (86400, "1d"),
    (90061, "1d1h1m1s"), (0, "0s"),
])
def test_formats(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_rejects_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(-1)


@settings(deadline=None, max_examples=300)
@given(st.integers(min_value=1, max_value=MAX_SECONDS))
def test_round_trip(seconds: int) -> None:
    text = format_duration(seconds)
    assert set(text) <= set("0123456789dhms")
    assert parse_duration(text) == seconds


@settings(deadline=None, max_examples=300)
@given(st.one_of(
    st.text(max_size=20),
    st.text(alphabet="0123456789dhms .-+", max_size=12),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
))
def test_never_raises_anything_else(value: object) -> None:
    try:
        seconds = parse_duration(value)
    except DurationError:
        return
    assert 1 <= seconds <= MAX_SECONDS
    assert isinstance(value, int | str) and not isinstance(value, bool)
