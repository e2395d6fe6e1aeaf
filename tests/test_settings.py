"""The table of policy keys: docs/policy.md documents exactly its keys, and its kinds behave."""

import re
import tomllib
from typing import Annotated, NamedTuple

import pytest

from idlewrap.keys import DURATION, SETTING_KEYS, TABLES, Key, choice, keys_of, optional
from idlewrap.settings import DEFAULT_SYSLOG_SOCKET, DEFAULTS, SETTING_NAMES, Settings
from tests import infra

DOCS = (infra.REPO / "docs" / "policy.md").read_text()
# The docs section holding each table's keys: "## Settings", then "## `[log]`" and so on.
SECTIONS = {"Settings": SETTING_KEYS, **{f"`[{name}]`": t.keys for name, t in TABLES.items()}}
ALL_KEYS = [key for keys in SECTIONS.values() for key in keys.values()]


def documented(heading: str) -> list[tuple[str, str, str, str]]:
    """The rows (key, type, default, meaning) of the key table under ``## heading``."""
    section = DOCS.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(\w+)` \| (.*?) \| (.*?) \| (.*) \|$", section, re.M)


@pytest.mark.parametrize("heading", SECTIONS)
def test_docs_document_every_key_and_no_other(heading: str) -> None:
    keys = SECTIONS[heading]
    rows = documented(heading)
    assert [row[0] for row in rows] == list(keys)
    for name, word, default, meaning in rows:
        key = keys[name]
        assert word == key.kind.word, name
        if default.startswith("`"):  # a TOML value, as an admin would write it
            assert key.kind.parse(tomllib.loads(f"v = {default.strip('`')}")["v"]) == key.default
        else:  # a default the file cannot write, described as `idlewrap policy` shows it
            assert default == key.kind.show(key.default), name
        assert meaning.replace("`", "").startswith(key.doc), name


def test_docs_have_a_section_for_each_table_and_no_other() -> None:
    assert re.findall(r"^## `\[(\w+)\]`$", DOCS, re.M) == list(TABLES)


@pytest.mark.parametrize("key", ALL_KEYS, ids=lambda key: key.name)
def test_defaults_are_values_of_their_kind(key: Key) -> None:
    if key.default is not None:  # None is a default only (the account's shell)
        assert key.kind.parse(key.default) == key.default
    assert "\n" not in key.doc and key.doc == key.doc.strip()


def test_defaults_come_from_the_table() -> None:
    assert tuple(SETTING_KEYS) == SETTING_NAMES == Settings._fields
    assert list(DEFAULTS) == [key.default for key in SETTING_KEYS.values()]
    assert DEFAULT_SYSLOG_SOCKET == TABLES["log"].keys["syslog_socket"].default == "/dev/log"


def test_a_new_table_is_one_class() -> None:
    """The shape the later [watchdog] table takes: rows read from one NamedTuple."""

    class Watchdog(NamedTuple):
        wrapper_grace: Annotated[int, DURATION, "how long a wrapper may be missing"] = 30

    assert keys_of(Watchdog) == {
        "wrapper_grace": Key("wrapper_grace", DURATION, 30, "how long a wrapper may be missing")}


def test_optional_kind_with_a_word() -> None:
    """A duration or "off" (the later command_idle_timeout): None is "off"."""
    kind = optional(DURATION, "off", word="off")
    assert kind.word == 'duration or "off"'
    assert (kind.parse("off"), kind.parse("5m")) == (None, 300)
    assert (kind.show(None), kind.show(300)) == ("off", "5m")
    with pytest.raises(ValueError, match="'of' is not a duration"):
        kind.parse("of")


def test_optional_kind_without_a_word_is_a_default_only() -> None:
    shell = SETTING_KEYS["shell"].kind
    assert shell.show(None) == "none (the account's login shell)"
    assert shell.lint(None) is None
    with pytest.raises(ValueError, match="must be a string, not a boolean"):
        shell.parse(False)


def test_choice_kind() -> None:
    kind = choice("an activity", "any", "input", not_yet=("mouse",))
    assert (kind.parse("any"), kind.parse("input"), kind.show("input")) == ("any", "input", "input")
    with pytest.raises(ValueError) as info:
        kind.parse("keys")
    assert str(info.value) == "'keys' is not an activity: use \"any\" or \"input\""
    with pytest.raises(ValueError) as info:
        kind.parse("mouse")
    assert str(info.value) == "\"mouse\" is not supported yet (use \"any\" or \"input\")"
