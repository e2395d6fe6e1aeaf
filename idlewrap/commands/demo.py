"""``idlewrap demo``: a shell (or any command) under a short idle deadline, without root.

No policy file, no log: for trying the warning and the timeout on one's own terminal.
"""

import argparse
import os
import shutil

from idlewrap.durations import DurationError, parse_duration
from idlewrap.environment import exec_environment
from idlewrap.wrapper import run_demo


def parser() -> argparse.ArgumentParser:
    """The command line of ``idlewrap demo``."""
    command = argparse.ArgumentParser(
        prog="idlewrap demo",
        description="Run COMMAND (default $SHELL) under a short idle deadline: "
        "no policy file, no log, no root.",
    )
    command.add_argument("--idle-timeout", default="30s", metavar="D",
                         help="idle time before the session ends (default 30s)")
    command.add_argument("--warn-before", default="10s", metavar="D",
                         help="warning shown this long before the end (default 10s)")
    command.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]",
                         help="the command to run (default $SHELL)")
    return command


def main(argv: list[str]) -> int:
    """Run COMMAND (default ``$SHELL``) under the deadline; return its exit status."""
    usage = parser()
    options = usage.parse_args(argv)
    try:
        idle = parse_duration(options.idle_timeout)
        warn = parse_duration(options.warn_before)
    except DurationError as e:
        usage.error(str(e))
    if warn >= idle:
        usage.error("--warn-before must be shorter than --idle-timeout")
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command:
        command = [os.environ.get("SHELL") or "/bin/sh"]
    path = shutil.which(command[0])
    if path is None:
        usage.error(f"command not found: {command[0]}")
    return run_demo(idle_timeout=idle, warn_before=warn, argv=[path, *command[1:]],
                    env=exec_environment())  # not os.environ: Python coerced its locale
