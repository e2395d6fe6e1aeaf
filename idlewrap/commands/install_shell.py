"""`idlewrap install-shell PATH`: write the login-shell launcher.

sshd execs an account's login shell directly, so no file the user owns
(~/.bashrc, ~/.zshenv) runs before the wrapper. The launcher is a Python script
whose shebang carries `-I`, because a flag added later (re-exec) comes after
site-packages and sitecustomize have already run.
"""

from __future__ import annotations

import argparse
import os
import sys

from idlewrap.commands.switch import write_atomically
from idlewrap.session import LAUNCHER_MARKER
from idlewrap.settings import DEFAULT_CONFIG

# Launchers written by earlier releases stay on disk and import only `login_shell` from
# idlewrap.cli (tests/test_entry_points.py keeps the 0.1.0 text): keep that entry working.
TEMPLATE = """#!{python} -I
{marker} (written by `idlewrap install-shell`).
# Do not list this file in /etc/shells: users must not be able to chsh away from it.
import sys

from idlewrap.hardening import forbid_ptrace

forbid_ptrace()  # first: until this line any process of the user may ptrace this one

from idlewrap.cli import login_shell  # noqa: E402

sys.exit(login_shell(sys.argv[1:], config={config!r}))
"""


def render(python: str, config: str) -> str:
    """The launcher's text for interpreter `python` and policy file `config`."""
    return TEMPLATE.format(python=python, marker=LAUNCHER_MARKER.decode(), config=config)


def parser() -> argparse.ArgumentParser:
    """The command line of ``idlewrap install-shell``."""
    command = argparse.ArgumentParser(
        prog="idlewrap install-shell",
        description="Write a login-shell launcher (make it the account's shell with usermod -s).",
    )
    command.add_argument("path", metavar="PATH",
                         help="where to write it, e.g. /usr/local/sbin/idlewrap-shell")
    command.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH", help="the policy file")
    command.add_argument("--python", default=sys.executable, metavar="PATH",
                         help="interpreter that has idlewrap installed (default: this one)")
    return command


def main(argv: list[str]) -> int:
    """Write a root-owned 0755 launcher at PATH (atomically); exit status."""
    usage = parser()
    options = usage.parse_args(argv)
    if not os.path.isabs(options.path) or not os.path.isabs(options.python):
        usage.error("PATH and --python must be absolute paths")
    if os.geteuid() != 0:
        print("idlewrap install-shell: must run as root (the launcher must be root-owned)",
              file=sys.stderr)
        return 1
    try:
        write_atomically(options.path, render(options.python, options.config),
                         uid=0, gid=0, mode=0o755)
    except OSError as e:
        print(f"idlewrap install-shell: {options.path}: {e.strerror}", file=sys.stderr)
        return 1
    return 0
