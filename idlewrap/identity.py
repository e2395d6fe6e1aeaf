"""Who logged in: user, uid, groups, client address and session kind."""

from __future__ import annotations

import grp
import os
import pwd

from idlewrap.records import NamedTuple

TYPE_CHECKING = False  # not typing's: a session never imports typing (records.py)
if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv6Address
    from typing import Literal

    Address = IPv4Address | IPv6Address
    SessionKind = Literal["interactive", "command"]


SESSION_KINDS: tuple[SessionKind, ...] = ("interactive", "command")


def session_kind(*, command: str | None, tty: bool) -> SessionKind:
    """What the policy's `sessions` selector calls a login.

    `command`: a command without a pty (ssh host CMD, scp, sftp, rsync), timed by
    `command_idle_timeout`. `interactive`: everything in a pty, whatever its command
    (so `ssh -t host bash` is held to `idle_timeout` like `ssh host`), and a login
    shell without one (`ssh -T host`, `ssh host < script`), as it is today.
    """
    return "command" if command is not None and not tty else "interactive"


class LoginContext(NamedTuple):
    """The facts about one login that policy rules select on."""

    user: str
    uid: int
    groups: frozenset[str]  # primary + supplementary group names
    address: Address | None  # client address; None for a local login
    session: SessionKind


class UnknownUserError(KeyError):
    """The account database (passwd, via NSS) does not know this user."""

    def __init__(self, user: str) -> None:
        super().__init__(user)
        self.user = user

    def __str__(self) -> str:
        # KeyError's own str() is the repr of its argument; say what happened instead.
        return f"unknown user {self.user!r}"


def _passwd(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(user)
    except (KeyError, ValueError):  # ValueError: a name with a NUL byte
        raise UnknownUserError(user) from None


def groups_of(user: str) -> frozenset[str]:
    """Names of ``user``'s primary and supplementary groups.

    Group ids without a name in the group database are left out: rules select
    groups by name. Raises :class:`UnknownUserError` for an unknown user.
    """
    entry = _passwd(user)
    names = set()
    for gid in os.getgrouplist(user, entry.pw_gid):
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return frozenset(names)


def parse_ssh_connection(value: str | None) -> tuple[Address | None, int | None]:
    """Client address and port from ``SSH_CONNECTION`` ("cip cport sip sport").

    Anything malformed gives ``(None, None)``: the address is then treated like a
    local login's, which never matches an ``addresses`` selector.
    """
    from ipaddress import ip_address

    fields = (value or "").split()
    if len(fields) != 4:
        return None, None
    try:
        address = ip_address(fields[0])
    except ValueError:
        return None, None
    port = fields[1]
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and 0 < int(port) < 65536):
        return None, None
    return address, int(port)


def login_context(user: str, *, address: Address | None, command: bool) -> LoginContext:
    """Build the :class:`LoginContext` for ``user`` from the system databases.

    ``command``: a command session (a command without a pty, see :func:`session_kind`).

    Raises :class:`UnknownUserError` (a ``KeyError``) for an unknown user.
    """
    entry = _passwd(user)
    return LoginContext(
        user=user,
        uid=entry.pw_uid,
        groups=groups_of(user),
        address=address,
        session="command" if command else "interactive",
    )
