"""sshd's effective settings for one connection, as sshd itself computes them.

``sshd -T -f CONFIG -C user=U,host=H,addr=A`` applies Include files, Match blocks and
first-value-wins exactly as the daemon does for that connection, which no grep of
sshd_config can. Parsing its output, and sshd's pattern and time syntax, lives here.
"""

from __future__ import annotations

import re
import subprocess
from ipaddress import ip_address, ip_network
from typing import NamedTuple


class SshdError(Exception):
    """sshd could not be run or refused the configuration (one line for the user)."""


class SshdConfig(NamedTuple):
    """``sshd -T`` output: lower-case keywords to their values, one per output line."""

    values: dict[str, list[str]]

    def get(self, key: str, default: str = "") -> str:
        """The first value of ``key`` (keywords are lower case), or ``default``."""
        found = self.values.get(key)
        return found[0] if found else default

    def all(self, key: str) -> list[str]:
        """Every value of a keyword that sshd prints once per entry (acceptenv, allowusers)."""
        return self.values.get(key, [])

    def seconds(self, key: str) -> int | None:
        """A time value in seconds; None for "none", 0 or unset."""
        return sshd_seconds(self.get(key, "none"))


def parse_effective(text: str) -> SshdConfig:
    """Parse ``sshd -T`` output (``keyword value...`` lines)."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            values.setdefault(key.lower(), []).append(value.strip())
    return SshdConfig(values)


class Connection(NamedTuple):
    """The connection ``sshd -T -C`` evaluates Match blocks for (besides the user)."""

    host: str  # client host name (sshd uses the address itself with UseDNS no)
    addr: str  # client address
    laddr: str  # local address and port the connection arrives at
    lport: int

    def spec(self, user: str) -> str:
        """The ``-C`` argument for ``user``."""
        return (f"user={user},host={self.host},addr={self.addr},laddr={self.laddr},"
                f"lport={self.lport}")


def effective_config(sshd: str, config: str, user: str, connection: Connection) -> SshdConfig:
    """Run ``sshd -T`` for ``config`` with Match blocks applied for ``user``'s connection.

    Raises :class:`SshdError` with sshd's own first complaint when it fails.
    """
    argv = [sshd, "-T", "-f", config, "-C", connection.spec(user)]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False,
                                errors="replace", timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SshdError(f"{sshd}: {getattr(err, 'strerror', None) or err}") from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise SshdError(f"{sshd} -T -f {config}: "
                        f"{lines[0] if lines else f'exit status {result.returncode}'}")
    return parse_effective(result.stdout)


_VERSION = re.compile(r"OpenSSH_(\d+)\.(\d+)")


def sshd_version(sshd: str) -> tuple[int, int] | None:
    """OpenSSH's (major, minor) from ``sshd -V``; None if it cannot be told."""
    try:
        result = subprocess.run([sshd, "-V"], capture_output=True, text=True, check=False,
                                errors="replace", timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = _VERSION.search(result.stderr + result.stdout)
    return (int(found[1]), int(found[2])) if found else None


_TIME_PART = re.compile(r"(\d+)([sSmMhHdDwW]?)")
_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def sshd_seconds(text: str) -> int | None:
    """sshd's time format (``600``, ``15m``, ``1h30m``) in seconds; None for none or 0."""
    text = text.strip()
    if text in ("", "none"):
        return None
    total, pos = 0, 0
    while pos < len(text):
        part = _TIME_PART.match(text, pos)
        if part is None:
            return None
        total += int(part[1]) * _TIME_UNITS[part[2].lower()]
        pos = part.end()
    return total or None


def glob_match(pattern: str, name: str) -> bool:
    """sshd's wildcard match: ``*`` and ``?`` only (no character classes)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


def pattern_list_match(name: str, patterns: list[str]) -> bool:
    """sshd's ``match_pattern_list``: any pattern matches and no ``!pattern`` does."""
    matched = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if glob_match(pattern[1:], name):
                return False
        elif glob_match(pattern, name):
            matched = True
    return matched


def channel_timeout(config: SshdConfig, channel_type: str) -> int | None:
    """Seconds after which sshd closes an idle channel of ``channel_type``; None: never.

    ``ChannelTimeout type=interval ...``: the first entry whose pattern matches wins.
    """
    for line in config.all("channeltimeout"):
        for entry in line.split():
            pattern, _, interval = entry.partition("=")
            if glob_match(pattern, channel_type):
                return sshd_seconds(interval)
    return None


def refusal(config: SshdConfig, user: str, uid: int, groups: frozenset[str], *,
            host: str, addr: str) -> str | None:
    """Why sshd refuses this account before any session starts, or None if it lets it in.

    Follows auth.c's allowed_user order: PermitRootLogin no, DenyUsers, AllowUsers,
    DenyGroups, AllowGroups. A shell that does not exist is not checked.
    """
    if uid == 0 and config.get("permitrootlogin") == "no":
        return "PermitRootLogin no"

    def user_listed(key: str) -> bool:
        patterns = " ".join(config.all(key)).split()
        return any(_user_pattern(p, user, host, addr) for p in patterns)

    def group_listed(key: str) -> bool:
        patterns = " ".join(config.all(key)).split()
        return any(pattern_list_match(group, patterns) for group in groups)

    if user_listed("denyusers"):
        return "DenyUsers lists it"
    if config.all("allowusers") and not user_listed("allowusers"):
        return "AllowUsers does not list it"
    if group_listed("denygroups"):
        return "DenyGroups lists one of its groups"
    if config.all("allowgroups") and not group_listed("allowgroups"):
        return "AllowGroups lists none of its groups"
    return None


def _user_pattern(pattern: str, user: str, host: str, addr: str) -> bool:
    """One AllowUsers/DenyUsers entry, ``user`` or ``user@host`` (host: name, address, CIDR)."""
    user_part, _, host_part = pattern.partition("@")
    if not glob_match(user_part, user):
        return False
    if not host_part:
        return True
    try:
        return ip_address(addr) in ip_network(host_part, strict=False)
    except ValueError:
        return glob_match(host_part, host) or glob_match(host_part, addr)
