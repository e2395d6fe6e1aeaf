"""Shared fixtures. Tests marked `root` need root, sshd and real users (most live in e2e/).

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


def missing_for_root_tests() -> str | None:
    """Why root tests cannot run here, or None when they can."""
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
    reason = missing_for_root_tests()
    if reason is None:
        return
    if REQUIRE_ROOT:
        pytest.fail(f"IDLEWRAP_TESTS_REQUIRE_ROOT=1 but this test {reason}")
    pytest.skip(reason)


@pytest.fixture
def trusted_dir() -> Iterator[Path]:
    """A fresh root-owned 0755 directory whose parents only root can write."""
    path = infra.private_dir("trusted")
    yield path
    shutil.rmtree(path)
