"""Where each key of a TOML document is, by line: tomllib reports no lines for valid documents.

tomllib gives a line only for syntax errors. A policy that parses but says something
wrong (an unknown key, a bad duration) must still be reported as ``PATH:LINE: ...``, so
this module scans the text once more, just far enough to know which key each statement
starts with and which table it is in. It is not a TOML parser: it trusts that tomllib
accepted the document.
"""

import bisect
import re

_INTERESTING = re.compile(r"[\"'#\[\]{}\n]")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_lines(text: str) -> dict[tuple[str, str], int]:
    """Line of each key: (section, key) to a 1-based line.

    Section "" is the top level, "log" the ``[log]`` table, "match#N" the N-th
    ``[[match]]`` (the N-th of any array of tables); key "" is a table's header line.
    Only meant for documents tomllib accepted.
    """
    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_at(pos: int) -> int:
        return bisect.bisect_left(newlines, pos) + 1

    found: dict[tuple[str, str], int] = {}
    counts: dict[str, int] = {}
    section = ""
    pos, end = 0, len(text)
    while pos < end:
        while pos < end and text[pos] in " \t\r":
            pos += 1
        if pos >= end:
            break
        char = text[pos]
        if char in "#\n":
            pos = _line_end(text, pos) + 1
        elif char == "[":
            array = text.startswith("[[", pos)
            close = text.find("]", pos)
            parts = [_unquote(p) for p in text[pos + (2 if array else 1):close].split(".")]
            name = ".".join(parts)
            first, *rest = parts
            # The header also locates the key it defines in its parent table.
            parent = (first + (f"#{counts[first]}" if first in counts else "")) if rest else ""
            found.setdefault((parent, rest[0] if rest else first), line_at(pos))
            if array and len(parts) == 1:
                counts[name] = counts.get(name, 0) + 1
                name = f"{name}#{counts[name]}"
            section = name
            found.setdefault((section, ""), line_at(pos))
            pos = _line_end(text, pos) + 1
        else:
            found.setdefault((section, _first_key(text, pos)), line_at(pos))
            pos = _statement_end(text, pos) + 1
    return found


def _unquote(part: str) -> str:
    return part.strip().strip("\"'")


def _first_key(text: str, pos: int) -> str:
    if text[pos] in "\"'":
        return _unquote(text[pos:_string_end(text, pos)])
    bare = _BARE_KEY.match(text, pos)
    return bare.group() if bare else ""


def _line_end(text: str, pos: int) -> int:
    newline = text.find("\n", pos)
    return len(text) if newline < 0 else newline


def _statement_end(text: str, pos: int) -> int:
    """Index of the newline ending the key/value statement that starts at ``pos``."""
    depth = 0
    while (m := _INTERESTING.search(text, pos)) is not None:
        char, pos = m.group(), m.start()
        if char in "\"'":
            pos = _string_end(text, pos)
            continue
        if char == "#":
            pos = _line_end(text, pos)
            continue
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif depth <= 0:
            return pos
        pos += 1
    return len(text)


def _string_end(text: str, pos: int) -> int:
    """Index just after the string literal starting at ``pos``."""
    quote = text[pos]
    if text.startswith(quote * 3, pos):
        search = pos + 3
        while (close := text.find(quote * 3, search)) >= 0:
            if quote == '"' and _escaped(text, close):
                search = close + 1
                continue
            close += 3
            # Up to two more quotes may end the content: """a"""" is 'a"'.
            extra = 0
            while extra < 2 and close < len(text) and text[close] == quote:
                close += 1
                extra += 1
            return close
        return len(text)
    index = pos + 1
    while index < len(text) and text[index] not in (quote, "\n"):
        index += 2 if quote == '"' and text[index] == "\\" else 1
    return min(index + 1, len(text))


def _escaped(text: str, pos: int) -> bool:
    backslashes = 0
    while pos - backslashes - 1 >= 0 and text[pos - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1
