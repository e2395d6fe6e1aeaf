"""The audit trail: logfmt formatting, the syslog datagram, and a never-blocking EventLog."""

import json
import os
import re
import socket
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idlewrap.events import (
    MAX_PENDING,
    MAX_VALUE_CHARS,
    TRUNCATED,
    EventLog,
    connection_fields,
    logfmt,
    new_session_id,
)

HEADER = re.compile(
    r"<(?P<pri>\d+)>(?P<mon>[A-Z][a-z]{2}) (?P<day>[ \d]\d) \d\d:\d\d:\d\d "
    r"idlewrap\[(?P<pid>\d+)\]: (?P<body>.*)",
    re.DOTALL,
)
KEY = re.compile(r"([A-Za-z0-9_]+)=")
NASTY = ["\n", "\r", "\t", " ", "=", '"', "\\", "\x00", "\x1b", "\u2028", "\u202e", "\u00a0",
         "\udc80", "\U000e0001", "é", "中"]


def parse_logfmt(line: str) -> dict[str, str]:
    """A strict logfmt reader: unquoted values run to the next space, quoted ones are JSON."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(line):
        match = KEY.match(line, pos)
        assert match, f"no key at {pos}: {line!r}"
        key, pos = match.group(1), match.end()
        if line.startswith('"', pos):
            value, pos = json.JSONDecoder().raw_decode(line, pos)
        else:
            end = line.find(" ", pos)
            end = len(line) if end < 0 else end
            value, pos = line[pos:end], end
            assert value and '"' not in value and "=" not in value
        assert key not in fields, f"duplicate key {key}"
        fields[key] = value
        if pos < len(line):
            assert line[pos] == " ", line
            pos += 1
            assert pos < len(line)
    return fields


def parse_datagram(data: bytes) -> tuple[int, int, dict[str, str]]:
    """(PRI, PID, fields) of one datagram, checking the RFC 3164 header."""
    match = HEADER.fullmatch(data.decode("utf-8"))
    assert match, data
    return int(match["pri"]), int(match["pid"]), parse_logfmt(match["body"])


def drain(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting at ``sock``, without blocking."""
    got = []
    while True:
        try:
            got.append(sock.recv(65536, socket.MSG_DONTWAIT))
        except BlockingIOError:
            return got


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield path, sock
    sock.close()


@pytest.fixture
def stderr_pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    yield r, w
    os.close(r)
    os.close(w)


class Reader(threading.Thread):
    """Drain ``sock`` every 20 ms from ``after`` seconds on, for ``seconds`` seconds."""

    def __init__(self, sock: socket.socket, *, after: float, seconds: float) -> None:
        super().__init__()
        self.sock, self.after, self.seconds = sock, after, seconds
        self.got: list[bytes] = []

    def run(self) -> None:
        time.sleep(self.after)
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            self.got.extend(drain(self.sock))
            time.sleep(0.02)
        self.got.extend(drain(self.sock))


def read_all(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""


# -- logfmt


def test_logfmt_plain_values_stay_bare() -> None:
    line = logfmt({"event": "timeout", "user": "alice", "uid": 1001, "idle": 600.0,
                   "warned": True, "exempt": False, "rule": None, "remaining": 29.98765})
    assert line == ("event=timeout user=alice uid=1001 idle=600 warned=true exempt=false "
                    "remaining=29.988")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("two words", '"two words"'),
        ("a=b", '"a=b"'),
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ("", '""'),
        ("x\nevent=timeout user=root", r'"x\nevent=timeout user=root"'),
        ("\r\t\x00\x1b", r'"\r\t\u0000\u001b"'),
        ("line\u2028sep", r'"line\u2028sep"'),
        ("rtl\u202eoverride", r'"rtl\u202eoverride"'),
        ("tag\U000e0001", r'"tag\udb40\udc01"'),
        ("raw\udc80byte", r'"raw\udc80byte"'),
        ("café", "café"),
        (-0.0001, "0"),
        (float("nan"), "nan"),
    ],
)
def test_logfmt_quotes_and_escapes(value: object, expected: str) -> None:
    assert logfmt({"v": value}) == f"v={expected}"


def test_logfmt_cleans_keys() -> None:
    assert logfmt({"bad key=": 1, "": 2, "ok_1": 3}) == "bad_key_=1 _=2 ok_1=3"


def test_logfmt_truncates_huge_values() -> None:
    fields = parse_logfmt(logfmt({"cmd": "x y" * 10_000}))
    assert fields["cmd"] == ("x y" * 10_000)[:MAX_VALUE_CHARS] + TRUNCATED


texts = st.one_of(
    st.text(st.one_of(st.characters(), st.sampled_from(NASTY)), max_size=40),
    st.sampled_from(["key=value", "x\nevent=timeout user=root", 'a="b c"']),
)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(min_value=-1e9, max_value=1e9),
    texts,
)


@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), values))
def test_logfmt_round_trips(fields: dict[str, object]) -> None:
    line = logfmt(fields)
    # One printable line, valid UTF-8: nothing can start a new syslog line or hide text.
    assert line.isprintable()
    line.encode("utf-8")
    parsed = parse_logfmt(line)
    expected = {k: v for k, v in fields.items() if v is not None}
    assert list(parsed) == list(expected)
    for key, value in expected.items():
        if isinstance(value, bool):
            assert parsed[key] == ("true" if value else "false")
        elif isinstance(value, float):
            assert float(parsed[key]) == pytest.approx(value, abs=0.0005)
        else:
            assert parsed[key] == str(value)


# -- EventLog against a receiver


def test_one_datagram_per_event(receiver: tuple[str, socket.socket]) -> None:
    path, sock = receiver
    log = EventLog(path, base={"user": "alice", "uid": 1001, "tty": None})
    log.update_base(rule="privileged", idle_timeout=600)
    log.emit("warning", remaining=30)
    log.emit("timeout", idle=600.0)
    log.emit("config_error", reason="invalid", problem='line 3: "x" is not a duration')
    log.close()
    got = [parse_datagram(d) for d in drain(sock)]
    assert [pri for pri, _, _ in got] == [86, 85, 84]  # authpriv.info, .notice, .warning
    assert {pid for _, pid, _ in got} == {os.getpid()}
    assert [list(f.items()) for _, _, f in got] == [
        [("event", "warning"), ("user", "alice"), ("uid", "1001"), ("rule", "privileged"),
         ("idle_timeout", "600"), ("remaining", "30")],
        [("event", "timeout"), ("user", "alice"), ("uid", "1001"), ("rule", "privileged"),
         ("idle_timeout", "600"), ("idle", "600")],
        [("event", "config_error"), ("user", "alice"), ("uid", "1001"), ("rule", "privileged"),
         ("idle_timeout", "600"), ("reason", "invalid"),
         ("problem", 'line 3: "x" is not a duration')],
    ]


def test_event_fields_override_base_without_duplicates(receiver: tuple[str, socket.socket]) -> None:
    path, sock = receiver
    log = EventLog(path, base={"event": "fake", "user": "alice", "rule": "a"})
    log.emit("session_end", rule="b", status=0)
    log.close()
    [(_, _, fields)] = [parse_datagram(d) for d in drain(sock)]
    assert fields == {"event": "session_end", "user": "alice", "rule": "b", "status": "0"}
    assert next(iter(fields)) == "event"


def test_syslog_restart_is_survived(receiver: tuple[str, socket.socket]) -> None:
    path, sock = receiver
    log = EventLog(path)
    log.emit("session_start")
    sock.close()
    os.unlink(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as again:
        again.bind(path)
        log.emit("timeout")
        log.close()
        assert [parse_datagram(d)[2]["event"] for d in drain(again)] == ["timeout"]


@pytest.mark.parametrize("kind", ["missing", "stale"])
def test_unusable_socket_says_so_once(tmp_path: Path, stderr_pipe: tuple[int, int],
                                      kind: str) -> None:
    path = str(tmp_path / "log")
    reason = "No such file or directory"
    if kind == "stale":  # a socket file nobody listens on any more
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as gone:
            gone.bind(path)
        reason = "Connection refused"
    r, w = stderr_pipe
    log = EventLog(path, stderr_fd=w)
    slowest = 0.0
    for n in range(200):
        start = time.monotonic()
        log.emit("warning", n=n)
        slowest = max(slowest, time.monotonic() - start)
    log.close()
    assert slowest < 0.01
    line = f"idlewrap: cannot log to {path}: {reason} (events go unlogged)\n"
    assert read_all(r).decode() == line


def test_stderr_line_can_be_disabled(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    quiet = EventLog(str(tmp_path / "missing"), stderr_fd=-1)
    quiet.emit("session_start")
    quiet.close()
    assert capfd.readouterr().err == ""
    loud = EventLog(str(tmp_path / "missing"))
    loud.emit("session_start")
    loud.emit("session_end")
    loud.close()
    assert capfd.readouterr().err.count("\n") == 1


def test_stderr_line_on_raw_terminal_returns_carriage(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        EventLog(str(tmp_path / "missing"), stderr_fd=slave).emit("timeout")
        assert os.read(master, 1024).endswith(b"(events go unlogged)\r\n")
    finally:
        os.close(master)
        os.close(slave)


def test_emit_survives_an_unprintable_value(receiver: tuple[str, socket.socket],
                                            stderr_pipe: tuple[int, int]) -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    path, sock = receiver
    r, w = stderr_pipe
    log = EventLog(path, stderr_fd=w)
    log.emit("session_end", status=Broken())
    log.emit("session_end", status=0)
    log.close()
    assert [parse_datagram(d)[2]["status"] for d in drain(sock)] == ["0"]
    assert read_all(r) == b"idlewrap: cannot format event 'session_end': no\n"


def test_full_receiver_never_blocks_and_queue_is_bounded(
    receiver: tuple[str, socket.socket], stderr_pipe: tuple[int, int]
) -> None:
    path, sock = receiver
    r, w = stderr_pipe
    log = EventLog(path, stderr_fd=w)
    total = 2000
    slowest = 0.0
    for seq in range(total):
        start = time.monotonic()
        log.emit("warning", seq=seq)
        slowest = max(slowest, time.monotonic() - start)
    assert slowest < 0.01
    taken = drain(sock)  # what the kernel queued before it was full
    reader = Reader(sock, after=0, seconds=0.3)
    reader.start()
    log.close()
    reader.join()
    flushed = reader.got
    assert len(flushed) == MAX_PENDING
    seqs = [int(parse_datagram(d)[2]["seq"]) for d in taken + flushed]
    assert seqs == sorted(seqs)
    assert seqs[-1] == total - 1  # the newest survive; the oldest waiting were dropped
    assert len(seqs) < total
    assert read_all(r) == b""  # a slow receiver is not a failure worth a line


def test_close_waits_for_a_slow_receiver_but_not_forever(
    receiver: tuple[str, socket.socket],
) -> None:
    path, sock = receiver
    log = EventLog(path)
    for seq in range(100):
        log.emit("warning", seq=seq)
    reader = Reader(sock, after=0.2, seconds=0.3)
    reader.start()
    start = time.monotonic()
    log.close()
    took = time.monotonic() - start
    reader.join()
    assert 0.15 < took < 0.9  # it waited for the reader, then stopped once all was out
    assert int(parse_datagram(reader.got[-1])[2]["seq"]) == 99

    for seq in range(100):  # nobody reads now: close gives up after about a second
        log.emit("warning", seq=seq)
    start = time.monotonic()
    log.close()
    assert 0.9 < time.monotonic() - start < 1.5


# -- correlation


def test_connection_fields() -> None:
    env = {"SSH_CONNECTION": "10.0.0.5 52144 10.0.0.1 22"}
    fields = connection_fields(env)
    assert list(fields) == ["rhost", "rport", "conn"]
    assert fields["rhost"] == "10.0.0.5" and fields["rport"] == 52144
    assert re.fullmatch(r"[0-9a-f]{12}", str(fields["conn"]))
    assert connection_fields({"SSH_CONNECTION": " 10.0.0.5  52144 10.0.0.1 22\n"}) == fields
    other = connection_fields({"SSH_CONNECTION": "10.0.0.5 52145 10.0.0.1 22"})
    assert other["conn"] != fields["conn"]
    v6 = connection_fields({"SSH_CONNECTION": "2001:db8:0::1 40000 2001:db8::2 22"})
    assert v6["rhost"] == "2001:db8::1"


@pytest.mark.parametrize("value", [None, "", "garbage", "10.0.0.5 port 10.0.0.1 22"])
def test_connection_fields_local_or_malformed(value: str | None) -> None:
    assert connection_fields({} if value is None else {"SSH_CONNECTION": value}) == {}


def test_new_session_id() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
