"""The watchdog as a wrapper and the PAM hook reach it: one unix socket, a line per message.

The wrapper never waits for the watchdog: the socket is non-blocking, `connect` either
succeeds at once or the watchdog counts as absent (the login goes on, the wrapper
logs `config_error reason=no_watchdog`), and a message the socket cannot take right
away is dropped. Registering costs a socket, a connect and a send (docs/performance.md).
The connection itself is the wrapper's heartbeat: when the wrapper dies, the kernel
closes it, and a close without `end` first is what the watchdog acts on.

The PAM hook asks and waits (`request`): the connection's cgroup must exist, with sshd's
process in it, before sshd forks the session.
"""

from __future__ import annotations

import _socket as socket  # not socket.py: its enums and selectors cost each session ~0.2 MiB
import contextlib
import select

from idlewrap.watchdog import protocol

TYPE_CHECKING = False  # not typing's: a session never imports typing (records.py)
if TYPE_CHECKING:
    from idlewrap.idle import DeadMan


class WatchdogLink:
    """The wrapper's connection to the watchdog (fire and forget)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @classmethod
    def connect(cls, path: str) -> WatchdogLink | None:
        """Connect without waiting; None when no watchdog accepts at `path` right now."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            return None
        return cls(sock)

    def send(self, verb: str, **fields: object) -> None:
        """Send one message if the socket takes it now; never raises, never blocks."""
        with contextlib.suppress(OSError, ValueError):
            self._sock.send(protocol.encode(verb, **fields))

    def answered(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the answer to `register`; True if it was `ok`.

        Only a wrapper about to exec a command waits (the watchdog must see the wrapper,
        not the command, when it checks the registration), and the ~/.ssh/rc runner (the
        terminal must be root's before the user's rc runs).
        """
        try:
            if not select.select([self._sock], [], [], timeout)[0]:
                return False
            return self._sock.recv(protocol.MAX_LINE).split(b" ", 1)[0].strip() == b"ok"
        except OSError:
            return False

    def close(self) -> None:
        """Close the connection (after `end`, a clean end)."""
        self._sock.close()


class ReportingDeadMan:
    """A dead man's switch that also tells the watchdog the deadline it is armed for.

    The guard arms the switch `late` seconds after the idle deadline (idle.DEADMAN_GRACE);
    the watchdog is told the deadline itself and acts `wrapper_grace` after it. The guard re-arms
    lazily (once per warning interval while the user types, always before the deadline
    it last reported), so the watchdog hears from a working wrapper about as often;
    `disarm` means the session is ending and the watchdog expects `end` within its grace.
    """

    def __init__(self, switch: DeadMan, link: WatchdogLink, *, late: float) -> None:
        self._switch = switch
        self._link = link
        self._late = late

    def arm(self, seconds: float) -> None:
        """Arm the switch and report it."""
        self._switch.arm(seconds)
        deadline = max(seconds - self._late, 0.0)
        self._link.send(protocol.DEADLINE, **{"in": round(deadline, 3)})

    def disarm(self) -> None:
        """Disarm the switch and report that the session is ending."""
        self._switch.disarm()
        self._link.send(protocol.ENDING)

    def hold(self) -> None:
        """Disarm the switch and report a lock with no end: no deadline while it holds."""
        self._switch.hold()
        self._link.send(protocol.LOCKED)


def request(path: str, verb: str, timeout: float, **fields: object) -> tuple[str, dict[str, str]]:
    """Send one message and wait for the answer (the PAM hook's `open`); OSError if none."""
    with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(protocol.encode(verb, **fields))
        answer = b""
        while not answer.endswith(b"\n") and len(answer) < protocol.MAX_LINE:
            chunk = sock.recv(protocol.MAX_LINE)
            if not chunk:
                raise ConnectionResetError("the watchdog closed the connection")
            answer += chunk
    try:
        return protocol.decode(answer.strip())
    except ValueError as err:
        raise ConnectionError(f"the watchdog's answer: {err}") from None
