"""bench/scale's own figures, from made-up events: no sshd, no sessions."""

import socket
import time
from pathlib import Path

from bench.scale_bench import (
    EXPECTED,
    SO_TIMESTAMPNS,
    Event,
    event_counts,
    kernel_stamp,
    lateness,
    parse_event,
    sessions_of,
    spread,
)

START = (b'<86>Nov 30 14:00:00 idlewrap[4242]: event=session_start user=iws_scale uid=1001 '
         b'rhost=127.0.0.1 rport=50001 conn=aaaaaaaaaaaa tty=/dev/pts/3 session=0123456789abcdef '
         b'pid=4242 mode=interactive idle_timeout=60 warn_before=10 action=terminate '
         b'shell=/bin/bash')


def test_a_datagram_becomes_its_fields() -> None:
    fields = parse_event(START)
    assert fields["event"] == "session_start"
    assert (fields["pid"], fields["rport"], fields["conn"]) == ("4242", "50001", "aaaaaaaaaaaa")
    quoted = parse_event(b'<84>Nov 30 14:00:00 idlewrap[1]: event=config_error '
                         b'problem="line 3: a b=c" reason=invalid')
    assert quoted == {"event": "config_error", "problem": "line 3: a b=c", "reason": "invalid"}


def test_sessions_deadlines_lateness_and_lost_events() -> None:
    printing = START.replace(b"conn=aaaaaaaaaaaa", b"conn=bbbbbbbbbbbb").replace(
        b"pid=4242", b"pid=4243").replace(b"mode=interactive", b"mode=interactive command=while")
    events = [Event(100.0, parse_event(START)), Event(101.0, parse_event(printing))]
    sessions = sessions_of(events, limit=60)
    assert sessions["aaaaaaaaaaaa"].deadline == 160.0
    assert not sessions["aaaaaaaaaaaa"].printing and sessions["bbbbbbbbbbbb"].printing
    ended = {"aaaaaaaaaaaa": 160.25}
    late = lateness(sessions.values(), ended)
    assert late[0] == 0.25 and late[1] == float("inf")  # no end seen: never on time
    for name in EXPECTED[2:]:
        events.append(Event(150.0, {"event": name, "conn": "aaaaaaaaaaaa"}))
    events.append(Event(150.0, {"event": "watchdog_kill", "conn": "bbbbbbbbbbbb",
                                "reason": "no_wrapper"}))
    events.append(Event(150.0, {"event": "watchdog_start"}))
    tally = event_counts(events, sessions)
    got = tally.got
    assert got["session_start"] == 2 and got["timeout"] == 1 and got["pam_open_session"] == 0
    assert tally.other == {"watchdog_kill no_wrapper": 1}
    assert tally.ended_by_watchdog == {"bbbbbbbbbbbb"}
    # a: pam_open_session; b (ended by the watchdog): pam_open_session, pam_close_session
    assert tally.lost == 3


def test_spread() -> None:
    assert spread([1.0, 3.0, 2.0], " s") == "2.00 / 3.00 s"
    assert spread([]) == "-"


def test_an_event_is_stamped_when_sent_not_when_read(tmp_path: Path) -> None:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "log"))
    receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    before = time.time()
    sender.sendto(START, str(tmp_path / "log"))
    after = time.time()
    time.sleep(0.3)  # the bench reads late: the stamp must not move
    data, ancillary, _, _ = receiver.recvmsg(65536, socket.CMSG_SPACE(16))
    at = kernel_stamp(ancillary)
    assert data == START and at is not None
    assert before - 0.001 <= at <= after + 0.001
    assert kernel_stamp([]) is None
