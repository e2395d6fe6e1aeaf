"""The command-session runtime over pipes, sockets and files: no root, no sshd.

tests/stream_driver.py runs the real `wrapper.run_streamed` with the fds a test
gives it, the way sshd starts a command without a pty (pipes on Debian, a
socketpair on builds without USE_PIPES). The test plays sshd: it writes the
client's input, reads the command's output, and goes away. Events come back as
JSON lines; time windows are measured from the moment the test last acted.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from idlewrap.streams import Pacer
from tests import infra
from tests.relay_driver import MESSAGE

REPO = Path(__file__).resolve().parent.parent
CLOSED = MESSAGE.replace("{idle}", "1s").encode()
# Two pipes of ours, two of "sshd", each widened to 1 MiB once they carry a transfer.
HELD_AT_MOST = 5 << 20
F_GETPIPE_SZ = 1032


class Session:
    """One driver run of `argv` with IDLE seconds and ACTIVITY, on the fds given."""

    def __init__(self, tmp: Path, idle: int, activity: str, argv: list[str],
                 **fds: Any) -> None:
        self.events_path = tmp / "events.jsonl"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO),
               "LC_ALL": "C.UTF-8", "HOME": str(tmp)}
        std = {name: fds.get(name, subprocess.PIPE) for name in ("stdin", "stdout", "stderr")}
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.stream_driver", str(self.events_path), str(idle),
             activity, "--", *argv], env=env, cwd=str(REPO), **std)

    def events(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        return [json.loads(line) for line in self.events_path.read_text().splitlines()]

    def names(self) -> list[object]:
        return [e["event"] for e in self.events()]

    def line(self) -> bytes:
        """The next line the command printed."""
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def ends(self, timeout: float = 20) -> tuple[int, float]:
        """Exit status and when (monotonic) the wrapper exited."""
        status = self.process.wait(timeout)
        return status, time.monotonic()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[type[Session]]:
    started: list[Session] = []

    def make(*args: Any, **kw: Any) -> Session:
        s = Session(tmp_path, *args, **kw)
        started.append(s)
        return s

    yield make  # type: ignore[misc]
    for s in started:
        if s.process.poll() is None:
            s.process.kill()
            s.process.wait()


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- what passes through -----------------------------------------------------------------------


def test_exit_status_stdout_and_stderr_pass_through_apart(session: type[Session]) -> None:
    s = session(5, "any", sh("printf out; printf err >&2; printf more; exit 42"))
    out, err = s.process.communicate(timeout=20)
    assert (s.process.returncode, out, err) == (42, b"outmore", b"err")
    assert s.events() == [{"event": "session_end", "at": s.events()[0]["at"], "status": 42}]


def test_a_signal_death_is_128_plus_n(session: type[Session]) -> None:
    s = session(5, "any", sh("kill -TERM $$"))
    s.process.communicate(timeout=20)
    assert s.process.returncode == 128 + signal.SIGTERM
    assert s.events()[0]["signal"] == "SIGTERM"


def test_binary_input_and_output_are_byte_exact(session: type[Session]) -> None:
    """5 MB: enough to make both directions a transfer (widened pipes, paced moves)."""
    blob = os.urandom(5_000_000)
    s = session(5, "any", sh("tee /dev/stderr | sha256sum | cut -d' ' -f1"))
    out, err = s.process.communicate(blob, timeout=30)
    assert out.decode().strip() == hashlib.sha256(blob).hexdigest()
    assert err == blob


def test_a_transfer_wakes_the_relay_rarely(session: type[Session]) -> None:
    """Paced: 64 MiB written 4 KiB at a time (about 250 MB/s) must not cost a wake-up a write."""
    writer = ("import os, time\nchunk = b'x' * 4096\nfor i in range(16384):\n"
              "    os.write(1, chunk)\n    if i % 16 == 0:\n        time.sleep(0.0002)\n"
              "os.close(1); os.close(2); time.sleep(0.5)\n")
    s = session(5, "any", [sys.executable, "-c", writer], stdin=subprocess.DEVNULL)
    assert s.process.stdout is not None
    fd = s.process.stdout.fileno()
    got = 0
    while chunk := os.read(fd, 1 << 20):
        got += len(chunk)
    status = Path(f"/proc/{s.process.pid}/status").read_text()
    switches = int(status.split("voluntary_ctxt_switches:")[1].split()[0])
    assert got == 64 << 20
    assert switches < 600, f"{switches} wake-ups (unpaced: about 1000 here, paced 300)"
    assert fcntl.fcntl(fd, F_GETPIPE_SZ) == 1 << 20  # "sshd's" pipe, widened for the transfer
    assert s.ends()[0] == 0


def test_a_pacer_rests_a_transfer_only_while_a_rest_fits_in_its_pipes() -> None:
    slow = Pacer(1 << 20, now=0.0)
    assert slow.rests_after(300_000, 0.001)  # 300 MB/s: 300 KB a millisecond fits in 512 KiB
    assert slow.rests_after(310_000, 0.002)
    fast = Pacer(1 << 20, now=0.0)
    assert not fast.rests_after(1 << 20, 0.0005)  # 2 GB/s: a rest would run the pipes dry
    assert not fast.rests_after(4096, 0.00051)  # a small move right after: still fast
    now, rested = 0.00051, False
    while not rested and now < 0.05:  # then it slows down to 10 MB/s
        now += 0.001
        rested = fast.rests_after(10_000, now)
    assert rested and now < 0.03, now
    assert not Pacer(0, now=0.0).rests_after(1, 1.0)  # pipes with no room never rest


def test_half_close_the_command_sees_eof_and_still_answers(session: type[Session]) -> None:
    s = session(5, "any", sh("wc -c; sleep 0.3; echo after-eof"))
    out, _ = s.process.communicate(b"x" * 100_000, timeout=20)
    assert out.split() == [b"100000", b"after-eof"]
    assert s.process.returncode == 0


def test_a_command_that_closes_its_stdin_refuses_more_input(session: type[Session]) -> None:
    s = session(5, "any", sh("exec 0<&-; echo closed; sleep 5"))
    assert s.line() == b"closed\n"
    assert s.process.stdin is not None
    with pytest.raises(BrokenPipeError):  # as without a wrapper: EPIPE, not a full pipe
        for _ in range(100):
            s.process.stdin.write(b"y" * 65536)
            s.process.stdin.flush()


def test_output_the_client_does_not_read_holds_the_command_back(session: type[Session],
                                                                tmp_path: Path) -> None:
    progress = tmp_path / "progress"
    flood = ("import os\nfor n in range(1, 401):\n    os.write(1, b'y' * 65536)\n"
             f"    open({str(progress)!r}, 'w').write(str(n))\n")
    s = session(30, "any", [sys.executable, "-c", flood], stdin=subprocess.DEVNULL)
    assert s.process.stdout is not None
    s.process.stdout.read(1)  # the flood has started
    time.sleep(1.5)  # this test reads nothing meanwhile
    written = int(progress.read_text()) * 65536
    assert written < HELD_AT_MOST, f"the command wrote {written} bytes nobody read"
    rest = s.process.stdout.read()
    assert 1 + len(rest) == 400 * 65536
    assert s.ends()[0] == 0


# -- what counts as activity -------------------------------------------------------------------


def test_with_any_output_keeps_the_command_alive(session: type[Session]) -> None:
    s = session(1, "any", sh("for i in 1 2 3 4 5; do echo $i; sleep 0.5; done"))
    out, _ = s.process.communicate(timeout=20)  # stdin open until the end
    assert out.split() == [b"1", b"2", b"3", b"4", b"5"]
    assert s.process.returncode == 0
    assert s.names() == ["session_end"]


def test_with_input_output_does_not_count(session: type[Session]) -> None:
    s = session(1, "input", sh("echo $$; while :; do echo tick; sleep 0.2; done"))
    pid = int(s.line())
    status, ended = s.ends()
    assert 1.0 <= ended - s.started <= 2.5, ended - s.started
    assert status == 124
    assert s.process.stderr is not None and s.process.stderr.read() == CLOSED + b"\n"
    assert s.names() == ["timeout"]
    assert not alive(pid)


@pytest.mark.parametrize("activity", ["any", "input"])
def test_a_silent_command_is_ended_at_the_deadline(session: type[Session], activity: str) -> None:
    s = session(1, activity, sh("echo $$; exec sleep 30"))
    pid = int(s.line())
    after_line = time.monotonic()
    status, ended = s.ends()
    assert status == 124
    # under "input" the deadline runs from the start, a moment before the line
    earliest = 0.9 if activity == "any" else 0.5
    assert earliest <= ended - after_line <= 1.6, ended - after_line
    assert not alive(pid)
    assert s.events()[0]["idle"] == 1


def test_with_input_a_key_now_and_then_keeps_it_alive(session: type[Session]) -> None:
    s = session(1, "input", ["/bin/cat"])
    assert s.process.stdin is not None and s.process.stdout is not None
    for n in range(6):
        s.process.stdin.write(b"k%d\n" % n)
        s.process.stdin.flush()
        assert s.line() == b"k%d\n" % n
        time.sleep(0.5)
    s.process.stdin.close()
    assert s.ends()[0] == 0


def test_after_the_input_ends_input_stops_the_deadline(session: type[Session]) -> None:
    """`ssh host 'bash -s' < job.sh`: nobody can type any more, the batch runs to its end."""
    s = session(1, "input", sh("sleep 2.5; echo batch-done"), stdin=subprocess.DEVNULL)
    out, _ = s.process.communicate(timeout=20)
    assert (s.process.returncode, out) == (0, b"batch-done\n")


def test_after_the_input_ends_any_still_times_silence(session: type[Session]) -> None:
    s = session(1, "any", ["/bin/sleep", "30"], stdin=subprocess.DEVNULL)
    status, ended = s.ends()
    assert status == 124
    assert ended - s.started <= 2.5


# -- the end -----------------------------------------------------------------------------------


def test_a_client_that_goes_away_ends_a_silent_command(session: type[Session]) -> None:
    """No pty, no SIGHUP: the reader of our stdout going away is the only sign."""
    s = session(30, "any", sh("echo $$; setsid sleep 31 & exec sleep 32"))
    pid = int(s.line())
    assert s.process.stdout is not None and s.process.stderr is not None
    s.process.stdout.close()
    s.process.stderr.close()
    gone = time.monotonic()
    status, ended = s.ends()
    assert ended - gone <= 1.0
    assert status == 128 + signal.SIGHUP
    assert s.events()[0]["event"] == "disconnect"
    assert s.events()[0]["reason"] == "EPIPE"
    assert not alive(pid)


def test_a_job_holding_the_output_keeps_the_session_as_sshd_would(session: type[Session]) -> None:
    s = session(5, "any", sh("(sleep 1; echo late) & echo now"))
    out, _ = s.process.communicate(timeout=20)
    assert out == b"now\nlate\n"


def test_a_detached_job_outlives_a_normal_exit_not_a_timeout(session: type[Session]) -> None:
    s = session(5, "any", sh("nohup sleep 33 >/dev/null 2>&1 & echo $!"))
    out, _ = s.process.communicate(timeout=20)
    detached = int(out)
    try:
        assert alive(detached), "a command's detached job ended with it (sshd keeps them)"
    finally:
        infra.kill_quietly(detached)
    s = session(1, "any", sh("nohup sleep 34 >/dev/null 2>&1 & echo $!; exec sleep 30"))
    detached = int(s.line())
    assert s.ends()[0] == 124
    assert not alive(detached)


# -- other kinds of fds ------------------------------------------------------------------------


def test_a_socketpair_as_sshd_without_use_pipes_hands_it(session: type[Session]) -> None:
    """One socket for stdin and stdout, one for stderr: EOF passes as shutdown."""
    ours, theirs = socket.socketpair()
    err_ours, err_theirs = socket.socketpair()
    with ours, err_ours:
        s = session(5, "any", sh("wc -c; echo oops >&2; exit 3"), stdin=theirs, stdout=theirs,
                    stderr=err_theirs)
        theirs.close()
        err_theirs.close()
        ours.sendall(b"z" * 300_000)
        ours.shutdown(socket.SHUT_WR)
        out = b"".join(iter(lambda: ours.recv(65536), b""))
        err = b"".join(iter(lambda: err_ours.recv(65536), b""))
    assert (out.strip(), err, s.ends()[0]) == (b"300000", b"oops\n", 3)


def test_an_append_only_file_falls_back_to_read_and_write(session: type[Session],
                                                          tmp_path: Path) -> None:
    """splice(2) refuses an O_APPEND destination (EINVAL): plain copies take over."""
    target = tmp_path / "out"
    blob = os.urandom(3_000_000)
    with open(target, "ab") as out:
        s = session(5, "any", ["/bin/cat"], stdout=out)
        s.process.communicate(blob, timeout=20)
    assert s.process.returncode == 0
    assert target.read_bytes() == blob
