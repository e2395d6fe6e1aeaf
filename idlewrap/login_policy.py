"""The policy for one login, read and resolved in a short-lived child process.

tomllib, the policy parser and what they import (datetime, string, the trust checks,
ipaddress for the client's address) are needed once, at login, and would stay in the
wrapper's private memory for the whole session: about 0.6 MiB per session
(docs/performance.md, "300 sessions on one host"). A forked child reads the file,
resolves it for the login and hands back plain values (marshal, over a pipe), the
connection's event fields among them; the wrapper never imports the parser. When the child
cannot run or gives nothing usable, the wrapper reads the policy itself: the same
result at the old cost, never a session without its limits.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import select
import signal
import time
from collections.abc import Mapping

from idlewrap.events import connection_fields
from idlewrap.identity import LoginContext, groups_of, parse_ssh_connection
from idlewrap.records import NamedTuple
from idlewrap.settings import Settings

# The child answers in milliseconds. Any process of the user may SIGSTOP it (same uid), so
# a later answer is not waited for: the wrapper reads the policy itself instead.
ANSWER_WITHIN = 2.0

TYPE_CHECKING = False  # not typing's: a session never imports typing (records.py)
if TYPE_CHECKING:
    from idlewrap.identity import SessionKind


class LoginPolicy(NamedTuple):
    """What a login needs of the policy file: its settings and where they came from."""

    settings: Settings
    sources: dict[str, str]  # setting -> rule label, "global" or "default"
    rule: str | None  # the first rule that matched
    problems: list[str]  # each problem with the file, as `idlewrap check` prints it
    log_socket: str
    watchdog_socket: str
    connection: dict[str, object]  # rhost, rport, conn: events.connection_fields


class Login(NamedTuple):
    """Who logs in: what the policy's rules select on, but the groups and the address."""

    user: str
    uid: int
    session: SessionKind
    env: Mapping[str, str]  # SSH_CONNECTION: the client's address


def read_policy(config: str, login: Login) -> LoginPolicy:
    """The policy at `config` resolved for `login`, read in a child; never raises."""
    try:
        r, w = os.pipe()
    except OSError:
        return read_here(config, login)
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return read_here(config, login)
    if pid == 0:  # the child: answer and leave, whatever happens (no traceback, no atexit)
        status = 1
        try:
            os.close(r)
            _send(w, read_here(config, login))
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    try:
        data = _answer(r)
    finally:
        os.close(r)
    if data is None:  # late: stopped (the user may signal it) or stuck; it must not hold us
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if data is not None and status == 0:
        with contextlib.suppress(ValueError, EOFError, TypeError):
            return _received(data)
    return read_here(config, login)


def _answer(fd: int) -> bytes | None:
    """All the child wrote, or None if it did not finish within ANSWER_WITHIN."""
    end = time.monotonic() + ANSWER_WITHIN
    chunks: list[bytes] = []
    while (left := end - time.monotonic()) > 0:
        if not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
    return None


def read_here(config: str, login: Login) -> LoginPolicy:
    """The same, in this process (the child's work, and the fallback)."""
    from idlewrap.policy import load_policy_failsafe, resolve

    policy, problems = load_policy_failsafe(config)
    address, _ = parse_ssh_connection(login.env.get("SSH_CONNECTION"))
    ctx = LoginContext(login.user, login.uid, groups_of(login.user), address, login.session)
    resolved = resolve(policy, ctx)
    return LoginPolicy(resolved.settings, resolved.sources, resolved.rule,
                       [str(p) for p in problems], policy.log_socket, policy.watchdog.socket,
                       connection_fields(login.env))


def _send(fd: int, found: LoginPolicy) -> None:
    data = marshal.dumps((tuple(found.settings), *found[1:]))
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _received(data: bytes) -> LoginPolicy:
    """The child's answer; ValueError, EOFError or TypeError if it is not one."""
    settings, *rest = marshal.loads(data)
    if len(settings) != len(Settings._fields):
        raise ValueError("not a Settings record")
    return LoginPolicy(Settings(*settings), *rest)
