"""The password check behind the lock screen: PAM, in a short-lived child process.

A child, forked from the wrapper for each password typed:

- pam_unix sleeps about 2 s after a wrong password. The relay must go on meanwhile
  (output held, resizes, the session's end), so the check runs beside it and its
  verdict arrives as one byte on a pipe the relay polls (`RunningCheck.fd`).
- pam_unix, called as the user, forks the setgid ``unix_chkpwd`` helper and waits for
  it. The wrapper is a child subreaper whose loop reaps every child with waitpid(-1):
  run there, that exit status would be stolen. Here ``unix_chkpwd`` is the check
  process's own child. The wrapper's loop does reap the check process, and that does
  not matter: the verdict is on the pipe, never in an exit status.
- Forked, not exec'd: the child inherits the wrapper's non-dumpable flag, so no
  process of the same user can ptrace it to read the password or forge the verdict
  (an exec'd helper is dumpable until it turns that off). The password reaches it in
  memory, through the fork: never argv, the environment or a pipe.

python-pam is imported in the child only: a session that never locks does not load it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from typing import TYPE_CHECKING, NoReturn

from idlewrap.signals import WATCHED

if TYPE_CHECKING:
    from idlewrap.idle import LockPlan, PasswordCheck

PAM_SERVICE = "idlewrap"
# Linux-PAM silently uses /etc/pam.d/other for a service it has no file for.
PAM_SERVICE_FILE = "/etc/pam.d/idlewrap"
CHECK_TIMEOUT = 30.0  # a PAM stack that hangs (a directory server gone) fails the attempt
_OK, _WRONG = b"1", b"0"
_RESULT_FD = 3  # where the child keeps its end of the pipe; every other fd is closed


def service_installed() -> bool:
    """Whether the PAM service the lock screen checks passwords with exists."""
    return os.path.isfile(PAM_SERVICE_FILE)


class PamCheck:
    """The real check: the login's own password and account, by the `idlewrap` service."""

    def unavailable(self) -> str | None:
        """Why no password can be checked here (a `config_error` reason), or None."""
        return None if service_installed() else "no_pam_service"

    def verify(self, user: str, password: bytes, tty: str | None, rhost: str | None) -> bool:
        """pam_authenticate, then pam_acct_mgmt, with PAM_TTY and PAM_RHOST set (blocks)."""
        # python-pam re-exports these from a private module that mypy does not follow
        from pam import PAM_RHOST, PAM_TTY, PamAuthenticator  # type: ignore[attr-defined]

        auth = PamAuthenticator()
        authenticate = auth.pam_authenticate

        def with_items(handle: object, flags: int) -> int:
            # python-pam sets PAM_TTY only from $DISPLAY or a tty on fd 0, and never
            # PAM_RHOST; pam_access, pam_faillock and the logs want both. Its
            # per-instance bindings are there to be replaced like this.
            for item, value in ((PAM_TTY, tty), (PAM_RHOST, rhost)):
                if value:
                    auth.pam_set_item(handle, item, ctypes.c_char_p(value.encode()))
            result: int = authenticate(handle, flags)
            return result

        auth.pam_authenticate = with_items
        # authenticate() runs pam_acct_mgmt after a good password: an account locked or
        # expired since the login fails here. No pam_setcred (resetcreds=False).
        ok: bool = auth.authenticate(user, password, service=PAM_SERVICE, resetcreds=False)
        return ok


class RunningCheck:
    """One password check in its child process; the relay polls `fd` for the verdict."""

    def __init__(self, pid: int, fd: int, started: float) -> None:
        self.pid = pid
        self.fd = fd
        self.deadline = started + CHECK_TIMEOUT
        self._pidfd = os.pidfd_open(pid)  # signals it safely even after the loop reaped it

    def verdict(self) -> bool | None:
        """True: the password unlocks; False: it does not (or the check died); None: not yet."""
        try:
            data = os.read(self.fd, 1)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        return data == _OK

    def cancel(self) -> None:
        """Stop the check (the session ends, or it took too long) and release its fds."""
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        for fd in (self.fd, self._pidfd):
            with contextlib.suppress(OSError):
                os.close(fd)


def start_check(check: PasswordCheck, plan: LockPlan, password: bytes, now: float) -> RunningCheck:
    """Fork a child that checks `password` for `plan.user` and writes its verdict."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        raise
    if pid == 0:
        _child(check, plan, password, write_end)
    os.close(write_end)
    os.set_blocking(read_end, False)
    return RunningCheck(pid, read_end, now)


def _child(check: PasswordCheck, plan: LockPlan, password: bytes, result_fd: int) -> NoReturn:
    verdict = _WRONG
    try:
        _leave_the_relay(result_fd)
        if check.verify(plan.user, password, plan.tty, plan.rhost):
            verdict = _OK
    except BaseException:  # any failure is a wrong password, never an unlock
        pass
    finally:
        with contextlib.suppress(OSError):
            os.write(_RESULT_FD, verdict)
        os._exit(0)


def _leave_the_relay(result_fd: int) -> None:
    """Drop what the child inherited from the wrapper's loop but must not use.

    The signal wakeup pipe and handlers (a SIGCHLD from unix_chkpwd must not reach the
    wrapper's loop; the teardown's SIGHUP and SIGTERM must end the child), the
    session's pty master and the user's terminal (a check still running must not keep
    the session's terminal open), and $DISPLAY (python-pam would make it PAM_TTY).
    """
    signal.set_wakeup_fd(-1)
    for signum in WATCHED:
        signal.signal(signum, signal.SIG_DFL)
    os.dup2(result_fd, _RESULT_FD, inheritable=False)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(_RESULT_FD + 1, os.sysconf("SC_OPEN_MAX"))
    os.environ.pop("DISPLAY", None)
