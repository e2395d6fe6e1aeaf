"""The Debian package, installed: `tests/package/run` builds it and runs these.

The session fixture installs the .deb that IDLEWRAP_TEST_DEB names (apt-get, as an
admin would) and purges it at the end. The rest of the suite installs and removes
/etc/pam.d/idlewrap itself, so the two must not run at the same time: without
IDLEWRAP_TEST_DEB every test here is skipped (with IDLEWRAP_TESTS_REQUIRE_ROOT=1 and
the variable set, nothing skips).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import infra
from tests.conftest import REQUIRE_ROOT, missing_for_root_tests
from tests.e2e.conftest import E2E
from tests.e2e.test_events import POLICY, Receiver, hook_line

VENV = Path("/usr/lib/idlewrap")
PYTHON = str(VENV / "bin/python")
ENTRY = Path("/usr/bin/idlewrap")
LAUNCHER = Path("/usr/sbin/idlewrap-shell")
CONFFILES = ("/etc/idlewrap/idlewrap.toml", "/etc/pam.d/idlewrap")
# PAM services the test servers write while they run (infra.SshServer, test_events.py)
TEST_SERVICES = ("idlewrap-test-",)


def apt_get(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """apt-get without questions; stdout and stderr together, as the admin sees them."""
    return subprocess.run(["apt-get", "-y", "-q", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300, check=False,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", **(env or {})})


def status() -> str:
    """dpkg's status of idlewrap: `ii` installed, `rc` removed with conffiles, `un`..."""
    done = infra.run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "idlewrap", check=False)
    return done.stdout.strip() if done.returncode == 0 else "un"


def sshd_and_pam_files() -> dict[str, str]:
    """sha256 of every file of sshd's configuration and of every PAM service but ours."""
    files = [p for p in Path("/etc/ssh").rglob("*") if p.is_file()]
    files += [p for p in Path("/etc/pam.d").iterdir() if p.is_file()
              and str(p) not in CONFFILES and not p.name.startswith(TEST_SERVICES)]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


class Package:
    """The installed .deb, and what the install left alone."""

    def __init__(self, deb: Path) -> None:
        self.deb = deb
        apt_get("purge", "idlewrap")  # a copy left by an interrupted run
        self.before = sshd_and_pam_files()
        done = apt_get("install", f"{deb.resolve()}")
        assert done.returncode == 0 and status() == "ii", done.stdout

    def purge(self) -> None:
        apt_get("purge", "idlewrap")


@pytest.fixture(scope="session")
def package() -> Iterator[Package]:
    """The package, installed for the session and purged after it."""
    deb = os.environ.get("IDLEWRAP_TEST_DEB")
    if not deb:
        pytest.skip("IDLEWRAP_TEST_DEB is not set: tests/package/run builds the package "
                    "and runs these")
    reason = missing_for_root_tests()
    if reason is not None:
        (pytest.fail if REQUIRE_ROOT else pytest.skip)(reason)
    installed = Package(Path(deb))
    try:
        yield installed
    finally:
        installed.purge()


@pytest.fixture(autouse=True)
def _installed(package: Package) -> None:
    """Every test here needs the package (and skips with it)."""


@pytest.fixture(scope="session")
def e2e(package: Package) -> Iterator[E2E]:
    """The e2e parts, with the package's interpreter as the one sshd runs."""
    parts = E2E(PYTHON)
    try:
        yield parts
    finally:
        parts.close()


class Site:
    """One private sshd whose ForceCommand and PAM hook are the package's interpreter."""

    def __init__(self, e2e: E2E) -> None:
        self.e2e = e2e
        self.log = Receiver(keep_no_watchdog=False)
        self.policy = e2e.policy(POLICY + f'\n[log]\nsyslog_socket = "{self.log.path}"\n',
                                 name="pkg-policy")
        self.launcher_user = e2e.users.user("iwd_launcher", shell=str(LAUNCHER))
        self.server = e2e.server(
            f"ForceCommand {e2e.force_command(self.policy)}\n"
            f"Match User {self.launcher_user.name}\n  ForceCommand none\n",
            hook_line(e2e, self.policy))


@pytest.fixture(scope="session")
def site(e2e: E2E) -> Iterator[Site]:
    parts = Site(e2e)
    yield parts
    parts.log.close()
