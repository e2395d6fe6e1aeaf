"""Durations: ``90``, ``"90s"``, ``"10m"``, ``"1h30m"``, ``"1d"`` to seconds and back.

Grammar: a whole number of seconds (an int, or a string of ASCII digits), or one or
more ``<digits><unit>`` parts with units ``d``, ``h``, ``m``, ``s`` in that order, each
at most once (``"1h30m"``, ``"2d12h"``). No spaces, no signs, no fractions, lower case
only. The value must be at least 1 second and at most :data:`MAX_SECONDS` (7 days):
anything longer is almost certainly a typo, and an idle limit of a week or more is not
an idle limit (use ``exempt = true`` for that).
"""

import re

MAX_SECONDS = 7 * 86400

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_PLAIN = re.compile(r"[0-9]+")
_COMPOUND = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
# Longer digit runs cannot be within MAX_SECONDS; refusing them early also keeps
# int() away from its digit-count limit on hostile input.
_MAX_DIGITS = 12


class DurationError(ValueError):
    """A value that is not a valid duration; the message says why, in one line."""


def parse_duration(value: object) -> int:
    """Return the number of seconds ``value`` stands for.

    Accepts an int (not a bool) or a string in the module's grammar; raises
    :class:`DurationError` for anything else, for zero, and for more than 7 days.
    """
    if isinstance(value, bool):
        raise DurationError(
            "expected a duration like \"15m\" or a number of seconds, got a boolean"
        )
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str):
        seconds = _parse_text(value)
    elif isinstance(value, float):
        raise DurationError(f"{value!r} is not a whole number of seconds (write \"90s\" or \"2m\")")
    else:
        raise DurationError(
            f"expected a duration like \"15m\" or a number of seconds, got {type(value).__name__}"
        )
    if seconds <= 0:
        raise DurationError(f"{value!r} is not positive: a duration must be at least 1 second")
    if seconds > MAX_SECONDS:
        raise DurationError(f"{value!r} is longer than 7 days (use exempt = true for no limit)")
    return seconds


def _parse_text(text: str) -> int:
    if _PLAIN.fullmatch(text):
        return _to_int(text, text)
    match = _COMPOUND.fullmatch(text)
    if not text or match is None:
        raise DurationError(
            f"{text!r} is not a duration: use seconds (\"90\") or units d, h, m, s "
            "in that order (\"1h30m\")"
        )
    return sum(_to_int(part, text) * size
               for part, (_, size) in zip(match.groups(), _UNITS, strict=True)
               if part is not None)


def _to_int(digits: str, text: str) -> int:
    if len(digits.lstrip("0")) > _MAX_DIGITS:
        raise DurationError(f"{text!r} is longer than 7 days (use exempt = true for no limit)")
    return int(digits)


def format_duration(seconds: int) -> str:
    """Render ``seconds`` compactly: ``"45s"``, ``"15m"``, ``"1h30m"``, ``"1d2h"``.

    The result parses back to the same value. Zero renders as ``"0s"``; a negative
    value raises :class:`ValueError`.
    """
    if seconds < 0:
        raise ValueError(f"negative duration: {seconds}")
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
