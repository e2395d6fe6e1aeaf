"""The real parts for end-to-end tests: a client key, test users, private sshd servers.

Every test here is marked `root`; the skip-or-fail rule for those is in ../conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import infra
from tests.conftest import REQUIRE_ROOT, missing_for_root_tests


class E2E:
    """Session-wide real parts: a client key, test users, private sshd servers."""

    def __init__(self, python: str = infra.PYTHON) -> None:
        infra.installed_python_check(python)
        self.dir = infra.private_dir("e2e")
        self.key = self.dir / "client_ed25519"
        infra.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        self.users = infra.Users((self.dir / "client_ed25519.pub").read_text().strip())
        self.servers: dict[tuple[str, str, bool], infra.SshServer] = {}
        self.python = python  # the interpreter sshd runs the wrapper with

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


@pytest.fixture(scope="session")
def e2e() -> Iterator[E2E]:
    """The real parts; only root tests may use it."""
    reason = missing_for_root_tests()
    if reason is not None:
        (pytest.fail if REQUIRE_ROOT else pytest.skip)(reason)
    parts = E2E()
    try:
        yield parts
    finally:
        parts.close()
