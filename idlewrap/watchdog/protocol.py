"""The watchdog's wire format: one line per message, `verb key=value ...`.

Spoken over a unix stream socket by the PAM hook (`open`, `close`: it waits for the
answer), the wrapper (`register`, `deadline`, `ending`, `locked`, `exec`, `end`: it never waits)
and the daemon (`ok`, `refused`). Values hold no white space; nobody but the daemon
acts on them, and it trusts none it cannot check against /proc.
"""

from __future__ import annotations

MAX_LINE = 1024  # longer lines are a protocol error: the daemon drops the client

# what each side sends
OPEN, CLOSE = "open", "close"  # PAM hook: the connection's PAM session opened / closed
REGISTER = "register"  # wrapper (kind=session) or ~/.ssh/rc runner (kind=rc) starts
DEADLINE = "deadline"  # the dead man's switch fires in `in` seconds
ENDING = "ending"  # the deadline is off: the session is ending (teardown runs)
LOCKED = "locked"  # no deadline while the session is locked (action = "lock", no end set)
EXEC = "exec"  # a command session hands over to the command (exec, untimed)
END = "end"  # clean end: the session's processes are gone
OK, REFUSED = "ok", "refused"  # the daemon's answers to the PAM hook


def encode(verb: str, **fields: object) -> bytes:
    """One message: `verb` and the fields that are not None, as a line."""
    words = [verb]
    for key, value in fields.items():
        if value is None:
            continue
        text = str(value)
        if not text or any(c.isspace() for c in text):
            raise ValueError(f"{key}: {text!r} cannot be sent (empty or white space)")
        words.append(f"{key}={text}")
    return (" ".join(words) + "\n").encode()


def decode(line: bytes) -> tuple[str, dict[str, str]]:
    """(verb, fields) of one line without its newline; ValueError if it is not one."""
    words = line.decode().split()
    if not words:
        raise ValueError("empty message")
    fields = {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ValueError(f"not key=value: {word!r}")
        fields[key] = value
    return words[0], fields
