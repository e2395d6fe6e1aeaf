"""The real session runtime (wrapper.run_relayed) on the terminal it is started on.

Run by test_relay.py inside a pty the test holds (pexpect), the way asciinema's
pty tests drive its real recorder: no sshd, no root, no policy file. Events go to
EVENTS as JSON lines instead of syslog.

    python -m tests.relay_driver [--term T] [--write-timeout S] [--lock] [--password PW]
                                 EVENTS IDLE WARN -- ARGV...

With --password the lock's check is this fake (the password PW opens it, at once or
after --check-delay seconds); without it, the real PAM check (--pam-service-file
points it at another service file, to have none).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from idlewrap import deadline as clock
from idlewrap import overlay, unlock
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


class FakeCheck:
    """A password check that knows one password (run in the check's child, like PAM)."""

    def __init__(self, password: str, delay: float) -> None:
        self.password = password.encode()
        self.delay = delay

    def unavailable(self) -> str | None:
        return None

    def verify(self, user: str, password: bytes, tty: str | None, rhost: str | None) -> bool:
        time.sleep(self.delay)
        return password == self.password


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("events")
    parser.add_argument("idle", type=int)
    parser.add_argument("warn", type=int)
    parser.add_argument("--term", default=None)
    parser.add_argument("--warning", default=WARNING)
    parser.add_argument("--exempt", action="store_true")
    parser.add_argument("--write-timeout", type=float, default=None)
    parser.add_argument("--lock", action="store_true", help='action = "lock"')
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument("--terminate-after", type=int, default=None)
    parser.add_argument("--password", default=None)
    parser.add_argument("--check-delay", type=float, default=0.0)
    parser.add_argument("--pam-service-file", default=None)
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.write_timeout is not None:
        overlay._WRITE_TIMEOUT = args.write_timeout  # a test can wait 1 s, not 5
    if args.pam_service_file is not None:
        unlock.PAM_SERVICE_FILE = args.pam_service_file
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    mode = "interactive" if os.isatty(0) else "pipe"
    settings = Settings(idle_timeout=args.idle, warn_before=args.warn, message=MESSAGE,
                        warning=args.warning, exempt=args.exempt, bell=False,
                        action="lock" if args.lock else "terminate",
                        unlock_attempts=args.attempts, terminate_after=args.terminate_after)
    check = None if args.password is None else FakeCheck(args.password, args.check_delay)
    status = run_relayed(Plan(mode, argv[0], argv, dict(os.environ)), settings,
                         JsonEvents(args.events), term=args.term, check=check)
    sys.stdout.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
