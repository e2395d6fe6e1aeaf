"""Shared fixtures. Tests marked `root` need root, sshd and real users.

Unprivileged they skip with the reason; with IDLEWRAP_TESTS_REQUIRE_ROOT=1
(set by .ci/run) a test that would skip fails instead, so CI always runs them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import infra

REQUIRE_ROOT = os.environ.get("IDLEWRAP_TESTS_REQUIRE_ROOT") == "1"


def _missing_for_root_tests() -> str | None:
    if os.geteuid() != 0:
        return "needs root (real users, a private sshd, PAM)"
    for tool in ("/usr/sbin/sshd", "ssh", "tmux", "pamtester", "useradd"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install openssh-server tmux pamtester)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip (or, in CI, fail) root tests that cannot run here."""
    if item.get_closest_marker("root") is None:
        return
    reason = _missing_for_root_tests()
    if reason is None:
        return
    if REQUIRE_ROOT:
        pytest.fail(f"IDLEWRAP_TESTS_REQUIRE_ROOT=1 but this test {reason}")
    pytest.skip(reason)


class E2E:
    """Session-wide real parts: a client key, test users, private sshd servers."""

    def __init__(self) -> None:
        infra.installed_python_check()
        self.dir = infra.private_dir("e2e")
        self.key = self.dir / "client_ed25519"
        infra.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        self.users = infra.Users((self.dir / "client_ed25519.pub").read_text().strip())
        self.servers: dict[tuple[str, str, bool], infra.SshServer] = {}
        self.python = infra.PYTHON

    def policy(self, text: str, name: str = "policy") -> Path:
        """A trusted policy file (root-owned, in a root-owned directory) holding `text`."""
        path = infra.private_dir(name) / "idlewrap.toml"
        return infra.write_root_file(path, text)

    def force_command(self, config: Path | str) -> str:
        """The ForceCommand line an admin would write, with the test venv's interpreter."""
        return f"{self.python} -I -m idlewrap --config {config}"

    def server(self, config: str, pam_extra: str = "", *,
               stock_pam_env: bool = False) -> infra.SshServer:
        """A private sshd for `config` (started once per distinct set of arguments)."""
        key = (config, pam_extra, stock_pam_env)
        if key not in self.servers:
            self.servers[key] = infra.SshServer(config, self.dir, self.key, pam_extra,
                                                stock_pam_env).start()
        return self.servers[key]

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.users.cleanup()
        infra.cleanup_run_dir()


@pytest.fixture
def trusted_dir() -> Iterator[Path]:
    """A fresh root-owned 0755 directory whose parents only root can write."""
    path = infra.private_dir("trusted")
    yield path
    shutil.rmtree(path)


@pytest.fixture(scope="session")
def e2e() -> Iterator[E2E]:
    """The real parts; only root tests may use it."""
    reason = _missing_for_root_tests()
    if reason is not None:
        (pytest.fail if REQUIRE_ROOT else pytest.skip)(reason)
    parts = E2E()
    try:
        yield parts
    finally:
        parts.close()
