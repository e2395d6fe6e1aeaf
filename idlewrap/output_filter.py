"""Keep the program from asking the user's terminal for replies that look typed.

Most replies a terminal sends on its own are escape sequences the input classifier
tells apart from keys. Two are not: the answerback message a terminal sends for ENQ
(0x05; PuTTY's is the text `PuTTY`), and any report after S8C1T (`ESC SP G`), which
switches the terminal to 8-bit C1 controls (`0x9B` for CSI): in a UTF-8 stream those
are bytes like any others. A background job writing either once a minute would keep
the session open, so the relay passes the program's output through `OutputFilter`:
ENQ is dropped, and S8C1T becomes S7C1T (`ESC SP F`, the terminal's default, same
length), so no byte is ever held back.

Terminals (xterm, PuTTY) execute C0 controls found inside an escape sequence and go
on with the sequence, so `ESC BEL SP G` is S8C1T too: C0 bytes other than CAN, SUB and
ESC (which cancel or restart a sequence) may stand between its bytes. A sequence split
across reads is caught by remembering how much of it the last chunk ended with; only
its final `G`, always in the current chunk, is changed.

Cost: one `in` test for ESC and one for ENQ per chunk. A chunk with an ESC (any colour
or cursor motion) is translated once, SP and C0 controls to one byte, and searched for
ESC followed by that byte: only then does the regex run (docs/performance.md).
"""

from __future__ import annotations

import re

_EXECUTED = bytes([*range(0x18), 0x19, *range(0x1C, 0x20)])  # C0 but CAN, SUB, ESC
_C0 = rb"[\x00-\x17\x19\x1c-\x1f]"  # the same, as a regex class
# SP and the executed C0 controls as one byte: what may follow the ESC of S8C1T
_AS_ONE = bytes.maketrans(_EXECUTED + b" ", b"\x01" * (len(_EXECUTED) + 1))
_S8C1T = re.compile(rb"\x1b" + _C0 + rb"*\x20" + _C0 + rb"*G")
_OPEN = re.compile(rb"\x1b" + _C0 + rb"*(\x20" + _C0 + rb"*)?")  # a start of S8C1T
# Single bytes are tested as ints: `b"\x1b" in data` first fails to read b"\x1b" as an
# int, and that TypeError, built and dropped inside CPython, cost more than the scan.
_ESC = 0x1B
_ENQ = 0x05
_PREFIXES = (b"", b"\x1b", b"\x1b ")  # the open part, by state


def _to_s7c1t(match: re.Match[bytes]) -> bytes:
    return match[0][:-1] + b"F"


class OutputFilter:
    """Streaming filter of the program's output (see the module docstring)."""

    def __init__(self) -> None:
        # 0: nothing open; 1: the last chunk ended inside `ESC`; 2: inside `ESC SP`
        self._open = 0

    @property
    def quiet(self) -> bool:
        """No sequence is open: a chunk without ESC and ENQ passes unchanged."""
        return not self._open

    def feed(self, data: bytes) -> bytes:
        """The bytes to send on for the next chunk of output (the same length or shorter)."""
        if not self._open and _ESC not in data and _ENQ not in data:
            return data
        if _ENQ in data:
            data = data.replace(b"\x05", b"")
        prefix = _PREFIXES[self._open]
        buf = prefix + data if prefix else data
        if buf.translate(_AS_ONE).find(b"\x1b\x01") >= 0:  # how S8C1T starts
            buf = _S8C1T.sub(_to_s7c1t, buf)
        last = buf.rfind(b"\x1b")
        tail = _OPEN.fullmatch(buf, last) if last >= 0 else None
        self._open = 0 if tail is None else 1 if tail[1] is None else 2
        return buf[len(prefix):]
