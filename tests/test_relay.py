"""The session runtime over a pty pair: no root, no sshd (tests/relay_driver.py).

The test holds the outer terminal (a pexpect pty) and plays the user; the program
inside is a shell, or tests/tty_recorder.py, which records every byte it is given.
Events come back as JSON lines. Time windows are measured from the last key sent.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from idlewrap.modes import Modes, ModeTracker
from tests import infra
from tests.relay_driver import MESSAGE

REPO = Path(__file__).resolve().parent.parent
RECORDER = str(REPO / "tests" / "tty_recorder.py")
READY = "RECORDER-READY\r\n"


class Session:
    """One driver run: the outer terminal, its events file and the recorder's file."""

    def __init__(self, tmp: Path, idle: int, warn: int, argv: list[str], *,
                 term: str = "dumb", dimensions: tuple[int, int] = (24, 80),
                 extra: tuple[str, ...] = ()) -> None:
        self.events_path = tmp / "events.jsonl"
        self.record_path = tmp / "record.bin"
        self.started = time.monotonic()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO),
               "LC_ALL": "C.UTF-8", "HOME": str(tmp), "TERM": term}
        argv = [a.replace("{record}", str(self.record_path)) for a in argv]
        self.term = pexpect.spawn(
            sys.executable,
            ["-m", "tests.relay_driver", "--term", term, *extra,
             str(self.events_path), str(idle), str(warn), "--", *argv],
            env=env, cwd=str(REPO), dimensions=dimensions, timeout=15,
        )

    def events(self) -> list[dict[str, object]]:
        if not self.events_path.exists():
            return []
        return [json.loads(line) for line in self.events_path.read_text().splitlines()]

    def names(self) -> list[object]:
        return [e["event"] for e in self.events()]

    def received(self) -> bytes:
        """What the program read from its terminal so far."""
        return self.record_path.read_bytes() if self.record_path.exists() else b""

    def wait_received(self, predicate: object, timeout: float = 5) -> bytes:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.received()
            if callable(predicate) and predicate(got):
                return got
            time.sleep(0.02)
        raise AssertionError(f"the program did not receive it; it has {self.received()!r}")

    def read_to_eof(self) -> bytes:
        """Everything the terminal shows until the session closes it."""
        out = b""
        while True:
            try:
                out += self.term.read_nonblocking(1 << 20, timeout=10)
            except pexpect.EOF:
                return out

    def ends(self) -> float:
        """Read to EOF; return when the terminal closed (monotonic)."""
        self.term.expect(pexpect.EOF, timeout=30)
        closed = time.monotonic()
        self.term.close()
        return closed


@pytest.fixture
def session(tmp_path: Path) -> Iterator[type[Session]]:
    started: list[Session] = []

    def make(*args: object, **kw: object) -> Session:
        s = Session(tmp_path, *args, **kw)  # type: ignore[arg-type]
        started.append(s)
        return s

    yield make  # type: ignore[misc]
    for s in started:
        if s.term.isalive():
            s.term.terminate(force=True)


def recorder() -> list[str]:
    return [sys.executable, RECORDER, "{record}"]


def warned(session: type[Session], idle: int = 3, warn: int = 2) -> Session:
    """The recorder in a session whose warning (the one-line form) is up."""
    s = session(idle, warn, recorder())
    s.term.expect(READY)
    s.term.expect("Closing in")
    return s


def test_exit_status_and_output_pass_through(session: type[Session]) -> None:
    s = session(30, 10, ["/bin/sh", "-c", "printf 'out-%s' ok; exit 42"])
    s.term.expect("out-ok")
    s.ends()
    assert s.term.exitstatus == 42
    assert s.names() == ["session_end"]
    assert s.events()[0]["status"] == 42


def test_idle_session_is_warned_then_closed_in_time(session: type[Session]) -> None:
    s = session(2, 1, recorder())
    s.term.expect(READY)
    s.term.send("k")
    sent = time.monotonic()
    s.wait_received(lambda got: got == b"k")
    s.term.expect("Idle session. Closing in 0:01: press any key.")
    warned = time.monotonic() - sent
    s.term.expect(re.escape(MESSAGE.replace("{idle}", "2s")))
    closed = s.ends() - sent
    assert 0.9 <= warned <= 1.6, warned
    assert 2.0 <= closed <= 2.8, closed
    assert s.term.exitstatus == 124
    assert s.names() == ["warning", "timeout"]


def test_a_key_dismisses_the_warning_and_is_swallowed(session: type[Session]) -> None:
    s = warned(session)
    s.term.send("x")
    s.term.send("yz")
    s.wait_received(lambda got: got == b"yz")
    assert s.names() == ["warning", "activity_resumed"]


def test_a_lone_esc_dismisses_after_the_escape_delay_and_is_swallowed(
    session: type[Session],
) -> None:
    s = warned(session)
    s.term.send("\x1b")
    deadline = time.monotonic() + 2
    while "activity_resumed" not in s.names() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.names() == ["warning", "activity_resumed"]
    s.term.send("\x1b")  # now an ordinary key for the program, forwarded at once
    s.wait_received(lambda got: got == b"\x1b", timeout=0.5)


def test_terminal_reports_under_the_warning_reach_the_program_but_do_not_dismiss(
    session: type[Session],
) -> None:
    s = warned(session)
    s.term.send("\x1b[I\x1b[?1;2c")  # focus-in and a DA reply: the terminal, not a person
    s.wait_received(lambda got: got == b"\x1b[I\x1b[?1;2c")
    assert s.names() == ["warning"]


def test_a_paste_that_dismisses_the_warning_is_swallowed_whole(session: type[Session]) -> None:
    """Issue 8, defect 1: a multi-chunk bracketed paste used to arrive cut, with a lone end."""
    s = warned(session, 4, 3)
    paste = b"\x1b[200~" + b"pasted line of text\r" * 340 + b"\x1b[201~"  # 6.6 KB
    for start in range(0, len(paste), 1000):
        s.term.send(paste[start:start + 1000])
        time.sleep(0.01)
    s.term.send(b"after")
    got = s.wait_received(lambda got: got.endswith(b"after"))
    assert got == b"after"
    assert s.names() == ["warning", "activity_resumed"]


def test_each_plain_key_moves_the_deadline(session: type[Session]) -> None:
    """Keys without ESC, at rest, take the relay's steady path: they must still count."""
    s = session(3, 1, recorder())
    s.term.expect(READY)
    for key in "abcdef":  # 2.5 s of typing: past the first key's warning time (2 s)
        s.term.send(key)
        last = time.monotonic()
        time.sleep(0.5)
    assert s.names() == []
    s.term.expect("Closing in")
    warned = time.monotonic() - last
    assert 1.9 <= warned <= 2.6, warned
    assert s.received() == b"abcdef"


def test_a_key_sequence_at_rest_reaches_the_program_whole_and_counts(
    session: type[Session],
) -> None:
    """An arrow key (ESC [ A) leaves the steady path for the guard, and comes back to it."""
    s = session(3, 1, recorder())
    s.term.expect(READY)
    time.sleep(1.2)
    s.term.send("\x1b[A")
    sent = time.monotonic()
    s.wait_received(lambda got: got == b"\x1b[A")
    s.term.send("q")  # plain again: the steady path
    s.wait_received(lambda got: got == b"\x1b[Aq")
    s.term.expect("Closing in")
    warned = time.monotonic() - sent
    assert 1.9 <= warned <= 2.6, warned


def test_keys_the_program_does_not_read_yet_wait_and_arrive_in_order(
    session: type[Session],
) -> None:
    """Input backpressure: the program's pty full, keys wait in the relay, none lost."""
    slow = ("import os, sys, time, tty\n"
            "tty.setraw(0)\n"
            "os.write(1, b'RECORDER-READY\\r\\n')\n"
            "time.sleep(1.5)\n"
            "with open(sys.argv[1], 'ab', buffering=0) as record:\n"
            "    while data := os.read(0, 65536):\n"
            "        record.write(data)\n")
    s = session(30, 10, [sys.executable, "-c", slow, "{record}"])
    s.term.expect(READY)
    typed = b"".join(b"%07d\r" % n for n in range(20000))  # 160 KB: more than a pty holds
    for start in range(0, len(typed), 4096):
        s.term.send(typed[start:start + 4096])
    assert s.wait_received(lambda got: len(got) >= len(typed), timeout=15) == typed


def test_output_floods_are_held_back_not_buffered(session: type[Session]) -> None:
    """Backpressure: while the terminal reads nothing the program blocks."""
    progress = REPO / "tests" / f".progress-{os.getpid()}"
    flood = (
        "import os, sys\n"
        f"p = {str(progress)!r}\n"
        "chunk = b'y' * 65535 + b'\\n'\n"
        "for n in range(1, 801):\n"
        "    os.write(1, chunk)\n"
        "    open(p, 'w').write(str(n))\n"
    )
    try:
        s = session(60, 10, [sys.executable, "-c", flood])
        time.sleep(1.5)  # the terminal reads nothing meanwhile
        written = int(progress.read_text()) * 65536 if progress.exists() else 0
        assert written < 4 << 20, f"the program wrote {written} bytes into a terminal not read"
        assert len(s.read_to_eof()) >= 800 * 65536  # all of it, once read (ONLCR adds CRs)
    finally:
        progress.unlink(missing_ok=True)


def test_a_terminal_that_stops_reading_under_the_warning_still_ends_cleanly(
    session: type[Session],
) -> None:
    """Issue 8, defect 2: a write timeout while drawing used to raise out of the relay."""
    flood = "import os\nwhile True: os.write(1, b'z' * 4096)"
    s = session(3, 2, [sys.executable, "-c", flood], term="xterm",
                extra=("--write-timeout", "0.5"))
    time.sleep(4)  # the terminal (this test) reads nothing: the box cannot be drawn
    out = s.read_to_eof()
    s.term.close()
    assert b"Traceback" not in out
    assert s.term.exitstatus == 124
    names = s.names()
    assert names == ["warning", "timeout"], names
    assert s.events()[0].get("shown") is False


SETS_EVERYTHING = (
    b"\x1b[?1049h\x1b[>4;2m\x1b[>1u\x1b[=1;1u\x1b)0\x0e\x1b[1;31m\x1b[?7l\x1b[5;10r"
    b"\x1b[4h\x1b[?6h\x1b[?2026h\x1b[?1;1000;1006;1004;2004h\x1b[?25l\x1b="
)


def test_a_timeout_hands_the_terminal_back_in_its_default_modes(session: type[Session]) -> None:
    """Issue 8, defect 3: modifyOtherKeys, kitty keys, charsets, SGR, margins... left set."""
    escaped = SETS_EVERYTHING.decode("latin-1").replace("\x1b", "\\033").replace("\x0e", "\\016")
    s = session(2, 1, ["/bin/bash", "-c", f"printf '{escaped}'; exec sleep 60"])
    out = s.read_to_eof()
    tail = out[out.index(SETS_EVERYTHING) + len(SETS_EVERYTHING):]
    # Checked by hand, not with the tracker under test: each mode set above is reset.
    reset = {int(c) for group in re.findall(rb"\x1b\[\?([0-9;]+)l", tail)
             for c in group.split(b";")}
    restored = {int(c) for group in re.findall(rb"\x1b\[\?([0-9;]+)h", tail)
                for c in group.split(b";")}
    assert {2026, 1049, 6, 1, 1000, 1006, 1004, 2004} <= reset, reset
    assert {7, 25} <= restored, restored
    for sequence in (b"\x1b[r", b"\x1b[4l", b"\x1b>", b"\x1b[>4m", b"\x1b[<1u", b"\x1b[=0;1u",
                     b"\x1b(B", b"\x1b)B", b"\x0f", b"\x1b[m"):
        assert sequence in tail, sequence
    # Synchronized output ends first: until then the terminal would show nothing.
    assert tail.index(b"\x1b[?2026l") < tail.index(b"\x1b[?1049l")
    tracker = ModeTracker()
    tracker.feed(out[out.index(SETS_EVERYTHING):])
    assert tracker.snapshot() == Modes(), tracker.snapshot()
    assert tail.rstrip().endswith(MESSAGE.replace("{idle}", "2s").encode())


def test_a_program_that_set_no_modes_gets_no_reset_bytes(session: type[Session]) -> None:
    """Issue 8, defect 9: 49 bytes of resets used to follow every session's output."""
    s = session(30, 10, ["/bin/sh", "-c", "printf hi"])
    s.term.expect(pexpect.EOF)
    assert s.term.before == b"hi"


def test_a_zero_sized_window_is_passed_on(session: type[Session]) -> None:
    """Issue 8, defect 10: 0x0 used to become 24x80."""
    s = session(30, 10, ["/bin/sh", "-c", "stty size"], dimensions=(0, 0))
    s.term.expect(pexpect.EOF)
    assert s.term.before.strip() == b"0 0"


def test_the_dead_mans_switch_stands_still_while_suspended_and_the_alarm_does_not(
    session: type[Session],
) -> None:
    """Issue 8, defect 5: a resume past deadline + 5 s used to SIGKILL the wrapper.

    The kill timer must run on CLOCK_MONOTONIC (1), which stops during suspend; the
    relay's wake-up alarm on CLOCK_BOOTTIME (7), which does not, so after a resume the
    relay wakes first and ends the session the normal way.
    """
    s = session(30, 10, recorder())
    s.term.expect(READY)
    timers = Path(f"/proc/{s.term.pid}/timers").read_text()
    assert re.findall(r"ClockID: (\d+)", timers) == ["1"], timers
    clocks = []
    for fd in os.listdir(f"/proc/{s.term.pid}/fdinfo"):
        info = Path(f"/proc/{s.term.pid}/fdinfo/{fd}").read_text()
        clocks += re.findall(r"clockid: (\d+)", info)
    assert clocks == ["7"], clocks


# -- the lock (fake password check: tests/relay_driver.py --password) ------------------------

LOCKED = "Password: "  # the dumb terminal's lock prompt


def lock_session(session: type[Session], argv: list[str], *extra: str, idle: int = 2,
                 warn: int = 1, term: str = "dumb") -> Session:
    return session(idle, warn, argv, term=term, extra=("--password", "pw", *extra))


def wait_events(s: Session, names: list[str], timeout: float = 5) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while s.names()[:len(names)] != names and time.monotonic() < deadline:
        time.sleep(0.02)
    assert s.names() == names, s.names()
    return s.events()


def test_at_the_deadline_the_lock_takes_every_key_and_only_the_password_opens_it(
    session: type[Session],
) -> None:
    s = lock_session(session, recorder(), "--lock")
    s.term.expect(READY)
    s.term.expect("Locking in 0:01: press any key.")  # the warning says what is coming
    s.term.expect(LOCKED, timeout=3)
    # Ctrl-C, Ctrl-Z, Ctrl-\ and an arrow key: none reaches the program; ^C also starts over
    s.term.send("ab\x03\x1a\x1c\x1b[A\rwrong\r")
    s.term.expect("Wrong password: 2 attempts left.\r\nPassword: ")
    s.term.send("pw\r")
    wait_events(s, ["warning", "lock", "unlock_failed", "unlock"])
    s.term.send("k")
    assert s.wait_received(lambda got: got != b"") == b"k"
    events = s.events()
    assert (events[1]["reason"], events[2]["attempt"]) == ("idle", 1)


def test_output_written_while_locked_is_held_and_shown_after_the_unlock_in_order(
    session: type[Session],
) -> None:
    job = "sleep 2.5; i=1; while [ $i -le 300 ]; do echo n$i; i=$((i+1)); done; exec sleep 60"
    s = lock_session(session, ["/bin/sh", "-c", job], "--lock")
    s.term.expect(LOCKED, timeout=4)
    time.sleep(1.5)  # the job writes while locked
    with pytest.raises(pexpect.TIMEOUT):
        s.term.expect("n1", timeout=0.2)
    s.term.send("pw\r")
    s.term.expect(r"n300\r\n")
    numbers = [int(n) for n in re.findall(rb"n(\d+)\r\n", s.term.before + s.term.after)]
    assert numbers == list(range(1, 301))


def test_wrong_passwords_end_the_session(session: type[Session]) -> None:
    s = lock_session(session, recorder(), "--lock", "--attempts", "2")
    s.term.expect(LOCKED, timeout=4)
    s.term.send("nope\r")
    s.term.expect("Wrong password: 1 attempt left.")
    s.term.send("nope\r")
    s.term.expect("idlewrap: session closed after 2 wrong passwords.")
    s.ends()
    assert s.term.exitstatus == 124
    events = wait_events(s, ["warning", "lock", "unlock_failed", "unlock_failed", "timeout"])
    assert [e.get("attempt") for e in events[2:4]] == [1, 2]
    assert events[4]["reason"] == "unlock_attempts"
    assert s.received() == b""


def test_terminate_after_ends_a_locked_session_and_shows_nothing_it_held(
    session: type[Session],
) -> None:
    job = "sleep 2.5; echo SECRET-HELD; exec sleep 60"
    s = lock_session(session, ["/bin/sh", "-c", job], "--lock", "--terminate-after", "4")
    started = time.monotonic()
    s.term.expect(LOCKED, timeout=4)
    s.term.expect(re.escape(MESSAGE.replace("{idle}", "4s")), timeout=4)
    closed = s.ends() - started
    assert 3.9 <= closed <= 5.0, closed
    assert b"SECRET-HELD" not in s.term.before
    assert s.term.exitstatus == 124
    events = wait_events(s, ["warning", "lock", "timeout"])
    assert events[2]["reason"] == "locked"


def test_the_lock_signal_locks_at_once_whatever_the_action(session: type[Session]) -> None:
    s = lock_session(session, recorder(), idle=30, warn=10)
    s.term.expect(READY)
    os.kill(s.term.pid, signal.SIGRTMIN + 11)  # what `idlewrap lock` sends
    s.term.expect(LOCKED)
    s.term.send("pw\r")
    events = wait_events(s, ["lock", "unlock"])
    assert events[0]["reason"] == "user"
    s.term.send("k")
    assert s.wait_received(lambda got: got != b"") == b"k"


def test_a_lock_the_user_asks_for_still_ends_at_the_idle_deadline_if_the_policy_terminates(
    session: type[Session],
) -> None:
    """`idlewrap lock` must not be a way to keep a session past a terminate policy's limit."""
    s = lock_session(session, recorder(), idle=3, warn=1)  # no --lock: action "terminate"
    s.term.expect(READY)
    s.term.send("k")
    sent = time.monotonic()
    s.wait_received(lambda got: got == b"k")
    os.kill(s.term.pid, signal.SIGRTMIN + 11)  # what `idlewrap lock` sends
    s.term.expect(LOCKED)
    closed = s.ends() - sent
    assert 2.9 <= closed <= 4.0, closed
    assert s.term.exitstatus == 124
    events = wait_events(s, ["lock", "timeout"])
    assert (events[0]["reason"], events[1]["reason"]) == ("user", "locked")


def test_without_the_pam_service_a_lock_ends_the_session(session: type[Session]) -> None:
    s = session(2, 1, recorder(), term="dumb",
                extra=("--lock", "--pam-service-file", "/nonexistent/idlewrap"))
    s.term.expect(READY)
    os.kill(s.term.pid, signal.SIGRTMIN + 11)
    s.term.expect("idlewrap: this session cannot be locked: /nonexistent/idlewrap is missing")
    s.term.expect(re.escape(MESSAGE.replace("{idle}", "2s")), timeout=4)
    s.ends()
    assert s.term.exitstatus == 124
    events = wait_events(s, ["config_error", "warning", "config_error", "timeout"])
    assert events[0]["reason"] == events[2]["reason"] == "no_pam_service"


def test_a_check_still_running_at_the_end_is_stopped(session: type[Session]) -> None:
    s = lock_session(session, recorder(), "--lock", "--terminate-after", "5",
                     "--check-delay", "60")
    s.term.expect(LOCKED, timeout=4)
    s.term.send("pw\r")
    children = Path(f"/proc/{s.term.pid}/task/{s.term.pid}/children")
    checks: list[str] = []

    def check_started() -> bool:
        nonlocal checks
        checks = children.read_text().split()
        return len(checks) == 2  # the program and the check

    infra.wait_for(check_started, 2)
    s.ends()
    assert s.names() == ["warning", "lock", "timeout"]
    for pid in checks:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_an_exempt_session_says_it_cannot_be_locked(session: type[Session]) -> None:
    s = session(2, 1, recorder(), term="dumb", extra=("--exempt",))
    s.term.expect(READY)
    os.kill(s.term.pid, signal.SIGRTMIN + 11)
    s.term.expect("idlewrap: this session cannot be locked: it is exempt from idle limits")
    s.term.send("k")
    assert s.wait_received(lambda got: got != b"") == b"k"
    assert s.names() == []


def test_enq_and_s8c1t_never_reach_the_terminal(session: type[Session]) -> None:
    """Issue 9, escape 2: their replies (answerback text, 8-bit reports) look typed."""
    s = session(30, 10, ["/bin/sh", "-c", r"printf 'a\005b\033 Gc\033'; printf ' \007Gd'"])
    s.term.expect(pexpect.EOF)
    assert s.term.before == b"ab\x1b Fc\x1b \x07Fd"
