"""Read a PAM service file the way libpam does: lines, brackets, includes.

A line is ``[-]type control module [args...]``; a control or an argument may be a
``[...]`` group with spaces inside; ``#`` starts a comment; a backslash at the end of a
line continues it. ``@include FILE`` pulls in every line of FILE, and a control of
``include`` or ``substack`` pulls in FILE's lines of the same type. Relative names are
looked up in /etc/pam.d, whatever directory the service file itself is in.
"""

from __future__ import annotations

import os
from typing import NamedTuple

PAM_DIR = "/etc/pam.d"
_MAX_DEPTH = 16  # libpam's own include nesting limit is of this order


class PamError(Exception):
    """A service file that cannot be read (one line for the user)."""


class PamLine(NamedTuple):
    """One rule of a PAM stack, and where it was written."""

    path: str
    number: int
    type: str  # auth, account, session, password (a leading "-" removed)
    control: str
    module: str  # as written: "pam_env.so" or a full path
    args: tuple[str, ...]

    @property
    def module_name(self) -> str:
        """The module's file name, e.g. ``pam_env.so``."""
        return os.path.basename(self.module)

    def where(self) -> str:
        """``PATH:LINE``, for findings."""
        return f"{self.path}:{self.number}"


def split_words(line: str) -> list[str]:
    """Split a PAM line into words; ``[...]`` is one word, ``\\]`` stays inside it."""
    words: list[str] = []
    pos = 0
    while pos < len(line):
        if line[pos].isspace():
            pos += 1
            continue
        if line[pos] == "[":
            end = pos + 1
            while end < len(line) and line[end] != "]":
                end += 2 if line[end] == "\\" else 1
            words.append(line[pos:end + 1].replace("\\]", "]"))
            pos = end + 1
            continue
        end = pos
        while end < len(line) and not line[end].isspace():
            end += 1
        words.append(line[pos:end])
        pos = end
    return words


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each rule: comments cut, continuations joined."""
    result: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0]
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            result.append((start, pending.strip()))
        pending = ""
    if pending.strip():
        result.append((start, pending.strip()))
    return result


def read_stack(path: str, *, pam_dir: str = PAM_DIR, only_type: str | None = None,
               depth: int = 0) -> list[PamLine]:
    """Every rule of the service file at ``path``, includes followed, in order.

    Raises :class:`PamError` if ``path`` cannot be read. An included file that cannot be
    read contributes nothing (libpam logs it and carries on with the rest).
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as err:
        raise PamError(f"{path}: {err.strerror or err}") from None
    rules: list[PamLine] = []
    for number, line in logical_lines(text):
        words = split_words(line)
        if words[0] == "@include":
            if len(words) > 1:
                rules += _included(words[1], pam_dir, only_type, depth)
            continue
        if len(words) < 3:
            continue
        kind = words[0].lstrip("-").lower()
        if only_type is not None and kind != only_type:
            continue
        if words[1] in ("include", "substack"):
            rules += _included(words[2], pam_dir, kind, depth)
            continue
        rules.append(PamLine(path, number, kind, words[1], words[2], tuple(words[3:])))
    return rules


def _included(name: str, pam_dir: str, only_type: str | None, depth: int) -> list[PamLine]:
    if depth >= _MAX_DEPTH:
        return []
    target = name if name.startswith("/") else os.path.join(pam_dir, name)
    try:
        return read_stack(target, pam_dir=pam_dir, only_type=only_type, depth=depth + 1)
    except PamError:
        return []


def option(rule: PamLine, name: str) -> str | None:
    """The value of ``name=value`` among a rule's arguments (the last one wins), or None."""
    value = None
    for arg in rule.args:
        key, eq, rest = arg.partition("=")
        if eq and key == name:
            value = rest
    return value


def exec_command(rule: PamLine) -> list[str]:
    """The program and arguments a ``pam_exec.so`` rule runs (after pam_exec's options)."""
    for index, arg in enumerate(rule.args):
        if arg.startswith("/"):
            return list(rule.args[index:])
    return []
