"""`idlewrap audit`'s reading of `sshd -T`: output, patterns, times, who sshd refuses."""

import pytest

from idlewrap.audit.sshd import (
    Connection,
    channel_timeout,
    glob_match,
    parse_effective,
    pattern_list_match,
    refusal,
    sshd_seconds,
)

# Trimmed from real `sshd -T -f CFG -C user=alice,host=localhost,addr=127.0.0.1` output
# (OpenSSH 9.2): one line per value, repeated keywords for lists.
SSHD_T = """\
port 22
usepam yes
clientaliveinterval 600
clientalivecountmax 0
unusedconnectiontimeout none
permituserrc yes
forcecommand /opt/idlewrap/bin/python -I -m idlewrap --config /etc/idlewrap/x.toml
allowusers root
allowusers alice@10.0.0.0/8
acceptenv LANG
acceptenv LC_*
channeltimeout direct-tcpip=15m forwarded-*=1h session=10m
permituserenvironment LANG,LC_*
"""


def test_parse_effective_keeps_every_value_in_order() -> None:
    config = parse_effective(SSHD_T)
    assert config.get("forcecommand") == (
        "/opt/idlewrap/bin/python -I -m idlewrap --config /etc/idlewrap/x.toml")
    assert config.all("acceptenv") == ["LANG", "LC_*"]
    assert config.all("allowusers") == ["root", "alice@10.0.0.0/8"]
    assert config.get("clientalivecountmax") == "0"
    assert config.get("nosuchkeyword", "dflt") == "dflt"
    assert config.seconds("unusedconnectiontimeout") is None


@pytest.mark.parametrize(("text", "seconds"), [
    ("600", 600), ("15m", 900), ("1h30m", 5400), ("2d", 172800), ("1w", 604800),
    ("10M", 600), ("none", None), ("0", None), ("", None), ("5x", None),
])
def test_sshd_seconds(text: str, seconds: int | None) -> None:
    assert sshd_seconds(text) == seconds


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("LC_*", "LC_ALL", True), ("LC_*", "LANG", False), ("LD_?RELOAD", "LD_PRELOAD", True),
    ("*", "LD_PRELOAD", True), ("[L]*", "LANG", False),  # sshd has no character classes
])
def test_glob_match(pattern: str, name: str, matches: bool) -> None:
    assert glob_match(pattern, name) is matches


def test_pattern_list_negation_wins() -> None:
    assert pattern_list_match("LD_PRELOAD", ["*"])
    assert not pattern_list_match("LD_PRELOAD", ["*", "!LD_*"])
    assert not pattern_list_match("LD_PRELOAD", ["!LD_*", "*"])
    assert not pattern_list_match("LD_PRELOAD", ["LANG", "LC_*"])


def test_channel_timeout_first_matching_entry_wins() -> None:
    config = parse_effective(SSHD_T)
    assert channel_timeout(config, "direct-tcpip") == 900
    assert channel_timeout(config, "forwarded-streamlocal@openssh.com") == 3600
    assert channel_timeout(config, "session") == 600
    assert channel_timeout(config, "x11-connection") is None
    assert channel_timeout(parse_effective("channeltimeout *=0\n"), "session") is None


def test_refusal_follows_sshds_order() -> None:
    config = parse_effective(SSHD_T)
    no_groups: frozenset[str] = frozenset()
    assert refusal(config, "root", 0, no_groups, host="localhost", addr="127.0.0.1") is None
    assert refusal(config, "alice", 1000, no_groups, host="localhost",
                   addr="127.0.0.1") == "AllowUsers does not list it"
    assert refusal(config, "alice", 1000, no_groups, host="h", addr="10.1.2.3") is None
    root_off = parse_effective("permitrootlogin no\n")
    assert refusal(root_off, "root", 0, no_groups, host="h", addr="10.1.2.3") == (
        "PermitRootLogin no")
    groups = parse_effective("denygroups nogo\nallowgroups staff\n")
    assert refusal(groups, "bob", 1001, frozenset({"nogo", "staff"}), host="h",
                   addr="10.1.2.3") == "DenyGroups lists one of its groups"
    assert refusal(groups, "bob", 1001, frozenset({"users"}), host="h",
                   addr="10.1.2.3") == "AllowGroups lists none of its groups"
    assert refusal(groups, "bob", 1001, frozenset({"staff"}), host="h", addr="10.1.2.3") is None


def test_connection_spec_names_everything_match_blocks_can_ask_for() -> None:
    # Without lport, sshd -T refuses any config with a Match LocalPort block.
    assert Connection("localhost", "127.0.0.1", "127.0.0.1", 22).spec("alice") == (
        "user=alice,host=localhost,addr=127.0.0.1,laddr=127.0.0.1,lport=22")
