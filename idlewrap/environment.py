"""The environment this process was started with, as its parent passed it to execve.

`os.environ` is not that: of duplicate names it keeps the first, and the interpreter
changes it before any of our code runs (PEP 538 locale coercion sets LC_CTYPE=C.UTF-8
when the locale is C or POSIX, and `-I` does not stop it). `/proc/self/environ` is the
original block, which setenv() does not touch.
"""

from __future__ import annotations

import os

_at_start: bytes | None = None  # the block, read before the process turned non-dumpable


def keep_start_environment() -> None:
    """Read the block now: once the process is not dumpable, /proc/self/environ is root's."""
    global _at_start
    try:
        with open("/proc/self/environ", "rb") as f:
            _at_start = f.read()
    except OSError:
        _at_start = None


def exec_environment(raw: bytes | None = None) -> dict[str, str]:
    """The environment this process was started with; of duplicate names, the last wins.

    The last, because pam_exec passes the PAM environment first and appends the PAM
    items (PAM_USER, PAM_TYPE, ...) after it: with ``user_readenv=1`` a user's
    ``~/.pam_environment`` can put its own PAM_USER in front. ``raw`` is the
    NUL-separated block; by default ``/proc/self/environ``, read while the process is
    still dumpable (after PR_SET_DUMPABLE 0 it belongs to root; `keep_start_environment`
    reads it ahead of that), else ``os.environ``.
    """
    if raw is None:
        raw = _at_start
    if raw is None:
        try:
            with open("/proc/self/environ", "rb") as f:
                raw = f.read()
        except OSError:
            return dict(os.environ)
    env = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name:
            env[os.fsdecode(name)] = os.fsdecode(value)
    return env
