"""The command line: the wrapper itself, and its helper commands.

    python3 -I -m idlewrap [--config PATH]          the wrapper (sshd ForceCommand)
    idlewrap demo [--idle-timeout D] [--warn-before D] [-- COMMAND [ARG...]]
    idlewrap check [--config PATH]
    idlewrap policy --user NAME [--address IP] [--command] [--config PATH] [--json]
    idlewrap install-shell PATH [--config PATH]
    idlewrap audit [--config PATH] [--sshd-config PATH] [--pam-file PATH] [--user NAME]... [--json]
    idlewrap lock                                   (inside a session: lock it now)
    idlewrap watchdog [--config PATH] [--cgroup-name NAME] [--no-cgroups]
    idlewrap enable [--dry-run] / idlewrap disable [--dry-run]   (switch it on or off)

Only the command line an admin wrote decides what the wrapper does: no
environment variable is consulted except those sshd sets for the session.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from idlewrap import __version__
from idlewrap.settings import DEFAULT_CONFIG

TYPE_CHECKING = False  # not typing's: a session never imports typing (records.py)
if TYPE_CHECKING:
    import argparse
    from typing import NoReturn

# Each is the module idlewrap/commands/NAME.py ("-" as "_") with main(argv) -> int,
# imported only when run: the wrapper's start-up loads none of them.
# Each also has parser() -> ArgumentParser, which its main uses and idlewrap.manpages reads.
COMMANDS = ("demo", "check", "policy", "install-shell", "audit", "lock", "watchdog", "enable",
            "disable")


# What a login shell is started with for a login (nothing, or a login or interactive flag).
LOGIN_SHELL_ARGS: tuple[list[str], ...] = ([], ["-l"], ["--login"], ["-i"])


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]) and return the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in COMMANDS:
        status: int = command_module(args[0]).main(args[1:])
        return _finish(status)
    config = _plain_config(args)
    if config is not None:
        return _wrap(config, os.environ.get("SSH_ORIGINAL_COMMAND"))
    options = parser().parse_args(args)  # --help, --version, a mistake
    return _wrap(options.config, os.environ.get("SSH_ORIGINAL_COMMAND"))


def parser() -> argparse.ArgumentParser:
    """The wrapper's own command line (``python3 -I -m idlewrap``).

    Only --help, --version and mistakes build it: argparse (and the shutil, bz2, lzma,
    locale its help formatter loads) would cost every login about 1 MiB of private memory.
    """
    import argparse

    wrapper = argparse.ArgumentParser(
        prog="idlewrap",
        description="Run the user's shell and end the session after a time without input. "
        f"Commands: {', '.join(COMMANDS)} (idlewrap COMMAND --help).",
    )
    wrapper.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH",
                         help=f"the policy file (default {DEFAULT_CONFIG})")
    wrapper.add_argument("--version", action="version", version=f"idlewrap {__version__}")
    return wrapper


def command_module(name: str) -> ModuleType:
    """The module of command ``name`` (one of COMMANDS), imported now."""
    import importlib

    return importlib.import_module(f"idlewrap.commands.{name.replace('-', '_')}")


def _plain_config(args: list[str]) -> str | None:
    """The policy path of the command line every login has (none, or `--config PATH`).

    None for anything else, which argparse then reads (or refuses) as it always did.
    """
    if not args:
        return DEFAULT_CONFIG
    if len(args) == 1 and args[0].startswith("--config=") and len(args[0]) > len("--config="):
        return args[0].removeprefix("--config=")
    if len(args) == 2 and args[0] == "--config" and not args[1].startswith("-"):
        return args[1]
    return None


def login_shell(args: list[str], config: str = DEFAULT_CONFIG) -> int:
    """The login-shell launcher's entry: sshd runs it with no arguments or `-c COMMAND`.

    Launchers written by `idlewrap install-shell` call exactly this; keep its signature.
    """
    if args in LOGIN_SHELL_ARGS:
        return _wrap(config, None)
    if len(args) >= 2 and args[0] == "-c":
        import pwd

        home = pwd.getpwuid(os.getuid()).pw_dir
        if args[1] == f"/bin/sh {home}/.ssh/rc":  # how sshd runs ~/.ssh/rc before a session
            from idlewrap.user_rc import run_user_rc

            return _finish(run_user_rc(config, f"{home}/.ssh/rc"))
        return _wrap(config, args[1])
    print(f"idlewrap: unsupported shell arguments {' '.join(args)!r} "
          "(a login shell takes none, or -c COMMAND)", file=sys.stderr)
    return 2


def _wrap(config: str, command: str | None) -> int:
    from idlewrap.login import run_login

    return _finish(run_login(config=config, command=command, env=os.environ))


def _finish(status: int) -> NoReturn:
    """Leave at once: interpreter teardown would only delay the user's next prompt."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
