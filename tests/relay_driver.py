"""The real session runtime (wrapper.run_relayed) on the terminal it is started on.

Run by test_relay.py inside a pty the test holds (pexpect), the way asciinema's
pty tests drive its real recorder: no sshd, no root, no policy file. Events go to
EVENTS as JSON lines instead of syslog.

    python -m tests.relay_driver [--term T] [--write-timeout S] EVENTS IDLE WARN -- ARGV...
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from idlewrap import deadline as clock
from idlewrap import overlay
from idlewrap.session import Plan
from idlewrap.settings import Settings
from idlewrap.wrapper import run_relayed

MESSAGE = "driver: closed after {idle} idle."
WARNING = "Idle session."


class JsonEvents:
    """An event sink that appends one JSON object per event to a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def emit(self, event: str, **fields: object) -> None:
        record = {"event": event, "at": clock.now(), **fields}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("events")
    parser.add_argument("idle", type=int)
    parser.add_argument("warn", type=int)
    parser.add_argument("--term", default=None)
    parser.add_argument("--warning", default=WARNING)
    parser.add_argument("--exempt", action="store_true")
    parser.add_argument("--write-timeout", type=float, default=None)
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.write_timeout is not None:
        overlay._WRITE_TIMEOUT = args.write_timeout  # a test can wait 1 s, not 5
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    mode = "interactive" if os.isatty(0) else "pipe"
    settings = Settings(idle_timeout=args.idle, warn_before=args.warn, message=MESSAGE,
                        warning=args.warning, exempt=args.exempt, bell=False)
    status = run_relayed(Plan(mode, argv[0], argv, dict(os.environ)), settings,
                         JsonEvents(args.events), term=args.term)
    sys.stdout.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
