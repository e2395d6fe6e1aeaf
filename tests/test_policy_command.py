"""`idlewrap policy`: effective settings for real users in several groups, text and JSON."""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from idlewrap.commands import policy as policy_command
from idlewrap.keys import SETTING_KEYS
from tests import infra

GROUPS = ("iwp_ops", "iwp_dev")
USERS = {"iwp_alice": ("iwp_ops", "iwp_dev"), "iwp_bob": ("iwp_dev",), "iwp_carol": ()}

POLICY = """\
idle_timeout = "20m"
bell = false

[[match]]
name = "ops"
groups = "iwp_ops"
idle_timeout = "90s"

[[match]]
name = "devs"
groups = ["iwp_dev"]
idle_timeout = "30m"
warn_before = "2m"
message = "bye {user}"

[[match]]
name = "outside"
addresses = ["203.0.113.0/24", "2001:db8::/32"]
idle_timeout = "2m"
warn_before = "30s"

[[match]]
name = "jobs"
sessions = "command"
not_groups = "iwp_ops"
exempt = true
"""


@pytest.fixture(scope="module")
def accounts() -> Iterator[None]:
    """Real groups and users (prefix iwp_), removed afterwards."""
    _remove()
    try:
        for group in GROUPS:
            infra.run("groupadd", group)
        for user, groups in USERS.items():
            extra = ["-G", ",".join(groups)] if groups else []
            infra.run("useradd", "-M", "-s", "/usr/sbin/nologin", *extra, user)
        yield
    finally:
        _remove()


def _remove() -> None:
    for user in USERS:
        infra.run("userdel", user, check=False)
    for group in GROUPS:
        infra.run("groupdel", group, check=False)


@pytest.fixture
def config() -> Iterator[Path]:
    directory = infra.private_dir("explain")
    yield infra.write_root_file(directory / "idlewrap.toml", POLICY)
    shutil.rmtree(directory)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = policy_command.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def text_lines(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> list[str]:
    status, out, err = run(capsys, "--config", str(config), *args)
    assert (status, err) == (0, "")
    return out.splitlines()


@pytest.mark.root
@pytest.mark.usefixtures("accounts")
def test_user_in_two_groups(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    assert text_lines(capsys, config, "--user", "iwp_alice") == [
        "rule ops",
        "idle_timeout 1m30s (ops)",
        "warn_before 45s (devs, clamped to half of idle_timeout)",
        "command_idle_timeout off (default)",
        "command_activity any (default)",
        "shell none (the account's login shell) (default)",
        'message "bye {user}" (devs)',
        'warning "This session is idle and will be closed." (default)',
        "exempt no (default)",
        "action terminate (default)",
        "unlock_attempts 3 (default)",
        "terminate_after off (default)",
        "bell no (global)",
    ]


@pytest.mark.root
@pytest.mark.usefixtures("accounts")
@pytest.mark.parametrize(("args", "expected"), [
    (("--user", "iwp_bob"), {"rule": "devs", "idle_timeout": "30m (devs)",
                             "warn_before": "2m (devs)", "exempt": "no (default)"}),
    (("--user", "iwp_carol"), {"rule": "none", "idle_timeout": "20m (global)",
                               "warn_before": "1m (default)", "bell": "no (global)"}),
    (("--user", "iwp_carol", "--address", "203.0.113.9"),
     {"rule": "outside", "idle_timeout": "2m (outside)", "warn_before": "30s (outside)"}),
    (("--user", "iwp_carol", "--address", "::ffff:203.0.113.9"), {"rule": "outside"}),
    (("--user", "iwp_carol", "--address", "2001:db8::7"), {"rule": "outside"}),
    (("--user", "iwp_carol", "--address", "198.51.100.1"), {"rule": "none"}),
    (("--user", "iwp_bob", "--address", "203.0.113.9"),
     {"rule": "devs", "idle_timeout": "30m (devs)", "warn_before": "2m (devs)"}),
    (("--user", "iwp_bob", "--command"), {"rule": "devs", "exempt": "yes (jobs)"}),
    (("--user", "iwp_alice", "--command"), {"rule": "ops", "exempt": "no (default)"}),
])
def test_sources(capsys: pytest.CaptureFixture[str], config: Path, args: tuple[str, ...],
                 expected: dict[str, str]) -> None:
    shown = dict(line.split(" ", 1) for line in text_lines(capsys, config, *args))
    assert {key: shown[key] for key in expected} == expected


@pytest.mark.root
@pytest.mark.usefixtures("accounts")
def test_json(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    status, out, err = run(capsys, "--config", str(config), "--user", "iwp_alice",
                           "--address", "203.0.113.9", "--json")
    assert (status, err) == (0, "")
    assert json.loads(out) == {
        "settings": {"idle_timeout": 90, "warn_before": 45, "command_idle_timeout": None,
                     "command_activity": "any", "shell": None,
                     "message": "bye {user}",
                     "warning": "This session is idle and will be closed.",
                     "exempt": False, "action": "terminate", "unlock_attempts": 3,
                     "terminate_after": None, "bell": False},
        "sources": {"idle_timeout": "ops", "warn_before": "devs",
                    "command_idle_timeout": "default", "command_activity": "default",
                    "shell": "default",
                    "message": "devs", "warning": "default", "exempt": "default",
                    "action": "default", "unlock_attempts": "default",
                    "terminate_after": "default", "bell": "global"},
        "rule": "ops",
        "clamped": True,
    }


@pytest.mark.root
@pytest.mark.usefixtures("accounts")
def test_broken_policy_shows_builtin_defaults(capsys: pytest.CaptureFixture[str],
                                              config: Path) -> None:
    infra.write_root_file(config, POLICY + "idle_timout = 5\n")
    status, out, err = run(capsys, "--config", str(config), "--user", "iwp_alice", "--json")
    assert status == 1
    assert err.splitlines() == [
        f"{config}:{POLICY.count(chr(10)) + 1}: unknown key 'idle_timout' in match[4] "
        "(did you mean 'idle_timeout'?)",
        f"idlewrap policy: {config} cannot be used: the built-in defaults apply",
    ]
    shown = json.loads(out)
    assert shown["settings"]["idle_timeout"] == 900 and shown["rule"] is None
    assert set(shown["sources"].values()) == {"default"}


def test_missing_policy_shows_builtin_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "--config", "/nonexistent-idlewrap-test/p.toml",
                           "--user", "root")
    assert status == 1
    assert err == ("/nonexistent-idlewrap-test/p.toml: file not found\nidlewrap policy: "
                   "/nonexistent-idlewrap-test/p.toml cannot be used: the built-in defaults "
                   "apply\n")
    assert out.splitlines()[:3] == ["rule none", "idle_timeout 15m (default)",
                                    "warn_before 1m (default)"]


def test_every_key_is_shown(capsys: pytest.CaptureFixture[str]) -> None:
    missing = "/nonexistent-idlewrap-test/p.toml"
    status, out, _ = run(capsys, "--config", missing, "--user", "root")
    assert status == 1
    assert out.splitlines() == ["rule none", *(f"{name} {key.kind.show(key.default)} (default)"
                                               for name, key in SETTING_KEYS.items())]
    status, out, _ = run(capsys, "--config", missing, "--user", "root", "--json")
    assert list(json.loads(out)["settings"]) == list(SETTING_KEYS)


def test_unknown_user(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--user", "iwp_nobody") == (
        1, "", "idlewrap policy: unknown user 'iwp_nobody'\n")


def test_bad_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        policy_command.main(["--user", "root", "--address", "10.0.0.999"])
    assert info.value.code == 2
    assert "not an IP address: '10.0.0.999'" in capsys.readouterr().err
