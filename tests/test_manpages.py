"""The man pages: generated from the parsers and the settings table, clean roff, reproducible.

They are built as the Debian build does: ``PYTHONPATH=. /usr/bin/python3 -m
idlewrap.manpages OUTDIR`` in the source tree, with nothing but the standard library.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from idlewrap import __version__, cli, manpages
from idlewrap.keys import SETTING_KEYS, TABLES
from idlewrap.policy import SELECTORS
from tests import infra

SYSTEM_PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
PAGES = ("idlewrap.8", "idlewrap.toml.5")


def build(outdir: Path, **env: str) -> dict[str, str]:
    """Run the generator as the package build does; the pages' texts by name."""
    done = subprocess.run([SYSTEM_PYTHON, "-m", "idlewrap.manpages", str(outdir)],
                          cwd=infra.REPO, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ".", **env}, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert sorted(p.name for p in outdir.iterdir()) == sorted(PAGES)
    return {name: (outdir / name).read_text() for name in PAGES}


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return build(tmp_path_factory.mktemp("man"))


def parsers() -> dict[str, argparse.ArgumentParser]:
    return {"idlewrap": cli.parser(),
            **{name: cli.command_module(name).parser() for name in cli.COMMANDS}}


def test_every_key_of_every_table_is_in_idlewrap_toml_5(pages: dict[str, str]) -> None:
    text = pages["idlewrap.toml.5"]
    keys = [*SETTING_KEYS.values(), *(k for t in TABLES.values() for k in t.keys.values())]
    for key in keys:
        entry = f".TP\n\\fB{key.name}\\fR = \\fI{manpages.roff(key.kind.word)}\\fR "
        assert entry in text, key.name
        assert manpages.roff(key.doc) in text, key.name
    for name in TABLES:
        assert f"\n.SS [{name}]\n" in text
    assert list(manpages.SELECTOR_DOCS) == list(SELECTORS)
    for selector in SELECTORS:
        assert f"\n.TP\n.B {selector}\n" in text


def test_defaults_are_written_as_the_file_would_write_them() -> None:
    for key in SETTING_KEYS.values():
        shown = manpages.toml_default(key)
        if key.name == "shell":  # no value the file could write means "the login shell"
            assert shown == "none (the account's login shell)"
            continue
        value = tomllib.loads(f"v = {shown}")["v"]
        assert key.kind.parse(value) == key.default, key.name


def test_the_example_is_the_shipped_sample(pages: dict[str, str]) -> None:
    example = pages["idlewrap.toml.5"].split("\n.EX\n", 1)[1].split("\n.EE\n", 1)[0]
    sample = manpages.SAMPLE_POLICY.read_text().rstrip("\n")
    assert example == manpages._code(sample)
    assert 'idle_timeout = "15m"' in example


def test_every_option_of_every_command_is_in_idlewrap_8(pages: dict[str, str]) -> None:
    text = pages["idlewrap.8"]
    for name, parser in parsers().items():
        if name != "idlewrap":
            assert f'\n.SS "idlewrap {name}"\n' in text
            assert f'\n.SY "idlewrap {name}"\n' in text
        for action in parser._actions:
            for option in action.option_strings:
                assert manpages.roff(option) in text, (name, option)
            if action.help and action.help != argparse.SUPPRESS and \
                    not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                assert manpages.roff(action.help) in text, (name, action.dest)
    assert "takes \\-h, \\-\\-help, which prints its usage" in text


def test_idlewrap_8_names_the_real_exit_statuses_and_files(pages: dict[str, str]) -> None:
    text = pages["idlewrap.8"]
    for status in (124, 70, 127, 129):
        assert f"\n.TP\n.B {status}\n" in text
    for path in ("/etc/idlewrap/idlewrap.toml", "/etc/pam.d/idlewrap", "/etc/pam.d/sshd",
                 "/etc/ssh/sshd_config.d/50-idlewrap.conf",
                 "/usr/share/doc/idlewrap/examples/", "idlewrap-watchdog.service"):
        assert f"\n.TP\n.I {manpages.roff(path)}\n" in text, path
    for page in ("idlewrap.toml (5)", "sshd_config (5)", "pam_exec (8)"):
        assert f"\n.BR {page}" in text


@pytest.mark.skipif(shutil.which("groff") is None, reason="needs groff (apt-get install "
                    "groff-base)")
@pytest.mark.parametrize("name", PAGES)
def test_groff_has_no_warnings(pages: dict[str, str], name: str, tmp_path: Path) -> None:
    page = tmp_path / name
    page.write_text(pages[name])
    done = subprocess.run(["groff", "-man", "-ww", "-z", str(page)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    if shutil.which("man"):
        done = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True,
                              text=True, timeout=60, check=False,
                              env={"PATH": "/usr/bin:/bin", "MANWIDTH": "80",
                                   "MAN_KEEP_FORMATTING": "0", "LC_ALL": "C.UTF-8"})
        assert (done.returncode, done.stderr) == (0, "")
        assert "idle_timeout" in done.stdout or "idlewrap enable" in done.stdout


def test_two_builds_are_identical_and_carry_the_version(tmp_path: Path) -> None:
    first = build(tmp_path / "a")
    assert first == build(tmp_path / "b")
    for name in PAGES:
        assert f' "" "idlewrap {__version__}" ' in first[name].splitlines()[1]
    dated = build(tmp_path / "c", SOURCE_DATE_EPOCH="1767225600")
    assert dated["idlewrap.8"].splitlines()[1] == (
        f'.TH IDLEWRAP 8 "2026-01-01" "idlewrap {__version__}" "System Administration"')


def test_the_version_is_written_once() -> None:
    project = tomllib.loads((infra.REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "idlewrap.__version__"}


def test_the_build_loads_only_the_standard_library(tmp_path: Path) -> None:
    probe = ("import sys; from pathlib import Path; before = set(sys.modules); "
             f"import idlewrap.manpages as m; m.write(Path({str(tmp_path)!r})); "
             "print(*sorted({n.split('.')[0] for n in set(sys.modules) - before}))")
    done = subprocess.run([SYSTEM_PYTHON, "-c", probe], cwd=infra.REPO, capture_output=True,
                          text=True, timeout=60, check=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": "."})
    loaded = set(done.stdout.split())
    assert "idlewrap" in loaded
    assert loaded - {"idlewrap"} <= set(sys.stdlib_module_names)
    assert not loaded & {"urwid", "pam"}


@pytest.mark.parametrize(("text", "roff"), [
    (".hidden", "\\&.hidden"),
    ("'quoted", "\\&'quoted"),
    ("a\\b", "a\\eb"),
    ("--dry-run and -I, not login-shell", "\\-\\-dry\\-run and \\-I, not login-shell"),
    ("in /etc/ssh/50-idlewrap.conf.", "in /etc/ssh/50\\-idlewrap.conf."),
    ("line\n.second", "line\n\\&.second"),
])
def test_roff_escapes(text: str, roff: str) -> None:
    assert manpages.roff(text) == roff


def test_the_generator_usage(tmp_path: Path) -> None:
    assert manpages.main([]) == 2
    assert manpages.main([str(tmp_path / "new" / "dir")]) == 0
    assert sorted(p.name for p in (tmp_path / "new" / "dir").iterdir()) == sorted(PAGES)
