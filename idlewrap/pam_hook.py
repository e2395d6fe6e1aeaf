"""The ``pam_exec.so`` program: log the opening and closing of a PAM session, tell the watchdog.

sshd's session stack runs ``python3 -I -m idlewrap.pam_hook [--config PATH]`` as root,
in the ``sshd: user [priv]`` process, once at open_session and once at close_session.
It sends one event (``pam_open_session`` / ``pam_close_session``) to the syslog socket
named by the policy's ``[log]`` table, with the same ``conn`` the wrappers of that
connection log. At open_session it then tells the watchdog (``[watchdog] socket``) and
waits for its answer: the watchdog puts this hook's parent, sshd's privileged process,
into the connection's cgroup before sshd forks the session (idlewrap/watchdog/).

It never writes to stdout, and exits 0 unless ``[watchdog] required = true`` and the
watchdog did not take the connection (not running, or it could not follow it): then it
exits 1, which denies the login with ``session required pam_exec.so``. A logging fault,
a broken policy or a bug of its own never denies a login.
"""

import contextlib
import os
import pwd
import sys
from collections.abc import Sequence

EVENTS = {"open_session": "pam_open_session", "close_session": "pam_close_session"}
USAGE = "usage: python3 -I -m idlewrap.pam_hook [--config PATH]"
WATCHDOG_WAIT = 2.0  # seconds sshd may wait for the watchdog at open_session


def main(argv: Sequence[str] | None = None) -> int:
    """Log the event for ``PAM_TYPE`` (nothing for other types); the exit status."""
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    except Exception as exc:  # one line, never a traceback, and never a denied login
        _say(f"idlewrap pam_hook: {exc}")
    return 0


def _run(args: Sequence[str]) -> int:
    # Imported here so that even a broken install ends in one line and exit 0.
    from idlewrap.environment import exec_environment

    env = exec_environment()
    event = EVENTS.get(env.get("PAM_TYPE", ""))
    if event is None:
        return 0
    from idlewrap.events import EventLog, connection_fields
    from idlewrap.policy import load_policy_failsafe
    from idlewrap.settings import DEFAULT_CONFIG

    config = _config_path(args, DEFAULT_CONFIG)
    if config is None:
        _say(f"idlewrap pam_hook: {USAGE}; reading {DEFAULT_CONFIG}")
        config = DEFAULT_CONFIG
    # Problems with the file are the wrapper's to report (config_error); here a broken
    # file just means the built-in [log] settings.
    policy, _ = load_policy_failsafe(config)
    user = env.get("PAM_USER")
    fields: dict[str, object] = {"user": user, "uid": _uid(user)}
    fields.update(connection_fields(env))
    address = fields.get("rhost")  # the client's IP, for the policy's address rules
    if env.get("PAM_RHOST"):
        # sshd's own PAM item: unlike SSH_CONNECTION, a user's ~/.pam_environment cannot
        # have changed it.
        fields["rhost"] = env["PAM_RHOST"]
    fields.update(service=env.get("PAM_SERVICE"), tty=env.get("PAM_TTY"))
    log = EventLog(policy.log_socket, base=fields)
    log.emit(event)
    log.close()
    refused = _tell_watchdog(policy.watchdog.socket, event, {**fields, "rhost": address})
    if refused is None or not policy.watchdog.required or event != "pam_open_session":
        return 0  # without a watchdog the wrapper logs config_error reason=no_watchdog
    _say(f"idlewrap pam_hook: login refused: the watchdog at {policy.watchdog.socket}: "
         f"{refused}")
    return 1


def _tell_watchdog(path: str, event: str, fields: dict[str, object]) -> str | None:
    """Announce the connection (open) or its end (close); why it failed, or None."""
    from idlewrap.watchdog import protocol
    from idlewrap.watchdog.link import request

    verb = protocol.OPEN if event == "pam_open_session" else protocol.CLOSE
    try:
        answer, details = request(path, verb, WATCHDOG_WAIT, pid=os.getppid(),
                                  user=fields["user"], conn=fields.get("conn"),
                                  rhost=fields.get("rhost"))
    except (OSError, ValueError) as err:
        return str(err)
    if answer != protocol.OK:
        return f"refused ({details.get('reason', answer)})"
    return None


def _config_path(args: Sequence[str], default: str) -> str | None:
    """The ``--config`` path or ``default``; None for a command line that makes no sense."""
    match list(args):
        case ["--config", path]:
            return path
        case [arg] if arg.startswith("--config="):
            return arg.removeprefix("--config=")
        case []:
            return default
    return None


def _uid(user: str | None) -> int | None:
    if user is None:
        return None
    try:
        return pwd.getpwnam(user).pw_uid
    except (KeyError, ValueError):  # unknown user, or a name with a NUL byte
        return None


def _say(line: str) -> None:
    """One line on stderr (pam_exec sends it to /dev/null unless ``log=`` is set)."""
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode(errors="replace"))


if __name__ == "__main__":
    raise SystemExit(main())
