"""The TOML policy: parse, validate (with line numbers), resolve for one login.

Top-level settings are the defaults; ``[[match]]`` rules follow, in order. For each
setting the first matching rule that sets it wins (as in sshd_config); a setting no
matching rule sets comes from the top level, then from the built-in defaults.
The keys themselves, their values and defaults are declared in settings.py; this module
knows only the file's structure and the checks that involve more than one key.
See docs/policy.md for the file format.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import TYPE_CHECKING, Any, NamedTuple

from idlewrap.durations import format_duration
from idlewrap.identity import SESSION_KINDS, LoginContext
from idlewrap.keys import SETTING_KEYS, TABLES, Key, Table, toml_type
from idlewrap.settings import DEFAULTS, Log, Settings, Watchdog
from idlewrap.trust import TrustError, read_trusted

if TYPE_CHECKING:
    from idlewrap.identity import Address


class Overrides(Mapping[str, Any]):
    """The settings one place (the top level or a rule) sets: name -> validated value.

    Attribute access reads like :class:`Settings` (``top.idle_timeout``), None for a key
    not set here; code that must tell "not set" from a value of None uses ``in``.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values = dict(values or {})

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        if name in SETTING_KEYS:
            return self._values.get(name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"Overrides({self._values!r})"


Network = IPv4Network | IPv6Network


class Rule(NamedTuple):
    """One ``[[match]]`` rule: selectors (None: not given) and the settings it sets."""

    label: str
    users: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    addresses: tuple[Network, ...] | None = None
    sessions: frozenset[str] | None = None
    not_users: frozenset[str] = frozenset()
    not_groups: frozenset[str] = frozenset()
    settings: Overrides = Overrides()

    def matches(self, ctx: LoginContext) -> bool:
        """True if every selector given matches ``ctx`` and no exception does."""
        if self.users is not None and ctx.user not in self.users:
            return False
        if self.groups is not None and self.groups.isdisjoint(ctx.groups):
            return False
        if self.sessions is not None and ctx.session not in self.sessions:
            return False
        if self.addresses is not None and not _address_in(ctx.address, self.addresses):
            return False
        return ctx.user not in self.not_users and self.not_groups.isdisjoint(ctx.groups)


def _address_in(address: Address | None, networks: Iterable[Network]) -> bool:
    if address is None:
        return False
    candidates: list[Address] = [address]
    # A dual-stack sshd reports IPv4 clients as ::ffff:a.b.c.d; v4 rules must still match.
    if address.version == 6 and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(a in net for a in candidates for net in networks)


class Problem(NamedTuple):
    """Something wrong (or, with ``warning``, suspicious) in a policy file."""

    path: str
    line: int | None
    message: str
    warning: bool = False

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {'warning: ' if self.warning else ''}{self.message}"


class PolicyError(Exception):
    """A policy that cannot be used; ``problems`` lists every error (and warning) found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


class Policy(NamedTuple):
    """A validated policy: top-level settings, rules in order, and a field per table.

    Each table of keys.TABLES is the field of that name (``log``: ``[log]``).
    """

    top: Overrides
    rules: tuple[Rule, ...]
    log: Log = Log()
    watchdog: Watchdog = Watchdog()
    warnings: tuple[Problem, ...] = ()

    @property
    def log_socket(self) -> str:
        """The syslog socket events go to."""
        return self.log.syslog_socket


BUILTIN_POLICY = Policy(top=Overrides(), rules=())


class Resolved(NamedTuple):
    """Settings for one login, where each came from, and the first matching rule."""

    settings: Settings
    sources: dict[str, str]  # setting -> rule label, "global" or "default"
    rule: str | None
    clamped: bool = False  # warn_before was cut to idle_timeout // 2


def resolve(policy: Policy, ctx: LoginContext) -> Resolved:
    """Effective settings for the login ``ctx``: first matching rule that sets each wins.

    If the winning ``warn_before`` is not shorter than the winning ``idle_timeout``
    (each may come from a different rule), ``warn_before`` becomes ``idle_timeout // 2``:
    a session is never refused or left unguarded over a combination of rules.
    """
    matching = [rule for rule in policy.rules if rule.matches(ctx)]
    places = [(rule.settings, rule.label) for rule in matching] + [(policy.top, "global")]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, key in SETTING_KEYS.items():
        values[name], sources[name] = next(
            ((over[name], label) for over, label in places if name in over),
            (key.default, "default"))
    clamped = values["warn_before"] >= values["idle_timeout"]
    if clamped:
        values["warn_before"] = values["idle_timeout"] // 2
    return Resolved(Settings(**values), sources, matching[0].label if matching else None, clamped)


# ---------------------------------------------------------------- loading

def load_policy(path: str | os.PathLike[str], *, lint: bool = False) -> Policy:
    """Read, trust-check and validate the policy at ``path``; raise :class:`PolicyError`.

    With ``lint``, also warn about what only the running system can tell: users and
    groups the account databases do not know, shells that are not executable files,
    and rules whose ``idle_timeout`` would get ``warn_before`` clamped.
    """
    name = os.fspath(path)
    try:
        data = read_trusted(name)
    except FileNotFoundError:
        raise PolicyError([Problem(name, None, "file not found")]) from None
    except TrustError as err:
        raise PolicyError([Problem(name, None, f"not trusted: {err}")]) from None
    except OSError as err:
        raise PolicyError([Problem(name, None, f"cannot read: {err.strerror or err}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise PolicyError([Problem(name, line, "not valid UTF-8 text")]) from None
    return parse_policy(text, name, lint=lint)


def load_policy_failsafe(path: str | os.PathLike[str]) -> tuple[Policy, list[Problem]]:
    """Like :func:`load_policy`, but never raises.

    A missing, untrusted or invalid file gives :data:`BUILTIN_POLICY` (nothing from a
    broken file is used, not even ``[log]``) plus the problems; a good file gives the
    policy plus its warnings.
    """
    try:
        policy = load_policy(path)
    except PolicyError as err:
        return BUILTIN_POLICY, err.problems
    except Exception as err:  # a bug here must not leave the session unguarded
        return BUILTIN_POLICY, [Problem(os.fspath(path), None, f"internal error: {err!r}")]
    return policy, list(policy.warnings)


_TOML_AT = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


def parse_policy(text: str, path: str = "<policy>", *, lint: bool = False) -> Policy:
    """Validate the policy in ``text`` (no trust check); ``path`` labels the problems.

    Raises :class:`PolicyError` if there is any error; warnings alone do not raise and
    are kept in ``Policy.warnings``. ``lint`` is as for :func:`load_policy`.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PolicyError([_syntax_problem(path, text, str(err))]) from None
    except RecursionError:
        raise PolicyError([Problem(path, None, "TOML syntax error: nested too deeply")]) from None
    return _Parser(path, text, lint).policy(doc)


def _syntax_problem(path: str, text: str, message: str) -> Problem:
    at = _TOML_AT.search(message)
    if at is None:
        return Problem(path, None, f"TOML syntax error: {message}")
    reason = message[: at.start()]
    reason = reason[:1].lower() + reason[1:]
    if at[1] is None:
        return Problem(path, max(1, len(text.splitlines())), f"TOML syntax error: {reason}")
    return Problem(path, int(at[1]), f"TOML syntax error: {reason} (column {at[2]})")


# ---------------------------------------------------------------- validation

class Ordered(NamedTuple):
    """A check across two duration keys of one place: ``shorter`` < ``longer``.

    ``subject`` is the key the message speaks of (and is reported at, where it is set).
    """

    shorter: str
    longer: str
    subject: str

    @property
    def keys(self) -> tuple[str, str]:
        return self.shorter, self.longer


ORDERED = (
    Ordered("warn_before", "idle_timeout", "warn_before"),
    # a locked session ends after terminate_after: the lock comes at idle_timeout
    Ordered("idle_timeout", "terminate_after", "terminate_after"),
)

# the keys of a [[match]] rule that choose logins (idlewrap.manpages documents each)
SELECTORS = ("users", "groups", "addresses", "sessions", "not_users", "not_groups")
_TOP_KEYS = (*SETTING_KEYS, "match", *TABLES)
_RULE_KEYS = ("name", *SELECTORS, *SETTING_KEYS)
_RESERVED_LABELS = ("global", "default")


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    import difflib  # only for broken files: keep it off every login's import time

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Parser:
    """Validates one parsed document, collecting every problem with its line."""

    def __init__(self, path: str, text: str, lint: bool) -> None:
        self.path = path
        self.text = text
        self.lint = lint
        self.problems: list[Problem] = []

    @cached_property
    def lines(self) -> dict[tuple[str, str], int]:
        from idlewrap.toml_lines import key_lines  # only a file with problems needs lines

        return key_lines(self.text)

    def report(self, section: str, key: str, message: str, *, warning: bool = False) -> None:
        """Record a problem at the line of ``key`` in ``section`` (or the nearest known)."""
        line = (self.lines.get((section, key)) or self.lines.get((section, ""))
                or self.lines.get(("", section.partition("#")[0])))
        self.problems.append(Problem(self.path, line, message, warning))

    def policy(self, doc: dict[str, Any]) -> Policy:
        self.unknown_keys(doc, "", _TOP_KEYS, "")
        top = self.overrides(doc, "")
        for order in ORDERED:
            if all(key in top for key in order.keys if key in doc):
                # What a login matching no rule gets: the top level over the built-in defaults.
                self.check_order("", order, top)
        rules = self.rules(doc.get("match"))
        if self.lint:
            self.lint_rule_timeouts(top, rules)
            self.lint_lock(top, rules)
        tables = {name: self.table(name, table, doc.get(name)) for name, table in TABLES.items()}
        self.problems.sort(key=lambda p: p.line or 0)
        if any(not p.warning for p in self.problems):
            raise PolicyError(self.problems)
        return Policy(top, rules, warnings=tuple(self.problems), **tables)

    def unknown_keys(self, table: Mapping[str, Any], section: str, known: Iterable[str],
                     where: str) -> None:
        for key in table:
            if key not in known:
                self.report(section, key, f"unknown key {key!r}{where}{_did_you_mean(key, known)}")

    def values(self, table: Mapping[str, Any], section: str,
               keys: Mapping[str, Key]) -> dict[str, Any]:
        """The valid values ``table`` gives for ``keys``; an invalid one is reported, left out."""
        values = {}
        for name, key in keys.items():
            if name not in table:
                continue
            try:
                values[name] = key.kind.parse(table[name])
            except ValueError as err:
                self.invalid(section, name, str(err))
                continue
            doubt = key.kind.lint(values[name]) if self.lint else None
            if doubt is not None:
                self.report(section, name, f"{name} {doubt}", warning=True)
        return values

    def table(self, name: str, table: Table, value: object) -> Any:
        """The record for a table such as ``[log]``: its defaults, with what the file sets."""
        if value is None:
            return table.record()
        if not isinstance(value, dict):
            self.report("", name, f"{name} must be a table: write [{name}]")
            return table.record()
        self.unknown_keys(value, name, table.keys, f" in [{name}]")
        return table.record(**self.values(value, name, table.keys))

    # -- settings

    def overrides(self, table: Mapping[str, Any], section: str) -> Overrides:
        over = Overrides(self.values(table, section, SETTING_KEYS))
        # A rule must agree with itself; the top level is checked in policy().
        for order in ORDERED:
            if section and all(key in over for key in order.keys):
                self.check_order(section, order, over)
        return over

    def check_order(self, section: str, order: Ordered, place: Overrides) -> None:
        """Report the pair out of order; a key ``place`` does not set has its built-in default.

        A duration that is off (None: ``terminate_after = "off"``) is never out of order.
        """
        values = {key: place[key] if key in place else getattr(DEFAULTS, key)
                  for key in order.keys}
        if None in values.values() or values[order.shorter] < values[order.longer]:
            return
        shown = {key: format_duration(value) if key in place
                 else f"{format_duration(value)}, the built-in default"
                 for key, value in values.items()}
        other, relation = ((order.longer, "shorter") if order.subject == order.shorter
                           else (order.shorter, "longer"))
        self.report(section, order.subject if order.subject in place else other,
                    f"{order.subject} ({shown[order.subject]}) must be {relation} than "
                    f"{other} ({shown[other]})")

    def invalid(self, section: str, key: str, message: str) -> None:
        self.report(section, key, f"{key}: {message}")

    def wrong_type(self, section: str, key: str, value: object, expected: str) -> None:
        self.invalid(section, key, f"must be {expected}, not {toml_type(value)}")

    # -- rules

    def rules(self, value: object) -> tuple[Rule, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
            self.report("", "match", "match must be a list of rules: write [[match]] "
                        "before each rule")
            return ()
        return tuple(self.rule(table, index) for index, table in enumerate(value, 1))

    def rule(self, table: dict[str, Any], index: int) -> Rule:
        section = f"match#{index}"
        label = f"match[{index}]"
        self.unknown_keys(table, section, _RULE_KEYS, f" in {label}")
        name = table.get("name")
        if name is not None:
            if not isinstance(name, str):
                self.wrong_type(section, "name", name, "a string")
            elif not name.strip() or not name.isprintable():
                self.invalid(section, "name", "must be a non-empty line of printable text")
            elif name in _RESERVED_LABELS:
                self.invalid(section, "name", f"{name!r} is reserved (it labels top-level and "
                             "built-in values)")
            else:
                label = name
        addresses = self.names(table, section, "addresses")
        sessions = self.names(table, section, "sessions")
        return Rule(
            label=label,
            users=self.accounts(table, section, "users"),
            groups=self.accounts(table, section, "groups"),
            addresses=None if addresses is None else self.networks(addresses, section),
            sessions=None if sessions is None else self.sessions(sessions, section),
            not_users=self.accounts(table, section, "not_users") or frozenset(),
            not_groups=self.accounts(table, section, "not_groups") or frozenset(),
            settings=self.overrides(table, section),
        )

    def names(self, table: Mapping[str, Any], section: str, key: str) -> list[str] | None:
        """A selector's entries (a string or an array of strings), or None if absent."""
        if key not in table:
            return None
        value = table[key]
        entries = [value] if isinstance(value, str) else value
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            self.wrong_type(section, key, value, "a string or an array of strings")
            return []
        if not entries or not all(entries):
            self.invalid(section, key, "must not be empty")
        return entries

    def accounts(self, table: Mapping[str, Any], section: str, key: str) -> frozenset[str] | None:
        entries = self.names(table, section, key)
        if entries is None:
            return None
        if self.lint:
            is_user = key.endswith("users")
            for entry in entries:
                if entry and not _known(entry, is_user):
                    kind = "user" if is_user else "group"
                    self.report(section, key, f"{key}: unknown {kind} {entry!r}", warning=True)
        return frozenset(entries)

    def networks(self, entries: list[str], section: str) -> tuple[Network, ...]:
        networks = []
        for entry in entries:
            try:
                networks.append(ip_network(entry))
            except ValueError:
                try:
                    loose = ip_network(entry, strict=False)
                except ValueError:
                    self.invalid(section, "addresses",
                                 f"{entry!r} is not an IP address or CIDR network")
                else:
                    self.invalid(section, "addresses",
                                 f"{entry} has host bits set (did you mean {loose}?)")
        return tuple(networks)

    def sessions(self, entries: list[str], section: str) -> frozenset[str]:
        for entry in entries:
            if entry not in SESSION_KINDS:
                self.invalid(section, "sessions", f"{entry!r} is not a session kind: use "
                             f"\"interactive\" or \"command\"{_did_you_mean(entry, SESSION_KINDS)}")
        return frozenset(entries)

    def lint_rule_timeouts(self, top: Overrides, rules: tuple[Rule, ...]) -> None:
        """Warn about rules that set one timeout and, with the other inherited, get clamped."""
        base_idle = top.get("idle_timeout", DEFAULTS.idle_timeout)
        base_warn = top.get("warn_before", DEFAULTS.warn_before)
        for index, rule in enumerate(rules, 1):
            own_idle, own_warn = rule.settings.get("idle_timeout"), rule.settings.get("warn_before")
            if (own_idle is None) == (own_warn is None):
                continue
            idle = base_idle if own_idle is None else own_idle
            warn = base_warn if own_warn is None else own_warn
            if warn >= idle:
                key, other = (("warn_before", "idle_timeout") if own_idle is None
                              else ("idle_timeout", "warn_before"))
                shown = {"idle_timeout": format_duration(idle),
                         "warn_before": format_duration(warn)}
                self.report(f"match#{index}", key,
                            f"{rule.label}: {key} {shown[key]} with the inherited {other} "
                            f"{shown[other]} gets warn_before clamped to "
                            f"{format_duration(idle // 2)}", warning=True)

    def lint_lock(self, top: Overrides, rules: tuple[Rule, ...]) -> None:
        """Warn where ``action = "lock"`` cannot lock: no PAM service, or no terminal.

        Command sessions (``ssh host CMD``) have no terminal to lock: there a lock acts as
        ``terminate``. A place is not warned about if a rule before it gives every command
        session its own action (``sessions = "command"`` and no other selector).
        """
        from idlewrap.unlock import PAM_SERVICE_FILE, service_installed  # only for `check`

        places = [("", top, None, len(rules))] + [
            (f"match#{i + 1}", rule.settings, rule, i) for i, rule in enumerate(rules)]
        locking = [place for place in places if place[1].get("action") == "lock"]
        if locking and not service_installed():
            self.report(locking[0][0], "action", f'action "lock": {PAM_SERVICE_FILE} is '
                        "missing: idle sessions are ended instead (install pam/idlewrap there)",
                        warning=True)
        every_command = [i for i, rule in enumerate(rules) if "action" in rule.settings
                         and rule.sessions == frozenset({"command"}) and _only_sessions(rule)]
        for section, _, rule, index in locking:
            if rule is not None and rule.sessions is not None and "command" not in rule.sessions:
                continue
            if any(i < index for i in every_command):
                continue
            self.report(section, "action", 'action "lock": command sessions without a terminal '
                        "(ssh host CMD) cannot be locked and end instead (limit it to "
                        'sessions = "interactive", or give sessions = "command" a rule of its own)',
                        warning=True)


def _only_sessions(rule: Rule) -> bool:
    """The rule selects by session kind alone."""
    return (rule.users is None and rule.groups is None and rule.addresses is None
            and not rule.not_users and not rule.not_groups)


def _known(name: str, is_user: bool) -> bool:
    try:
        if is_user:
            pwd.getpwnam(name)
        else:
            grp.getgrnam(name)
    except (KeyError, ValueError):
        return False
    return True
