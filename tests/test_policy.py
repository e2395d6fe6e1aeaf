"""The policy: parsing, validation with line numbers, resolution, the fail-safe loader."""

import datetime
import json
import math
import os
import re
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idlewrap import policy as policy_module
from idlewrap import unlock
from idlewrap.durations import parse_duration
from idlewrap.identity import (
    LoginContext,
    UnknownUserError,
    groups_of,
    login_context,
    parse_ssh_connection,
)
from idlewrap.policy import (
    BUILTIN_POLICY,
    Policy,
    PolicyError,
    Problem,
    load_policy,
    load_policy_failsafe,
    parse_policy,
    resolve,
)
from idlewrap.settings import DEFAULTS, SETTING_NAMES
from tests import infra

Address = IPv4Address | IPv6Address


def ctx(user: str = "alice", groups: tuple[str, ...] = (), address: str | None = None,
        session: str = "interactive") -> LoginContext:
    return LoginContext(user, 1000, frozenset(groups), None if address is None
                        else ip_address(address), session)  # type: ignore[arg-type]


def errors(text: str, *, lint: bool = False) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.toml", lint=lint)
    return [str(p) for p in info.value.problems]


STIG = """\
# comment
idle_timeout = "15m"
warn_before = 60

[[match]]
name = "admins"
groups = ["sudo", "wheel", "adm"]
idle_timeout = "10m"

[[match]]
users = "svc"
sessions = "command"
exempt = true

[[match]]
addresses = ["203.0.113.0/24", "2001:db8::/32"]
not_users = ["alice"]
idle_timeout = "5m"
warn_before = "30s"
message = "bye {user} after {idle}"

[log]
syslog_socket = "/run/test-log"
"""


def test_good_document() -> None:
    policy = parse_policy(STIG)
    assert policy.log_socket == "/run/test-log"
    assert policy.top.idle_timeout == 900 and policy.top.warn_before == 60
    assert [r.label for r in policy.rules] == ["admins", "match[2]", "match[3]"]
    assert policy.rules[0].groups == frozenset({"sudo", "wheel", "adm"})
    assert policy.rules[1].users == frozenset({"svc"})
    assert policy.rules[1].sessions == frozenset({"command"})
    assert policy.rules[2].addresses == (ip_network("203.0.113.0/24"), ip_network("2001:db8::/32"))
    assert policy.warnings == ()


def test_empty_document_is_the_builtin_policy() -> None:
    assert parse_policy("") == BUILTIN_POLICY
    resolved = resolve(BUILTIN_POLICY, ctx())
    assert resolved.settings == DEFAULTS
    assert set(resolved.sources.values()) == {"default"}
    assert resolved.rule is None


def test_builtin_defaults() -> None:
    assert DEFAULTS.idle_timeout == 900 and DEFAULTS.warn_before == 60
    assert DEFAULTS.shell is None and not DEFAULTS.exempt and DEFAULTS.bell
    assert DEFAULTS.action == "terminate"
    assert DEFAULTS.message == "idlewrap: session closed after {idle} without input."
    assert BUILTIN_POLICY.log_socket == "/dev/log"


@pytest.mark.parametrize(("login", "expected", "rule"), [
    (ctx("bob", ("adm",)), {"idle_timeout": (600, "admins"), "warn_before": (60, "global")},
     "admins"),
    (ctx("svc", (), session="command"), {"exempt": (True, "match[2]"),
                                         "idle_timeout": (900, "global")}, "match[2]"),
    (ctx("svc", ()), {"exempt": (False, "default")}, None),
    (ctx("bob", (), "203.0.113.7"), {"idle_timeout": (300, "match[3]"),
                                     "message": ("bye {user} after {idle}", "match[3]")},
     "match[3]"),
    (ctx("bob", (), "::ffff:203.0.113.7"), {"idle_timeout": (300, "match[3]")}, "match[3]"),
    (ctx("bob", (), "2001:db8::5"), {"warn_before": (30, "match[3]")}, "match[3]"),
    (ctx("alice", (), "203.0.113.7"), {"idle_timeout": (900, "global")}, None),
    (ctx("bob", ("adm",), "203.0.113.7"), {"idle_timeout": (600, "admins"),
                                           "warn_before": (30, "match[3]")}, "admins"),
    (ctx("bob", ()), {"bell": (True, "default"), "shell": (None, "default")}, None),
])
def test_resolve(login: LoginContext, expected: dict[str, tuple[object, str]],
                 rule: str | None) -> None:
    resolved = resolve(parse_policy(STIG), login)
    for name, (value, source) in expected.items():
        assert (getattr(resolved.settings, name), resolved.sources[name]) == (value, source)
    assert resolved.rule == rule
    assert not resolved.clamped


def test_command_sessions_have_their_own_limit() -> None:
    policy = parse_policy('command_idle_timeout = "15m"\n[[match]]\nsessions = "command"\n'
                          'users = "svc"\ncommand_idle_timeout = "off"\n'
                          'command_activity = "input"\n')
    assert DEFAULTS.command_idle_timeout is None and DEFAULTS.command_activity == "any"
    alice = resolve(policy, ctx("alice", session="command")).settings
    assert (alice.command_idle_timeout, alice.command_activity) == (900, "any")
    svc = resolve(policy, ctx("svc", session="command"))
    assert (svc.settings.command_idle_timeout, svc.settings.command_activity) == (None, "input")
    assert svc.sources["command_idle_timeout"] == "match[1]"
    # an interactive login of svc does not match the rule: the top level applies
    assert resolve(policy, ctx("svc")).settings.command_idle_timeout == 900


def test_local_login_never_matches_addresses() -> None:
    policy = parse_policy('[[match]]\naddresses = ["0.0.0.0/0", "::/0"]\nbell = false\n')
    assert resolve(policy, ctx()).settings.bell
    assert not resolve(policy, ctx(address="192.0.2.1")).settings.bell
    assert not resolve(policy, ctx(address="::1")).settings.bell


def test_not_groups_and_empty_selectors() -> None:
    policy = parse_policy('[[match]]\nnot_groups = "ops"\nbell = false\n[[match]]\nexempt = true\n')
    assert resolve(policy, ctx(groups=("ops",))).settings.bell
    assert resolve(policy, ctx(groups=("ops",))).rule == "match[2]"
    assert not resolve(policy, ctx(groups=("dev",))).settings.bell
    assert resolve(policy, ctx()).settings.exempt


def test_clamp_when_rules_combine_badly() -> None:
    policy = parse_policy('[[match]]\nusers = "a"\nwarn_before = "5m"\n'
                          '[[match]]\nidle_timeout = "4m"\n')
    resolved = resolve(policy, ctx("a"))
    assert (resolved.settings.idle_timeout, resolved.settings.warn_before) == (240, 120)
    assert resolved.clamped
    assert resolved.sources["warn_before"] == "match[1]"
    tiny = resolve(parse_policy('[[match]]\nidle_timeout = 1\n'), ctx())
    assert (tiny.settings.idle_timeout, tiny.settings.warn_before, tiny.clamped) == (1, 0, True)


@pytest.mark.parametrize(("text", "expected"), [
    ('idle_timout = "10m"\n', "p.toml:1: unknown key 'idle_timout' (did you mean 'idle_timeout'?)"),
    ('\n\n[[match]]\nuser = "a"\n', "p.toml:4: unknown key 'user' in match[1] "
     "(did you mean 'users'?)"),
    ('[log]\nsocket = "/dev/log"\n', "p.toml:2: unknown key 'socket' in [log] "
     "(did you mean 'syslog_socket'?)"),
    ('zzz = 1\n', "p.toml:1: unknown key 'zzz'"),
    ('idle_timeout = "10 min"\n', "p.toml:1: idle_timeout: '10 min' is not a duration: "
     "use seconds (\"90\") or units d, h, m, s in that order (\"1h30m\")"),
    ('idle_timeout = 1.5\n', "p.toml:1: idle_timeout: 1.5 is not a whole number of seconds "
     "(write \"90s\" or \"2m\")"),
    ('warn_before = true\n', "p.toml:1: warn_before: expected a duration like \"15m\" or a "
     "number of seconds, got a boolean"),
    ('idle_timeout = "30d"\n', "p.toml:1: idle_timeout: '30d' is longer than 7 days "
     "(use exempt = true for no limit)"),
    ('idle_timeout = "0s"\n', "p.toml:1: idle_timeout: '0s' is not positive: a duration must "
     "be at least 1 second"),
    ('idle_timeout = "10m"\nwarn_before = "10m"\n', "p.toml:2: warn_before (10m) must be "
     "shorter than idle_timeout (10m)"),
    ('idle_timeout = "30s"\n', "p.toml:1: warn_before (1m, the built-in default) must be "
     "shorter than idle_timeout (30s)"),
    ('warn_before = "20m"\n', "p.toml:1: warn_before (20m) must be shorter than "
     "idle_timeout (15m, the built-in default)"),
    ('idle_timeout = "ten"\nwarn_before = "20m"\n', "p.toml:1: idle_timeout: 'ten' is not a "
     "duration: use seconds (\"90\") or units d, h, m, s in that order (\"1h30m\")"),
    ('[[match]]\nidle_timeout = "1m"\n\nwarn_before = "2m"\n', "p.toml:4: warn_before (2m) "
     "must be shorter than idle_timeout (1m)"),
    ('[[match]]\naddresses = "10.0.0.300"\n', "p.toml:2: addresses: '10.0.0.300' is not an IP "
     "address or CIDR network"),
    ('[[match]]\naddresses = ["10.1.2.3/8"]\n', "p.toml:2: addresses: 10.1.2.3/8 has host "
     "bits set (did you mean 10.0.0.0/8?)"),
    ('[[match]]\nsessions = ["interactiv"]\n', "p.toml:2: sessions: 'interactiv' is not a "
     "session kind: use \"interactive\" or \"command\" (did you mean 'interactive'?)"),
    ('[[match]]\nusers = []\n', "p.toml:2: users: must not be empty"),
    ('[[match]]\ngroups = ["a", ""]\n', "p.toml:2: groups: must not be empty"),
    ('[[match]]\nusers = 5\n', "p.toml:2: users: must be a string or an array of strings, "
     "not an integer"),
    ('[[match]]\nnot_users = ["a", 1]\n', "p.toml:2: not_users: must be a string or an array "
     "of strings, not an array"),
    ('bell = "yes"\n', "p.toml:1: bell: must be a boolean, not a string"),
    ('command_idle_timeout = "of"\n', "p.toml:1: command_idle_timeout: 'of' is not a "
     "duration: use seconds (\"90\") or units d, h, m, s in that order (\"1h30m\")"),
    ('[[match]]\ncommand_idle_timeout = false\n', "p.toml:2: command_idle_timeout: expected a "
     "duration like \"15m\" or a number of seconds, got a boolean"),
    ('command_activity = "output"\n', "p.toml:1: command_activity: 'output' is not an "
     "activity: use \"any\" or \"input\""),
    ('exempt = 1\n', "p.toml:1: exempt: must be a boolean, not an integer"),
    ('message = 1979-05-27\n', "p.toml:1: message: must be a string, not a date"),
    ('shell = "bash"\n', "p.toml:1: shell: 'bash' is not an absolute path"),
    ('action = "kill"\n', "p.toml:1: action: 'kill' is not an action: use \"terminate\" or "
     "\"lock\""),
    ('unlock_attempts = 0\n', "p.toml:1: unlock_attempts: 0 is not a positive integer"),
    ('unlock_attempts = "3"\n', "p.toml:1: unlock_attempts: must be a positive integer, "
     "not a string"),
    ('unlock_attempts = true\n', "p.toml:1: unlock_attempts: must be a positive integer, "
     "not a boolean"),
    ('terminate_after = "10m"\n', "p.toml:1: terminate_after (10m) must be longer than "
     "idle_timeout (15m, the built-in default)"),
    ('idle_timeout = "1h"\nterminate_after = "1h"\n', "p.toml:2: terminate_after (1h) must be "
     "longer than idle_timeout (1h)"),
    ('[[match]]\nterminate_after = "5m"\nidle_timeout = "10m"\n', "p.toml:2: terminate_after "
     "(5m) must be longer than idle_timeout (10m)"),
    ('terminate_after = "never"\n', "p.toml:1: terminate_after: 'never' is not a duration: use "
     "seconds (\"90\") or units d, h, m, s in that order (\"1h30m\")"),
    ('message = "bye {name}"\n', "p.toml:1: message: '{name}' is not allowed: only {idle} "
     "and {user} expand, no other braces"),
    ('message = "{user.__class__}"\n', "p.toml:1: message: '{user.__class__}' is not allowed: "
     "only {idle} and {user} expand, no other braces"),
    ('message = "a } b"\n', "p.toml:1: message: '}' is not allowed: only {idle} and {user} "
     "expand, no other braces"),
    ('[[match]]\nname = "default"\n', "p.toml:2: name: 'default' is reserved (it labels "
     "top-level and built-in values)"),
    ('[[match]]\nname = ""\n', "p.toml:2: name: must be a non-empty line of printable text"),
    ('[[match]]\nname = "a\\nb"\n', "p.toml:2: name: must be a non-empty line of printable "
     "text"),
    ('[[match]]\nname = 1\n', "p.toml:2: name: must be a string, not an integer"),
    ('[match]\nusers = "a"\n', "p.toml:1: match must be a list of rules: write [[match]] "
     "before each rule"),
    ('match = [1]\n', "p.toml:1: match must be a list of rules: write [[match]] before each rule"),
    ('log = "x"\n', "p.toml:1: log must be a table: write [log]"),
    ('[log]\nsyslog_socket = "dev/log"\n', "p.toml:2: syslog_socket: 'dev/log' is not an "
     "absolute path"),
    ('a = 1\nb = [1,\n', "p.toml:2: TOML syntax error: invalid value"),
    ('a = 1\nb = 1 2\n', "p.toml:2: TOML syntax error: expected newline or end of document "
     "after a statement (column 7)"),
    ('x = "a\n', "p.toml:1: TOML syntax error: illegal character '\\n' (column 7)"),
])
def test_error_lines(text: str, expected: str) -> None:
    assert errors(text) == [expected]


def test_lines_survive_tricky_toml() -> None:
    text = (
        'message = """\nidle_timeout = 1\n[[match]]\n"""\r\n'  # lines 1-4: one string
        'warning = \'\'\'a "" \'\'\' # [[match]]\n'  # 5
        '"idle_timeout" = "x"\n'  # 6: a quoted key
        '[[match]]\n'  # 7
        'users = [\n  "a", # ]\n  "b",\n]\n'  # 8-11
        'bell = "no"\n'  # 12
        '[[ match ]]\n'  # 13
        'sessions = "x"\n'  # 14
        'match = 1\n'  # 15: inside the second rule: an unknown key there
        '[log]\n'  # 16
        'x.y = 1\n'  # 17
    )
    assert [e.split(": ")[0] for e in errors(text)] == [
        "p.toml:6", "p.toml:12", "p.toml:14", "p.toml:15", "p.toml:17"]


def test_inline_rules_fall_back_to_the_match_line() -> None:
    assert errors('bell = true\nmatch = [{users = "a"}, {bell = 1}]\n') == [
        "p.toml:2: bell: must be a boolean, not an integer"]


def test_every_problem_is_reported_in_line_order() -> None:
    text = 'zzz = 1\n[[match]]\nbell = 1\n[[match]]\nexempt = 2\nsessions = "x"\n'
    assert [e.split(":")[1] for e in errors(text)] == ["1", "3", "5", "6"]


def test_lint_warnings(tmp_path: Path) -> None:
    text = ('[[match]]\nusers = ["root", "iwp-no-such-user"]\ngroups = "iwp-no-such-group"\n'
            'shell = "/nonexistent/sh"\nidle_timeout = "45s"\n')
    assert parse_policy(text).warnings == ()
    warnings = [str(w) for w in parse_policy(text, "p.toml", lint=True).warnings]
    assert warnings == [
        "p.toml:2: warning: users: unknown user 'iwp-no-such-user'",
        "p.toml:3: warning: groups: unknown group 'iwp-no-such-group'",
        "p.toml:4: warning: shell '/nonexistent/sh' is not an executable file",
        "p.toml:5: warning: match[1]: idle_timeout 45s with the inherited warn_before 1m "
        "gets warn_before clamped to 22s",
    ]
    assert [str(w) for w in parse_policy('idle_timeout = "10m"\n[[match]]\nwarn_before = "10m"\n'
                                         '[[match]]\nwarn_before = "9m"\n', "p.toml",
                                         lint=True).warnings] == [
        "p.toml:3: warning: match[1]: warn_before 10m with the inherited idle_timeout 10m "
        "gets warn_before clamped to 5m"]


NO_TERMINAL = ('warning: action "lock": command sessions without a terminal (ssh host CMD) '
               'cannot be locked and end instead (limit it to sessions = "interactive", or give '
               'sessions = "command" a rule of its own)')


def lock_warnings(text: str, monkeypatch: pytest.MonkeyPatch, service: Path) -> list[str]:
    monkeypatch.setattr(unlock, "PAM_SERVICE_FILE", str(service))
    return [str(w) for w in parse_policy(text, "p.toml", lint=True).warnings]


def test_lint_lock_without_the_pam_service(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    text = 'action = "lock"\n[[match]]\nsessions = "command"\naction = "terminate"\n'
    assert lock_warnings(text, monkeypatch, tmp_path / "idlewrap") == [
        f'p.toml:1: warning: action "lock": {tmp_path}/idlewrap is missing: idle sessions are '
        "ended instead (install pam/idlewrap there)"]
    (tmp_path / "idlewrap").write_text("auth required pam_deny.so\n")
    assert lock_warnings(text, monkeypatch, tmp_path / "idlewrap") == []


@pytest.mark.parametrize(("text", "lines"), [
    ('action = "lock"\n', [1]),
    ('[[match]]\nusers = "root"\naction = "lock"\n', [3]),
    ('[[match]]\nsessions = ["interactive", "command"]\naction = "lock"\n', [3]),
    ('[[match]]\nsessions = "interactive"\naction = "lock"\n', []),
    # every command session has its own action first
    ('action = "lock"\n[[match]]\nsessions = "command"\naction = "terminate"\n'
     '[[match]]\nusers = "root"\naction = "lock"\n', []),
    # ... but not before this rule, or not for every command session
    ('[[match]]\nusers = "root"\naction = "lock"\n'
     '[[match]]\nsessions = "command"\naction = "terminate"\n', [3]),
    ('action = "lock"\n[[match]]\nsessions = "command"\nusers = "root"\naction = "terminate"\n',
     [1]),
])
def test_lint_lock_for_command_sessions(text: str, lines: list[int],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    warnings = lock_warnings(text, monkeypatch, Path("/etc/passwd"))  # a file that exists
    assert warnings == [f"p.toml:{line}: {NO_TERMINAL}" for line in lines]


def test_warnings_come_with_errors() -> None:
    assert errors('zzz = 1\n[[match]]\nusers = "iwp-no-such-user"\n', lint=True) == [
        "p.toml:1: unknown key 'zzz'",
        "p.toml:3: warning: users: unknown user 'iwp-no-such-user'",
    ]


def test_problem_str() -> None:
    assert str(Problem("/p", None, "file not found")) == "/p: file not found"
    assert str(Problem("/p", 3, "x", warning=True)) == "/p:3: warning: x"


def test_policy_error_holds_problems() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy("bell = 1\nexempt = 1\n", "p")
    assert len(info.value.problems) == 2
    assert str(info.value) == "p:1: bell: must be a boolean, not an integer\n" \
                              "p:2: exempt: must be a boolean, not an integer"


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    assert len(errors("a = " + "[" * 100_000 + "]" * 100_000 + "\n")) == 1


# ---------------------------------------------------------------- loading from disk


def test_failsafe_missing_file() -> None:
    policy, problems = load_policy_failsafe("/nonexistent-idlewrap-test/p.toml")
    assert policy is BUILTIN_POLICY
    assert problems == [Problem("/nonexistent-idlewrap-test/p.toml", None, "file not found")]


def test_failsafe_survives_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> Policy:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(policy_module, "read_trusted", broken)
    policy, problems = load_policy_failsafe("/p.toml")
    assert policy is BUILTIN_POLICY
    assert [str(p) for p in problems] == ["/p.toml: internal error: ZeroDivisionError('boom')"]


@pytest.mark.root
def test_load_good_file(trusted_dir: Path) -> None:
    path = infra.write_root_file(trusted_dir / "p.toml", STIG)
    assert load_policy(path) == parse_policy(STIG)
    assert load_policy_failsafe(path) == (parse_policy(STIG), [])


@pytest.mark.root
def test_failsafe_broken_file_contributes_nothing(trusted_dir: Path) -> None:
    path = infra.write_root_file(trusted_dir / "p.toml",
                                 'idle_timeout = "5m"\nbel = true\n[log]\nsyslog_socket = "/x"\n')
    policy, problems = load_policy_failsafe(path)
    assert policy is BUILTIN_POLICY and policy.log_socket == "/dev/log"
    assert [str(p) for p in problems] == [
        f"{path}:2: unknown key 'bel' (did you mean 'bell'?)"]


@pytest.mark.root
def test_failsafe_untrusted_file(trusted_dir: Path) -> None:
    path = infra.write_root_file(trusted_dir / "p.toml", STIG, mode=0o666)
    policy, problems = load_policy_failsafe(path)
    assert policy is BUILTIN_POLICY
    assert [str(p) for p in problems] == [
        f"{path}: not trusted: {path} is writable by group and others"]


@pytest.mark.root
def test_load_invalid_utf8(trusted_dir: Path) -> None:
    path = trusted_dir / "p.toml"
    path.write_bytes(b"a = 1\nb = \"\xff\"\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert [str(p) for p in info.value.problems] == [f"{path}:2: not valid UTF-8 text"]


@pytest.mark.root
def test_load_unreadable(trusted_dir: Path) -> None:
    (trusted_dir / "dir.toml").mkdir()
    with pytest.raises(PolicyError, match=r"not trusted: .* a directory, not a regular file"):
        load_policy(trusted_dir / "dir.toml")
    os.mkfifo(trusted_dir / "f")
    with pytest.raises(PolicyError, match="cannot read: Not a directory"):
        load_policy(trusted_dir / "f" / "p.toml")


# ---------------------------------------------------------------- properties


def toml_text(doc: dict[str, Any]) -> str:
    """TOML for ``doc``: scalars and inline values first, then [log], then [[match]]s."""
    lines = [f"{key(k)} = {value(v)}" for k, v in doc.items() if k not in ("log", "match")]
    if isinstance(doc.get("log"), dict):
        lines += ["[log]", *(f"{key(k)} = {value(v)}" for k, v in doc["log"].items())]
    elif "log" in doc:
        lines.insert(0, f"log = {value(doc['log'])}")
    match = doc.get("match")
    if isinstance(match, list) and all(isinstance(t, dict) for t in match):
        for table in match:
            lines += ["[[match]]", *(f"{key(k)} = {value(v)}" for k, v in table.items())]
    elif "match" in doc:
        lines.insert(0, f"match = {value(match)}")
    return "\n".join(lines) + "\n"


def key(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)


def value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(value(x) for x in v) + "]"
    assert isinstance(v, dict)
    return "{" + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + "}"


KNOWN_KEYS = ["idle_timeout", "warn_before", "command_idle_timeout", "command_activity", "shell",
              "message", "warning", "exempt", "action", "unlock_attempts", "terminate_after",
              "bell", "name", "users", "groups",
              "addresses", "sessions", "not_users", "not_groups", "syslog_socket"]
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(min_size=1, max_size=6))
scalars = st.one_of(
    st.integers(min_value=-10, max_value=10**7), st.floats(), st.booleans(),
    st.text(max_size=8), st.datetimes(), st.dates(),
    st.sampled_from(["10m", "1h30m", "90", "45s", "off", "any", "input", "interactive",
                     "command", "10.0.0.0/8",
                     "::1", "10.1.2.3/8", "terminate", "lock", "/bin/sh", "{idle} {user}",
                     "{x}", "root", "alice"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(keys, inner, max_size=3), max_leaves=6)
tables = st.dictionaries(keys, values, max_size=5)
documents = st.builds(
    lambda top, extra: {**top, **extra},
    tables,
    st.fixed_dictionaries({}, optional={"match": st.one_of(st.lists(tables, max_size=3), values),
                                        "log": st.one_of(tables, values)}),
)


@settings(deadline=None, max_examples=200)
@given(documents)
def test_random_documents_never_crash(doc: dict[str, Any]) -> None:
    check_never_crashes(toml_text(doc))


@settings(deadline=None, max_examples=200)
@given(st.one_of(st.text(max_size=60), st.text(alphabet='[]{}"\'=#\n .abc1', max_size=60)))
def test_random_text_never_crashes(text: str) -> None:
    check_never_crashes(text)


def check_never_crashes(text: str) -> None:
    try:
        policy = parse_policy(text, "p.toml", lint=True)
    except PolicyError as err:
        assert err.problems and any(not p.warning for p in err.problems)
        problems = err.problems
    else:
        resolved = resolve(policy, ctx("root", ("root",), "10.1.2.3"))
        assert set(resolved.sources) == set(SETTING_NAMES)
        problems = list(policy.warnings)
    for problem in problems:
        assert "\n" not in str(problem) and str(problem).startswith("p.toml")


USERS = ["alice", "bob", "carol"]
GROUPS = ["adm", "dev", "ops"]
NETWORKS = ["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32", "10.1.2.3", "::1"]
CLIENTS = [None, "10.1.2.3", "10.200.0.1", "192.168.1.5", "8.8.8.8", "::ffff:10.1.2.3",
           "::ffff:8.8.8.8", "2001:db8::1", "::1"]
SETTING_VALUES: dict[str, list[Any]] = {
    "idle_timeout": [60, "5m", "10m", "1h"],
    "warn_before": ["30s", 45, "2m"],
    "command_idle_timeout": ["off", "2m", 30],
    "command_activity": ["any", "input"],
    "shell": ["/bin/sh", "/bin/bash"],
    "message": ["bye {user}", "idle {idle}"],
    "warning": ["careful", "soon"],
    "exempt": [True, False],
    "action": ["terminate", "lock"],
    "unlock_attempts": [1, 3],
    "terminate_after": ["off", "2h"],  # longer than every idle_timeout here
    "bell": [True, False],
}


def one_or_list(pool: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(pool), st.lists(st.sampled_from(pool), min_size=1,
                                                      max_size=3))


def setting_tables(*, top: bool) -> st.SearchStrategy[dict[str, Any]]:
    pools = dict(SETTING_VALUES, idle_timeout=["5m", "10m", "1h"]) if top else SETTING_VALUES
    table = st.fixed_dictionaries({}, optional={k: st.sampled_from(v) for k, v in pools.items()})

    def valid(t: dict[str, Any]) -> dict[str, Any]:
        # Only keep warn_before when the table itself would accept it.
        if "idle_timeout" in t and "warn_before" in t and \
                parse_duration(t["warn_before"]) >= parse_duration(t["idle_timeout"]):
            del t["warn_before"]
        return t

    return table.map(valid)


SELECTORS = {
    "users": one_or_list(USERS), "groups": one_or_list(GROUPS),
    "addresses": one_or_list(NETWORKS),
    "sessions": one_or_list(["interactive", "command"]),
    "not_users": one_or_list(USERS), "not_groups": one_or_list(GROUPS),
}
# At most two selectors per rule, so that rules match often enough to matter.
selector_tables = st.builds(
    lambda sel, name: {**sel, **name},
    st.lists(st.sampled_from(sorted(SELECTORS)), max_size=2, unique=True).flatmap(
        lambda names: st.fixed_dictionaries({n: SELECTORS[n] for n in names})),
    st.fixed_dictionaries({}, optional={"name": st.sampled_from(["r-one", "r two"])}),
)
rules = st.builds(lambda sel, sets: {**sel, **sets}, selector_tables, setting_tables(top=False))
logins = st.builds(ctx, st.sampled_from(USERS), st.lists(st.sampled_from(GROUPS), max_size=3)
                   .map(tuple), st.sampled_from(CLIENTS), st.sampled_from(["interactive",
                                                                           "command"]))


def as_list(v: str | list[str]) -> list[str]:
    return [v] if isinstance(v, str) else v


def reference_matches(rule: dict[str, Any], login: LoginContext) -> bool:
    """Every selector given matches; a list matches if any entry does."""
    def address_ok() -> bool:
        if login.address is None:
            return False
        forms: list[Address] = [login.address]
        if isinstance(login.address, IPv6Address) and login.address.ipv4_mapped:
            forms.append(login.address.ipv4_mapped)
        return any(a in ip_network(n) for a in forms for n in as_list(rule["addresses"]))

    checks: dict[str, Callable[[], bool]] = {
        "users": lambda: login.user in as_list(rule["users"]),
        "groups": lambda: bool(login.groups & set(as_list(rule["groups"]))),
        "addresses": address_ok,
        "sessions": lambda: login.session in as_list(rule["sessions"]),
        "not_users": lambda: login.user not in as_list(rule["not_users"]),
        "not_groups": lambda: not login.groups & set(as_list(rule["not_groups"])),
    }
    return all(check() for name, check in checks.items() if name in rule)


def normal(name: str, v: Any) -> Any:
    if name in ("terminate_after", "command_idle_timeout") and v == "off":
        return None
    return parse_duration(v) if name.endswith(("idle_timeout", "warn_before", "after")) else v


@settings(deadline=None, max_examples=250)
@given(setting_tables(top=True), st.lists(rules, max_size=5), logins)
def test_resolve_matches_reference(top: dict[str, Any], rule_list: list[dict[str, Any]],
                                   login: LoginContext) -> None:
    if "warn_before" in top and "idle_timeout" not in top and parse_duration(top["warn_before"]) \
            >= DEFAULTS.idle_timeout:
        del top["warn_before"]
    resolved = resolve(parse_policy(toml_text({**top, "match": rule_list})), login)
    matching = [(i, r) for i, r in enumerate(rule_list, 1) if reference_matches(r, login)]
    expected: dict[str, Any] = {}
    for name in SETTING_NAMES:
        winner = next(((r.get("name", f"match[{i}]"), normal(name, r[name]))
                       for i, r in matching if name in r), None)
        if winner is None:
            winner = ("global", normal(name, top[name])) if name in top else \
                ("default", getattr(DEFAULTS, name))
        assert resolved.sources[name] == winner[0]
        expected[name] = winner[1]
    clamped = expected["warn_before"] >= expected["idle_timeout"]
    if clamped:
        expected["warn_before"] = expected["idle_timeout"] // 2
    assert resolved.settings._asdict() == expected
    assert resolved.clamped == clamped
    assert resolved.settings.warn_before < resolved.settings.idle_timeout
    assert resolved.rule == (matching[0][1].get("name", f"match[{matching[0][0]}]")
                             if matching else None)


# ---------------------------------------------------------------- identity (the resolver's input)


@pytest.mark.parametrize(("value", "expected"), [
    ("203.0.113.5 52814 192.0.2.1 22", (ip_address("203.0.113.5"), 52814)),
    ("2001:db8::7 1022 2001:db8::1 22", (ip_address("2001:db8::7"), 1022)),
    ("::ffff:10.1.2.3 65535 ::ffff:10.0.0.1 22", (ip_address("::ffff:10.1.2.3"), 65535)),
    (None, (None, None)), ("", (None, None)), ("203.0.113.5 52814 192.0.2.1", (None, None)),
    ("host 52814 192.0.2.1 22", (None, None)), ("203.0.113.5 0 192.0.2.1 22", (None, None)),
    ("203.0.113.5 65536 192.0.2.1 22", (None, None)), ("203.0.113.5 -1 a b", (None, None)),
    ("203.0.113.5 \u0663 a b", (None, None)), ("1.2.3.4 " + "9" * 5000 + " a b", (None, None)),
])
def test_parse_ssh_connection(value: str | None, expected: tuple[object, object]) -> None:
    assert parse_ssh_connection(value) == expected


@settings(deadline=None, max_examples=200)
@given(st.one_of(st.none(), st.text(max_size=40),
                 st.lists(st.sampled_from(["1.2.3.4", "::1", "22", "x", "-1", "70000"]),
                          max_size=5).map(" ".join)))
def test_parse_ssh_connection_never_raises(value: str | None) -> None:
    address, port = parse_ssh_connection(value)
    assert (address is None) == (port is None)
    assert port is None or 0 < port < 65536


def test_login_context_for_root() -> None:
    login = login_context("root", address=ip_address("192.0.2.1"), command=True)
    assert (login.user, login.uid, login.session) == ("root", 0, "command")
    assert "root" in login.groups and login.groups == groups_of("root")
    assert login_context("root", address=None, command=False).session == "interactive"


def test_unknown_user() -> None:
    for call in (lambda: groups_of("iwp-no-such-user"),
                 lambda: login_context("iwp-no-such-user", address=None, command=False),
                 lambda: groups_of("bad\0name")):
        with pytest.raises(KeyError) as info:
            call()
        assert isinstance(info.value, UnknownUserError)
    assert str(UnknownUserError("x")) == "unknown user 'x'"


def test_examples_in_the_docs_are_valid() -> None:
    text = (infra.REPO / "docs" / "policy.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    for block in blocks:
        parse_policy(block, "docs/policy.md")
