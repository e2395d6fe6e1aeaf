"""What the wrapper's start-up imports: no command module, nothing only a command needs.

Every login pays for each module the wrapper imports (docs/architecture.md, "Start-up
cost"); the commands (idlewrap/commands/) are imported only when one is run.
"""

import os
import subprocess
import sys

from idlewrap.cli import _plain_config
from idlewrap.settings import DEFAULT_CONFIG
from tests import infra


def _loaded(statement: str) -> set[str]:
    """Modules that ``statement`` adds to a fresh ``-I`` interpreter running the checkout
    (``re``, with enum, functools and collections, loaded before: a session needs them)."""
    probe = (f"import sys; sys.path.insert(0, {str(infra.REPO)!r}); import re; "
             f"before = set(sys.modules); {statement}; "
             "print(*sorted(set(sys.modules) - before))")
    done = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True,
                          timeout=30, check=True, cwd=os.sep)
    return set(done.stdout.split())


def test_cli_imports_no_command() -> None:
    """The wrapper's entry loads nothing but the settings it defaults from (no argparse)."""
    assert _loaded("import idlewrap.cli") <= {
        "__future__", "idlewrap", "idlewrap.cli", "idlewrap.settings", "idlewrap.durations",
        "idlewrap.records", "collections.abc"}


def test_the_login_command_line_is_read_without_argparse() -> None:
    """argparse and what its help formatter loads cost a login ~0.8 MiB: only --help,
    --version and mistakes reach it (docs/performance.md, "300 sessions on one host")."""
    assert _plain_config([]) == DEFAULT_CONFIG
    assert _plain_config(["--config", "/etc/p.toml"]) == "/etc/p.toml"
    assert _plain_config(["--config=/etc/p.toml"]) == "/etc/p.toml"
    for other in (["--help"], ["--version"], ["--config"], ["--config", "--help"],
                  ["--config="], ["--conf", "/etc/p.toml"], ["--config", "a", "b"]):
        assert _plain_config(other) is None, other


def test_wrapper_start_up_imports_no_command() -> None:
    loaded = _loaded("import idlewrap.cli, idlewrap.login")
    assert "idlewrap.login" in loaded
    assert not {m for m in loaded if m.startswith("idlewrap.commands")}
    assert not loaded & {"json", "difflib", "shutil", "tempfile", "importlib", "urwid",
                         "argparse", "socket", "selectors"}
    # what only a timed command session (the stream relay) or a broken policy file needs
    assert not loaded & {"idlewrap.streams", "idlewrap.activity", "idlewrap.toml_lines"}
    # what only a command needs; the policy parser and the address, read in a child
    # (login_policy.py)
    assert not loaded & {"shlex", "tomllib", "datetime", "idlewrap.policy", "idlewrap.trust",
                         "ipaddress", "idlewrap.keys"}


def test_a_session_loads_no_typing() -> None:
    """typing costs every session ~0.7 MiB: the records are records.NamedTuple, the
    Protocols and Literals exist for mypy only (docs/performance.md, "300 sessions on one
    host"); the policy parser, in the login's child, may load it."""
    loaded = _loaded("import idlewrap.cli, idlewrap.login, idlewrap.wrapper")
    assert "idlewrap.login" in loaded
    assert not loaded & {"typing", "_typing", "dataclasses", "inspect"}


def test_nothing_of_the_lock_is_loaded_at_start_up() -> None:
    """python-pam and the lock screen are paid for when a lock is due, not at every login."""
    loaded = _loaded("import idlewrap.cli, idlewrap.login, idlewrap.wrapper")
    assert not loaded & {"pam", "idlewrap.lock", "idlewrap.lock_screen", "idlewrap.unlock",
                         "idlewrap.overlay"}
