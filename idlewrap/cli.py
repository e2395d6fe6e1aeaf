"""The command line: the wrapper itself, and its helper commands.

    python3 -I -m idlewrap [--config PATH]          the wrapper (sshd ForceCommand)
    idlewrap demo [--idle-timeout D] [--warn-before D] [-- COMMAND [ARG...]]
    idlewrap check [--config PATH]
    idlewrap policy --user NAME [--address IP] [--command] [--config PATH] [--json]
    idlewrap install-shell PATH [--config PATH]

Only the command line an admin wrote decides what the wrapper does: no
environment variable is consulted except those sshd sets for the session.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from idlewrap import __version__

DEFAULT_CONFIG = "/etc/idlewrap/idlewrap.toml"


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]) and return the exit status."""
    args = sys.argv[1:] if argv is None else argv
    commands: dict[str, Callable[[list[str]], int]] = {
        "demo": _demo,
        "check": _check,
        "policy": _policy,
        "install-shell": _install_shell,
        "audit": lambda a: int(__import__("idlewrap.commands.audit", fromlist=["main"]).main(a)),
    }
    if args and args[0] in commands:
        return commands[args[0]](args[1:])
    parser = _parser(
        "idlewrap",
        "Run the user's shell and end the session after a time without input. "
        f"Commands: {', '.join(commands)} (idlewrap COMMAND --help).",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH",
                        help=f"the policy file (default {DEFAULT_CONFIG})")
    parser.add_argument("--version", action="version", version=f"idlewrap {__version__}")
    options = parser.parse_args(args)
    return _wrap(options.config, os.environ.get("SSH_ORIGINAL_COMMAND"))


def login_shell(args: list[str], config: str = DEFAULT_CONFIG) -> int:
    """The login-shell launcher's entry: sshd runs it with no arguments or `-c COMMAND`."""
    if args in ([], ["-l"], ["--login"], ["-i"]):
        return _wrap(config, None)
    if len(args) >= 2 and args[0] == "-c":
        return _wrap(config, args[1])
    print(f"idlewrap: unsupported shell arguments {' '.join(args)!r} "
          "(a login shell takes none, or -c COMMAND)", file=sys.stderr)
    return 2


def _wrap(config: str, command: str | None) -> int:
    from idlewrap.login import run_login

    return _finish(run_login(config=config, command=command, env=os.environ))


def _demo(args: list[str]) -> int:
    from idlewrap.durations import DurationError, parse_duration

    parser = _parser("idlewrap demo", "Run COMMAND (default $SHELL) under a short idle deadline: "
                     "no policy file, no log, no root.")
    parser.add_argument("--idle-timeout", default="30s", metavar="D",
                        help="idle time before the session ends (default 30s)")
    parser.add_argument("--warn-before", default="10s", metavar="D",
                        help="warning shown this long before the end (default 10s)")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]")
    options = parser.parse_args(args)
    try:
        idle = parse_duration(options.idle_timeout)
        warn = parse_duration(options.warn_before)
    except DurationError as e:
        parser.error(str(e))
    if warn >= idle:
        parser.error("--warn-before must be shorter than --idle-timeout")
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command:
        command = [os.environ.get("SHELL") or "/bin/sh"]
    import shutil  # the demo's alone: sessions do not carry it

    path = shutil.which(command[0])
    if path is None:
        parser.error(f"command not found: {command[0]}")
    from idlewrap.wrapper import run_demo

    return _finish(run_demo(idle_timeout=idle, warn_before=warn, argv=[path, *command[1:]],
                            env=os.environ))


def _check(args: list[str]) -> int:
    from idlewrap import check

    return check.main(args)


def _policy(args: list[str]) -> int:
    from idlewrap import explain

    return explain.main(args)


def _install_shell(args: list[str]) -> int:
    from idlewrap import launcher

    return launcher.main(args)


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description)


def _finish(status: int) -> NoReturn:
    """Leave at once: interpreter teardown would only delay the user's next prompt."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
