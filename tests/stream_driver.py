"""The real command-session runtime (wrapper.run_streamed) on the fds it is started with.

Run by test_streams.py with pipes (or sockets, or files) as its stdin, stdout and
stderr, the way sshd starts a command without a pty: no sshd, no root, no policy
file. Events go to EVENTS as JSON lines instead of syslog. Like a deployed wrapper
it is a child subreaper, so the teardown finds every process the command left.

    python -m tests.stream_driver EVENTS IDLE ACTIVITY -- ARGV...
"""

from __future__ import annotations

import argparse
import os

from idlewrap.hardening import protect_process
from idlewrap.session import Plan
from idlewrap.settings import Settings
from idlewrap.wrapper import run_streamed
from tests.relay_driver import MESSAGE, JsonEvents


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("events")
    parser.add_argument("idle", type=int)
    parser.add_argument("activity", choices=("any", "input"))
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    protect_process()
    settings = Settings(command_idle_timeout=args.idle, command_activity=args.activity,
                        message=MESSAGE)
    status = run_streamed(Plan("command", argv[0], argv, dict(os.environ)), settings,
                          JsonEvents(args.events))
    os._exit(status)


if __name__ == "__main__":
    main()
