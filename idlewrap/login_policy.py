"""The policy for one login, read and resolved in a short-lived child process.

tomllib, the policy parser and what they import (datetime, string, the trust checks)
are needed once, at login, and would stay in the wrapper's private memory for the
whole session: about 0.3 MiB per session (docs/performance.md, "300 sessions on one
host"). A forked child reads the file, resolves it for the login and hands back plain
values (marshal, over a pipe); the wrapper never imports the parser. When the child
cannot run or gives nothing usable, the wrapper reads the policy itself: the same
result at the old cost, never a session without its limits.
"""

from __future__ import annotations

import contextlib
import marshal
import os
from typing import NamedTuple

from idlewrap.identity import LoginContext
from idlewrap.settings import Settings


class LoginPolicy(NamedTuple):
    """What a login needs of the policy file: its settings and where they came from."""

    settings: Settings
    sources: dict[str, str]  # setting -> rule label, "global" or "default"
    rule: str | None  # the first rule that matched
    problems: list[str]  # each problem with the file, as `idlewrap check` prints it
    log_socket: str
    watchdog_socket: str


def read_policy(config: str, ctx: LoginContext) -> LoginPolicy:
    """The policy at `config` resolved for `ctx`, read in a child; never raises."""
    try:
        r, w = os.pipe()
    except OSError:
        return read_here(config, ctx)
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return read_here(config, ctx)
    if pid == 0:  # the child: answer and leave, whatever happens (no traceback, no atexit)
        status = 1
        try:
            os.close(r)
            _send(w, read_here(config, ctx))
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as answer:
        data = answer.read()
    _, status = os.waitpid(pid, 0)
    if status == 0:
        with contextlib.suppress(ValueError, EOFError, TypeError):
            return _received(data)
    return read_here(config, ctx)


def read_here(config: str, ctx: LoginContext) -> LoginPolicy:
    """The same, in this process (the child's work, and the fallback)."""
    from idlewrap.policy import load_policy_failsafe, resolve

    policy, problems = load_policy_failsafe(config)
    resolved = resolve(policy, ctx)
    return LoginPolicy(resolved.settings, resolved.sources, resolved.rule,
                       [str(p) for p in problems], policy.log_socket, policy.watchdog.socket)


def _send(fd: int, found: LoginPolicy) -> None:
    data = marshal.dumps((tuple(found.settings), *found[1:]))
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _received(data: bytes) -> LoginPolicy:
    """The child's answer; ValueError, EOFError or TypeError if it is not one."""
    settings, sources, rule, problems, log_socket, watchdog_socket = marshal.loads(data)
    if len(settings) != len(Settings._fields):
        raise ValueError("not a Settings record")
    return LoginPolicy(Settings(*settings), sources, rule, problems, log_socket, watchdog_socket)
