"""The watchdog's wire format and the wrapper's side of it: never blocks, never raises."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from idlewrap.idle import DEADMAN_GRACE
from idlewrap.watchdog import protocol
from idlewrap.watchdog.link import ReportingDeadMan, WatchdogLink, request


def test_encode_and_decode() -> None:
    line = protocol.encode("register", kind="session", tty="/dev/pts/3", conn=None)
    assert line == b"register kind=session tty=/dev/pts/3\n"
    assert protocol.decode(line.strip()) == ("register", {"kind": "session", "tty": "/dev/pts/3"})
    assert protocol.decode(b"deadline in=1.5 x=a=b") == ("deadline", {"in": "1.5", "x": "a=b"})


@pytest.mark.parametrize("value", ["", "a b", "a\nevent=x"])
def test_values_with_white_space_cannot_be_sent(value: str) -> None:
    with pytest.raises(ValueError, match="cannot be sent"):
        protocol.encode("open", user=value)


@pytest.mark.parametrize("line", [b"", b"  ", b"open user", b"open =x", b"\xff"])
def test_what_is_no_message(line: bytes) -> None:
    with pytest.raises(ValueError):
        protocol.decode(line)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[Path, socket.socket]]:
    path = tmp_path / "wd.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    yield path, server
    server.close()


def test_no_watchdog_is_no_link(tmp_path: Path) -> None:
    started = time.monotonic()
    assert WatchdogLink.connect(str(tmp_path / "absent.sock")) is None
    assert time.monotonic() - started < 0.1


def test_a_watchdog_that_does_not_accept_costs_no_wait(
        listener: tuple[Path, socket.socket]) -> None:
    """Nobody calls accept(): the connect still returns at once and sends go through."""
    path, _ = listener
    link = WatchdogLink.connect(str(path))
    assert link is not None
    started = time.monotonic()
    for _ in range(10_000):  # far more than the socket buffer holds: the rest is dropped
        link.send(protocol.DEADLINE, **{"in": 900.0})
    assert not link.answered(0.01)
    assert time.monotonic() - started < 1.0
    link.close()


class FakeSwitch:
    def __init__(self) -> None:
        self.calls: list[object] = []

    def arm(self, seconds: float) -> None:
        self.calls.append(seconds)

    def disarm(self) -> None:
        self.calls.append("disarm")

    def hold(self) -> None:
        self.calls.append("hold")


def test_the_dead_mans_switch_reports_to_the_watchdog(
        listener: tuple[Path, socket.socket]) -> None:
    path, server = listener
    link = WatchdogLink.connect(str(path))
    assert link is not None
    peer, _ = server.accept()
    switch = FakeSwitch()
    deadman = ReportingDeadMan(switch, link, late=DEADMAN_GRACE)
    deadman.arm(DEADMAN_GRACE + 12.34567)
    deadman.hold()  # locked with no end: the watchdog must not count it as ending
    deadman.disarm()
    link.send(protocol.END)
    link.close()
    received = b""
    while chunk := peer.recv(4096):
        received += chunk
    peer.close()
    assert switch.calls == [DEADMAN_GRACE + 12.34567, "hold", "disarm"]
    assert received == b"deadline in=12.346\nlocked\nending\nend\n"


def test_register_waits_for_the_answer(listener: tuple[Path, socket.socket]) -> None:
    path, server = listener
    link = WatchdogLink.connect(str(path))
    assert link is not None
    peer, _ = server.accept()
    link.send(protocol.REGISTER, kind="session")
    assert peer.recv(100) == b"register kind=session\n"
    peer.send(b"ok\n")
    assert link.answered(1.0)
    peer.close()
    link.close()


def test_request_and_its_failures(listener: tuple[Path, socket.socket], tmp_path: Path) -> None:
    path, server = listener

    def answer(reply: bytes) -> None:
        peer, _ = server.accept()
        peer.recv(4096)
        peer.sendall(reply)
        peer.close()

    for reply, expected in ((b"ok group=/x\n", ("ok", {"group": "/x"})),
                            (b"refused reason=no_group\n", ("refused", {"reason": "no_group"}))):
        thread = threading.Thread(target=answer, args=(reply,))
        thread.start()
        assert request(str(path), protocol.OPEN, 2.0, pid=1, user="root") == expected
        thread.join()
    thread = threading.Thread(target=answer, args=(b"",))
    thread.start()
    with pytest.raises(ConnectionError):
        request(str(path), protocol.OPEN, 2.0, pid=1)
    thread.join()
    with pytest.raises(OSError):
        request(str(tmp_path / "absent.sock"), protocol.OPEN, 2.0, pid=1)
