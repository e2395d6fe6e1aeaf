"""Removing the package leaves no login broken: prerm refuses `remove` while sshd, a PAM
service or an account still runs idlewrap, and says what does (docs/deploy.md,
"Removing the package"). Runs after test_installed.py: it removes the package.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import infra
from tests.package.conftest import (
    CONFFILES,
    LAUNCHER,
    PYTHON,
    VENV,
    Package,
    Site,
    apt_get,
    status,
)

pytestmark = pytest.mark.root

DROP_IN = Path("/etc/ssh/sshd_config.d/iwd-test-idlewrap.conf")
# Only for an account that does not exist: no login of this machine's own sshd changes.
DROP_IN_TEXT = f"Match User iwd_nobody\n    ForceCommand {PYTHON} -I -m idlewrap\n"


def active_lines(path: Path, needle: str) -> list[str]:
    """`path:N:line` for each uncommented line naming `needle`, as prerm reports them."""
    return [f"{path}:{n}:{line}" for n, line in enumerate(path.read_text().splitlines(), 1)
            if needle in line and not line.lstrip().startswith("#")]


def refusal_lines(output: str) -> list[str]:
    """The references prerm listed: the lines between its first line and its advice."""
    lines = output.splitlines()
    first = lines.index("idlewrap: not removed: these still run it, and their logins would "
                        "fail without it:")
    advice = next(i for i in range(first, len(lines)) if lines[i].startswith("Switch them off"))
    return lines[first + 1:advice]


def test_remove_is_refused_while_anything_runs_idlewrap(site: Site, package: Package) -> None:
    user = site.launcher_user.name  # its login shell is the package's launcher
    pam_file = Path("/etc/pam.d") / site.server.pam_service  # the hook line, our interpreter
    DROP_IN.write_text(DROP_IN_TEXT)
    try:
        refused = apt_get("remove", "idlewrap")
    finally:
        DROP_IN.unlink()
    assert refused.returncode != 0 and status() == "ii", refused.stdout
    assert refusal_lines(refused.stdout) == [
        f"{DROP_IN}:2:    ForceCommand {PYTHON} -I -m idlewrap",
        *active_lines(pam_file, PYTHON),
        f"account {user}: login shell {LAUNCHER}",
    ]
    assert "IDLEWRAP_FORCE_REMOVE=1 apt-get remove idlewrap" in refused.stdout

    still = site.server.run(user, "echo still-in")
    assert (still.returncode, still.stdout) == (0, b"still-in\n"), still.stderr

    infra.run("usermod", "-s", "/bin/bash", user)
    site.server.stop()  # and with it its PAM service file
    removed = apt_get("remove", "idlewrap")
    assert removed.returncode == 0 and status() == "rc", removed.stdout
    assert not VENV.exists() and Path(CONFFILES[0]).exists()  # conffiles stay until purge
    purged = apt_get("purge", "idlewrap")
    assert purged.returncode == 0 and status() == "un", purged.stdout
    assert not VENV.exists() and not Path("/etc/idlewrap").exists()


def test_the_admin_can_force_the_removal(site: Site, package: Package) -> None:
    user = site.launcher_user.name
    installed = apt_get("install", str(package.deb.resolve()))
    assert installed.returncode == 0 and status() == "ii", installed.stdout
    infra.run("usermod", "-s", str(LAUNCHER), user)
    try:
        forced = apt_get("purge", "idlewrap", env={"IDLEWRAP_FORCE_REMOVE": "1"})
    finally:
        infra.run("usermod", "-s", "/bin/bash", user)
    assert forced.returncode == 0 and status() == "un", forced.stdout
    assert ("idlewrap: removed although these still run it (IDLEWRAP_FORCE_REMOVE=1):\n"
            f"account {user}: login shell {LAUNCHER}\n") in forced.stdout
    assert not VENV.exists()
