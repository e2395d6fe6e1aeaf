"""The installed package as an admin meets it: a session through sshd closed on time with
the PAM hook's events, `idlewrap check`, the files and what the install left alone, and
the man pages. All run the package's own interpreter, /usr/lib/idlewrap/bin/python.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from idlewrap.commands import switch
from idlewrap.commands.install_shell import render
from idlewrap.session import is_launcher
from idlewrap.settings import DEFAULT_CONFIG
from tests import infra
from tests.e2e.test_events import (
    IDLE,
    PROMPT,
    assert_one_connection,
    closed_on_time,
    names,
)
from tests.package.conftest import (
    CONFFILES,
    ENTRY,
    LAUNCHER,
    PYTHON,
    VENV,
    Package,
    Site,
    sshd_and_pam_files,
)

pytestmark = pytest.mark.root

REPO_MAIN = infra.REPO / "idlewrap/__main__.py"


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=30,
                          check=False, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})


def test_a_session_through_sshd_is_closed_on_time_and_the_pam_hook_logs_it(site: Site) -> None:
    user = site.e2e.users.user("iwd_session").name
    child = site.server.interactive(user)
    child.expect(PROMPT)
    child.send("echo ready-$((40+2))\r")
    last_key = time.monotonic()
    child.expect("ready-42")
    closed_on_time(child, last_key)
    child.close()
    assert child.exitstatus == 124
    events = site.log.wait_closed(user, timeout=IDLE + 5)
    assert names(events) == ["pam_open_session", "session_start", "warning", "timeout",
                             "pam_close_session"]
    assert_one_connection(events, user)
    open_, close = events[0], events[-1]
    assert open_["service"] == close["service"] == site.server.pam_service


def test_the_login_shell_launcher_runs_a_command(site: Site) -> None:
    done = site.server.run(site.launcher_user.name, "echo via-launcher")
    assert (done.returncode, done.stdout) == (0, b"via-launcher\n"), done.stderr


def test_check_accepts_the_shipped_policy() -> None:
    done = run(ENTRY, "check")
    # The sample's own comment says it: `check` warns about groups this system lacks.
    warnings = [line for line in done.stderr.splitlines()
                if "warning: groups: unknown group" not in line]
    assert (done.returncode, done.stdout, warnings) == (0, "", [])


def test_check_reports_a_broken_policy_in_one_line(trusted_dir: Path) -> None:
    policy = infra.write_root_file(trusted_dir / "idlewrap.toml", 'idle_timeout = "soon"\n')
    done = run(ENTRY, "check", "--config", policy)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"{policy}:1: ") and done.stderr.count("\n") == 1, done.stderr


def test_the_entries_run_the_package_interpreter_isolated() -> None:
    assert ENTRY.read_text() == f"#!{PYTHON} -I\n" + REPO_MAIN.read_text()
    assert LAUNCHER.read_text() == render(PYTHON, DEFAULT_CONFIG)
    assert is_launcher(str(LAUNCHER))
    assert os.path.realpath(PYTHON) == os.path.realpath("/usr/bin/python3")


def test_only_root_can_write_what_runs() -> None:
    paths = [VENV, *VENV.rglob("*"), ENTRY, LAUNCHER]
    unsafe = []
    for path in paths:
        st = path.lstat()
        if st.st_uid != 0 or st.st_gid != 0 or (
                not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o022):
            unsafe.append(f"{path} {st.st_uid}:{st.st_gid} {stat.filemode(st.st_mode)}")
    assert unsafe == []
    assert list(VENV.rglob("*.pyc")), "postinst byte-compiled nothing"


def test_conffiles_and_the_watchdog_unit() -> None:
    listed = infra.run("dpkg-query", "-W", "-f=${Conffiles}", "idlewrap").stdout.split()
    assert set(CONFFILES) <= set(listed)
    unit = Path("/lib/systemd/system/idlewrap-watchdog.service").read_text()
    assert f"\nExecStart={PYTHON} -I -m idlewrap watchdog " in unit
    enabled = list(Path("/etc/systemd/system").glob("*.wants/idlewrap-watchdog.service"))
    assert enabled == []


def test_the_install_changed_no_sshd_or_pam_file(package: Package) -> None:
    assert sshd_and_pam_files() == package.before


def test_the_examples_name_the_package_interpreter() -> None:
    examples = Path("/usr/share/doc/idlewrap/examples")
    drop_in = (examples / "50-idlewrap.conf").read_text()
    hook = (examples / "sshd-session.snippet").read_text()
    assert drop_in == switch.dropin_text(PYTHON)  # what `idlewrap enable` writes
    assert hook.endswith(f"{switch.HOOK_MARK}\n{switch.hook_line(PYTHON)}\n")
    assert "/usr/bin/python3" not in drop_in + hook and "/opt/" not in drop_in + hook


def test_enable_dry_run_names_the_package_interpreter() -> None:
    done = run(ENTRY, "enable", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert f"\n+ForceCommand {PYTHON} -I -m idlewrap\n" in done.stdout
    assert f"\n+{switch.hook_line(PYTHON)}\n" in done.stdout


def test_man_idlewrap_toml_lists_every_key() -> None:
    where = run("man", "-w", "idlewrap.toml")
    assert (where.returncode, where.stdout) == (0, "/usr/share/man/man5/idlewrap.toml.5.gz\n")
    keys = run(PYTHON, "-I", "-c", "from idlewrap.keys import TABLES; "
               "from idlewrap.settings import SETTING_NAMES; "
               "print(*SETTING_NAMES, *(k for t in TABLES.values() for k in t.keys))")
    assert keys.returncode == 0, keys.stderr
    page = subprocess.run(["man", "-P", "cat", "idlewrap.toml"], capture_output=True, text=True,
                          timeout=30, check=False, env={"PATH": "/usr/bin:/bin",
                                                        "MANWIDTH": "200", "LANG": "C.UTF-8"})
    assert page.returncode == 0, page.stderr
    missing = [key for key in keys.stdout.split() if key not in page.stdout]
    assert missing == []
    assert run("man", "-w", "idlewrap").returncode == 0
    assert run("man", "-w", "idlewrap-shell").returncode == 0
