"""``idlewrap demo``: a shell (or any command) under a short idle deadline, without root.

No policy file, no log: for trying the warning and the timeout on one's own terminal.
"""

import argparse
import os
import shutil

from idlewrap.durations import DurationError, parse_duration
from idlewrap.environment import exec_environment
from idlewrap.wrapper import run_demo


def main(argv: list[str]) -> int:
    """Run COMMAND (default ``$SHELL``) under the deadline; return its exit status."""
    parser = argparse.ArgumentParser(
        prog="idlewrap demo",
        description="Run COMMAND (default $SHELL) under a short idle deadline: "
        "no policy file, no log, no root.",
    )
    parser.add_argument("--idle-timeout", default="30s", metavar="D",
                        help="idle time before the session ends (default 30s)")
    parser.add_argument("--warn-before", default="10s", metavar="D",
                        help="warning shown this long before the end (default 10s)")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]")
    options = parser.parse_args(argv)
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
    path = shutil.which(command[0])
    if path is None:
        parser.error(f"command not found: {command[0]}")
    return run_demo(idle_timeout=idle, warn_before=warn, argv=[path, *command[1:]],
                    env=exec_environment())  # not os.environ: Python coerced its locale
