"""The policy's keys as a table, read from the rows of settings.py, and the kinds of value.

A kind (:class:`Kind`) says how the file writes a value, how it is checked, and how it is
shown. The validating parser (policy.py), ``idlewrap policy``, the man page and the
docs test read :data:`SETTING_KEYS` and :data:`TABLES`; a session does not import this
module (settings.py says why).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

from idlewrap.durations import format_duration, parse_duration
from idlewrap.records import NamedTuple
from idlewrap.settings import Log, Settings, Watchdog

TYPE_CHECKING = False  # not typing's: the table is built without it (settings.py)
if TYPE_CHECKING:
    from typing import Any


def _no_doubt(_: Any) -> str | None:
    return None


class Kind(NamedTuple):
    """What values a key takes: how they are checked, shown and named in the docs."""

    word: str  # the type column of docs/policy.md
    parse: Callable[[object], Any]  # tomllib's value to ours; ValueError(one-line reason)
    show: Callable[[Any], str]  # as `idlewrap policy` prints it
    # What only the running system can tell (a warning for `idlewrap check`), or None.
    lint: Callable[[Any], str | None] = _no_doubt


_TOML_TYPES = {
    "str": "a string", "int": "an integer", "float": "a float", "bool": "a boolean",
    "list": "an array", "dict": "a table", "datetime": "a date-time", "date": "a date",
    "time": "a time",
}


def toml_type(value: object) -> str:
    """What ``value`` (as tomllib returns it) is, in TOML's words: "an array", "a date"."""
    return _TOML_TYPES.get(type(value).__name__, type(value).__name__)


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {toml_type(value)}")
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be a boolean, not {toml_type(value)}")
    return value


def _positive_integer(value: object) -> int:
    # bool is an int in Python; `true` is not a count in TOML
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"must be a positive integer, not {toml_type(value)}")
    if value < 1:
        raise ValueError(f"{value} is not a positive integer")
    return value


def _absolute_path(value: object) -> str:
    path = _string(value)
    if not path.startswith("/") or "\0" in path:
        raise ValueError(f"{path!r} is not an absolute path")
    return path


def _not_executable(path: str) -> str | None:
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return None
    return f"{path!r} is not an executable file"


_FIELDS = re.compile(r"\{(?:idle|user)\}")
_BRACED = re.compile(r"\{[^{}]*\}|[{}]")


def _template(value: object) -> str:
    """A message template: ``{idle}`` and ``{user}`` and no other braces.

    So that plain substitution and ``str.format`` would read the template the same way.
    """
    text = _string(value)
    other = _BRACED.search(_FIELDS.sub("", text))
    if other is not None:
        raise ValueError(f"{other.group()!r} is not allowed: only {{idle}} and {{user}} expand, "
                         "no other braces")
    return text


def _quoted(text: str) -> str:
    import json  # only `idlewrap policy` shows values: keep it off every login's import time

    return json.dumps(text, ensure_ascii=False)


DURATION = Kind("duration", parse_duration, format_duration)
BOOLEAN = Kind("boolean", _boolean, lambda on: "yes" if on else "no")
COUNT = Kind("positive integer", _positive_integer, str)
TEXT = Kind("string", _string, _quoted)
TEMPLATE = Kind("string", _template, _quoted)
PATH = Kind("absolute path", _absolute_path, str)
EXECUTABLE = PATH._replace(lint=_not_executable)


def optional(kind: Kind, shown: str, *, word: str | None = None) -> Kind:
    """``kind``, or None for "not this": shown as ``shown``, written in the file as ``word``.

    Without ``word`` the file cannot say None (a default only, like ``shell``).
    """

    def parse(value: object) -> Any:
        return None if word is not None and value == word else kind.parse(value)

    return Kind(
        kind.word if word is None else f'{kind.word} or "{word}"',
        parse,
        lambda value: shown if value is None else kind.show(value),
        lambda value: None if value is None else kind.lint(value),
    )


def choice(noun: str, *values: str, not_yet: tuple[str, ...] = ()) -> Kind:
    """One of ``values``; those in ``not_yet`` are reserved and "not supported yet".

    ``noun`` names a value in messages, with its article: "an action".
    """
    use = " or ".join(f'"{v}"' for v in values)

    def parse(value: object) -> str:
        text = _string(value)
        if text in values:
            return text
        if text in not_yet:
            raise ValueError(f'"{text}" is not supported yet (use {use})')
        raise ValueError(f"{text!r} is not {noun}: use {use}")

    return Kind(use, parse, str)


class Key(NamedTuple):
    """One row of the table."""

    name: str
    kind: Kind
    default: Any
    doc: str


class Table(NamedTuple):
    """A table of its own in the policy file (``[log]``): its record type and its keys."""

    record: Callable[..., Any]  # the NamedTuple class; called with the keys the file set
    keys: dict[str, Key]


def keys_of(record: Any) -> dict[str, Key]:
    """The rows declared by the NamedTuple class ``record``, by name, in order."""
    rows = {}
    for name in record._fields:
        kind, doc = _hint(record, name).__metadata__
        rows[name] = Key(name, kind, record._field_defaults[name], doc)
    return rows


class _Annotated:
    """``Annotated[int, DURATION, "doc"]`` evaluated without typing: what the table reads of
    typing's, the type and ``__metadata__`` (here ``(DURATION, "doc")``)."""

    def __init__(self, origin: object, *metadata: object) -> None:
        self.__origin__ = origin
        self.__metadata__ = metadata

    def __class_getitem__(cls, params: tuple[object, ...]) -> _Annotated:
        return cls(*params)


def _hint(record: Any, name: str) -> Any:
    """The annotation of field ``name``. A string (``from __future__ import annotations``)
    is evaluated in the module of ``record``, as ``typing.get_type_hints`` does, with the
    kinds of this module (settings.py imports them for mypy only)."""
    hint = record.__annotations__[name]
    if isinstance(hint, str):
        names = {**globals(), **vars(sys.modules[record.__module__]), "Annotated": _Annotated}
        return eval(hint, names)
    return hint


SETTING_KEYS = keys_of(Settings)  # the top level and every [[match]] rule
# each is also a field of policy.Policy
TABLES = {"log": Table(Log, keys_of(Log)), "watchdog": Table(Watchdog, keys_of(Watchdog))}
