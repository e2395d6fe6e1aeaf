"""~/.ssh/rc in login-shell mode: run it without a terminal, for two seconds at most.

Before a session's shell, sshd runs `<login shell> -c '/bin/sh <home>/.ssh/rc'`
(session.c do_rc_files; skipped only under a ForceCommand, `PermitUserRC no` or a key's
`no-user-rc`) and waits for it. With the launcher as the login shell that command comes
here. Exec'ing it like any command would give the rc file the session's terminal with
no deadline: `exec bash -i </dev/tty >/dev/tty 2>&1` there is a shell sshd waits for.

So the rc file runs as sshd meant it (stdin from sshd, for X11's xauth data; its
output on the session's terminal), but:
- in a session of its own with no controlling terminal: /dev/tty cannot be opened;
- after the watchdog took the terminal away (it is root's, 0600): $SSH_TTY cannot be
  opened either, which leaves the two descriptors it was given;
- for RC_LIMIT seconds at most, then every process it started is ended (this process
  is their subreaper, as the wrapper is), as they are when it exits before that; a
  dead man's switch kills this process if it is stopped (`kill -STOP $PPID` from the
  rc file), and the watchdog then ends the connection.
What ~/.ssh/rc is for (xauth, a symlink to the agent's socket) takes milliseconds.
"""

from __future__ import annotations

import os
import select
import signal
import sys

from idlewrap import teardown
from idlewrap.environment import exec_environment
from idlewrap.hardening import EXIT_TRACED, DeadMansSwitch, protect_process, tracer
from idlewrap.idle import DEADMAN_GRACE
from idlewrap.policy import load_policy_failsafe
from idlewrap.spawn import spawn_without_terminal
from idlewrap.watchdog import protocol
from idlewrap.watchdog.link import WatchdogLink

RC_LIMIT = 2.0
SHELL = "/bin/sh"  # what sshd names (_PATH_BSHELL)
EXIT_STOPPED = 124  # as timeout(1); sshd ignores the status
REGISTER_WAIT = 0.5


def run_user_rc(config: str, path: str) -> int:
    """Run the rc file under the rules above; its exit status (124 when stopped)."""
    env = exec_environment()
    protect_process()
    if tracer():
        print("idlewrap: the rc runner is traced: ~/.ssh/rc not run", file=sys.stderr)
        return EXIT_TRACED
    policy, _ = load_policy_failsafe(config)
    watchdog = WatchdogLink.connect(policy.watchdog.socket)
    if watchdog is not None:
        tty = next((os.ttyname(fd) for fd in (1, 2) if os.isatty(fd)), None)
        watchdog.send(protocol.REGISTER, kind="rc", tty=tty)
        watchdog.answered(REGISTER_WAIT)
        watchdog.send(protocol.DEADLINE, **{"in": RC_LIMIT})  # then `ending`, for the teardown
    deadman = DeadMansSwitch()  # a stopped runner (kill -STOP $PPID) would hold rc forever
    deadman.arm(RC_LIMIT + DEADMAN_GRACE)
    pid = spawn_without_terminal(SHELL, [SHELL, path], env)
    status = _wait(pid, RC_LIMIT)
    if status is None:
        print(f"idlewrap: ~/.ssh/rc still ran after {RC_LIMIT:g}s: stopped", file=sys.stderr)
    if watchdog is not None:
        watchdog.send(protocol.ENDING)
    failed = teardown.end_all(_reap)
    deadman.disarm()
    if watchdog is not None and failed is None:
        watchdog.send(protocol.END)
    if status is None:
        return EXIT_STOPPED
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def _wait(pid: int, limit: float) -> int | None:
    """The wait status of `pid`, or None if it still runs after `limit` seconds."""
    pidfd = os.pidfd_open(pid)
    try:
        if not select.select([pidfd], [], [], limit)[0]:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
    finally:
        os.close(pidfd)
    return os.waitpid(pid, 0)[1]


def _reap() -> None:
    """Collect every exited child (orphans of the rc file come to this subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
