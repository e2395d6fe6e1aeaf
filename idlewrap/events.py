"""The audit trail: one logfmt line per event, sent to syslog (authpriv) without blocking.

Each event is one datagram formatted like glibc's ``syslog(3)`` writes it (RFC 3164):
``<PRI>Mmm dd hh:mm:ss idlewrap[PID]: event=... key=value ...``. It is sent with
``sendto`` on a non-blocking ``AF_UNIX`` ``SOCK_DGRAM`` socket, so a slow or missing
syslog daemon never holds up the relay: a full receiver queue keeps a few events for
later, anything else is reported once on stderr and enforcement goes on unlogged.
"""

# _socket, not socket: socket.py's enums and selectors cost each session ~0.2 MiB
import _socket as socket
import contextlib
import errno
import math
import os
import time
from collections import deque
from collections.abc import Mapping

try:  # not hashlib: it maps OpenSSL's libcrypto (~4 MB per session) for one digest
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - Python 3.12+ renamed the builtin module
    from _sha2 import sha256  # type: ignore[import-not-found]

from idlewrap.identity import parse_ssh_connection
from idlewrap.settings import DEFAULT_SYSLOG_SOCKET

IDENT = "idlewrap"
FACILITY_AUTHPRIV = 10
INFO, NOTICE, WARNING = 6, 5, 4
# Events an admin may want to alert on stand out from the routine ones.
SEVERITY: Mapping[str, int] = {
    "timeout": NOTICE, "exempt": NOTICE, "unlock_failed": NOTICE, "config_error": WARNING,
    "teardown_failed": WARNING, "watchdog_kill": WARNING, "wrapper_refused": WARNING,
    "watchdog_error": WARNING,
}
# Events waiting for a slow receiver; beyond this the oldest are dropped.
MAX_PENDING = 32
# Characters kept of one value: a huge user-controlled value must not make the datagram
# too big to send (EMSGSIZE) or swamp the log.
MAX_VALUE_CHARS = 1024
TRUNCATED = "…"
CLOSE_WAIT = 1.0
_RETRY_INTERVAL = 0.01
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
# The receiver's queue is full (EAGAIN) or the kernel is short of buffers for a moment:
# worth another try later. Any other error loses the event.
_RETRY_ERRNOS = frozenset({errno.EAGAIN, errno.ENOBUFS})


def logfmt(fields: Mapping[str, object]) -> str:
    """Format ``fields`` as one logfmt line, in order, leaving out ``None`` values.

    Booleans are ``true``/``false``, floats have at most three decimals, other values
    their ``str()``. A value that is empty or holds a space, ``=``, ``"``, ``\\`` or any
    character that is not printable is double-quoted with JSON-style escapes (``\\n``,
    ``\\"``, ``\\u2028``, ...), so no value can start a new line or fake a ``key=value``
    pair. Characters outside ``[A-Za-z0-9_]`` in keys become ``_``.
    """
    return " ".join(
        f"{_key(key)}={_value(value)}" for key, value in fields.items() if value is not None
    )


def _key(name: str) -> str:
    return "".join(c if c in _KEY_CHARS else "_" for c in name) or "_"


def _value(value: object) -> str:
    text = _text(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + TRUNCATED
    if text and text.isprintable() and not any(c in ' ="\\' for c in text):
        return text
    return '"' + "".join(map(_escape, text)) + '"'


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        text = f"{value:.3f}".rstrip("0").rstrip(".")
        return "0" if text == "-0" else text
    return str(value)


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    if code > 0xFFFF:
        # JSON has no escape above the BMP: write the UTF-16 surrogate pair.
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def connection_fields(env: Mapping[str, str]) -> dict[str, object]:
    """``rhost``, ``rport`` and ``conn`` from ``SSH_CONNECTION`` in ``env``.

    ``conn`` is a short hash of the connection's address and port pairs: the PAM hook
    and every wrapper of one ssh connection compute the same value. A local login (no
    ``SSH_CONNECTION``, or a malformed one) gives an empty dict.
    """
    value = env.get("SSH_CONNECTION", "")
    address, port = parse_ssh_connection(value)
    if address is None:
        return {}
    normalized = " ".join(value.split())
    digest = sha256(f"idlewrap-conn\0{normalized}".encode()).hexdigest()
    return {"rhost": str(address), "rport": port, "conn": digest[:12]}


def new_session_id() -> str:
    """A random id for one wrapper run: 16 hex digits."""
    return os.urandom(8).hex()


def syslog_datagram(severity: int, message: str, *, now: float | None = None) -> bytes:
    """``message`` framed the way glibc's ``syslog(3)`` frames it for ``/dev/log``."""
    t = time.localtime(now)
    # Month names by hand: strftime's %b follows the locale, syslog's format does not.
    clock = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    stamp = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {clock}"
    priority = FACILITY_AUTHPRIV * 8 + severity
    line = f"<{priority}>{stamp} {IDENT}[{os.getpid()}]: {message}"
    # logfmt escaped every lone surrogate; "replace" only guards against a future slip.
    return line.encode("utf-8", "replace")


class EventLog:
    """Send audit events to a syslog socket; never raises, never blocks (see module doc)."""

    def __init__(
        self,
        socket_path: str = DEFAULT_SYSLOG_SOCKET,
        *,
        base: Mapping[str, object] | None = None,
        stderr_fd: int = 2,
    ) -> None:
        """Log to ``socket_path``; every event carries the ``base`` fields.

        ``stderr_fd`` receives the one line saying events cannot be logged; ``-1``
        keeps it quiet (e.g. a command session whose stderr the client reads).
        """
        self._path = socket_path
        self._base: dict[str, object] = dict(base or {})
        self._stderr_fd = stderr_fd
        self._sock: socket.socket | None = None
        self._pending: deque[bytes] = deque(maxlen=MAX_PENDING)
        self._warned = False

    def update_base(self, **fields: object) -> None:
        """Add or change fields carried by every later event (``None`` hides one)."""
        self._base.update(fields)

    def emit(self, event: str, **fields: object) -> None:
        """Log ``event`` with the base fields and ``fields``, as one datagram."""
        record: dict[str, object] = {"event": event, **self._base, **fields}
        # A base field named "event" must not replace the event itself.
        record["event"] = event
        try:
            datagram = syslog_datagram(SEVERITY.get(event, INFO), logfmt(record))
        except Exception as exc:  # an odd value from a caller must never end enforcement
            self._warn(f"cannot format event {event!r}: {exc}")
            return
        # Keep events in order: a new one waits behind those already waiting.
        self._pending.append(datagram)
        self._flush()

    def close(self) -> None:
        """Send what is still waiting, trying for up to ``CLOSE_WAIT`` seconds."""
        deadline = time.monotonic() + CLOSE_WAIT
        while self._flush() and time.monotonic() < deadline:
            time.sleep(_RETRY_INTERVAL)
        self._pending.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _flush(self) -> bool:
        """Send waiting events in order until the receiver is full; True if some remain."""
        while self._pending:
            try:
                if self._sock is None:
                    self._sock = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK
                    )
                self._sock.sendto(self._pending[0], self._path)
            except OSError as exc:
                if exc.errno in _RETRY_ERRNOS:
                    return True
                reason = exc.strerror or str(exc)
                self._warn(f"cannot log to {self._path}: {reason} (events go unlogged)")
            self._pending.popleft()
        return False

    def _warn(self, problem: str) -> None:
        """Say once per EventLog that events are being lost; the session goes on."""
        if self._warned or self._stderr_fd < 0:
            return
        self._warned = True
        # A raw-mode terminal does not turn "\n" into a new line by itself.
        end = "\r\n" if os.isatty(self._stderr_fd) else "\n"
        with contextlib.suppress(OSError):
            os.write(self._stderr_fd, f"{IDENT}: {problem}{end}".encode(errors="replace"))

