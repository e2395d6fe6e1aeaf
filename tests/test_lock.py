"""The lock's parts without a session: the password line, the lock screen's bytes, the
check's child process, and how `idlewrap lock` finds its session's wrapper."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from idlewrap import lock_screen, unlock
from idlewrap.commands import lock as lock_command
from idlewrap.commands.lock import Process, find_wrapper, read_process
from idlewrap.idle import LockPlan
from idlewrap.lock import MAX_PASSWORD, PasswordLine
from idlewrap.lock_screen import LockInfo, open_lock_screen

# -- the password line ----------------------------------------------------------------------


def typed(*chunks: bytes) -> bytes | None:
    line = PasswordLine()
    result = None
    for chunk in chunks:
        result = line.feed(chunk) or result
    return result


@pytest.mark.parametrize(("chunks", "password"), [
    ((b"secret\r",), b"secret"),
    ((b"secret\n",), b"secret"),
    ((b"sec", b"ret", b"\r"), b"secret"),
    ((b"secrex\x7ft\r",), b"secret"),  # Backspace (DEL)
    ((b"secrex\x08t\r",), b"secret"),  # Backspace (^H)
    (("pässwörd\x7f\x7fd\r".encode(),), "pässwöd".encode()),  # a character, not a byte
    ((b"wrong\x15secret\r",), b"secret"),  # Ctrl-U
    ((b"wrong\x03secret\r",), b"secret"),  # Ctrl-C
    ((b"\rsecret\r",), b"secret"),  # an empty Enter is no attempt
    ((b"se\x1a\x1c\x04\tcret\r",), b"secret"),  # other control keys are dropped
    ((b"se\x1b[Acr\x1b[1;5Det\x1bOP\r",), b"secret"),  # cursor and function keys
    ((b"se\x1b[I\x1b[?64;1;2c\x1b]11;rgb:0/0/0\x07cret\r",), b"secret"),  # reports
    ((b"se\x1bP>|xterm\x1b\\cret\r",), b"secret"),  # a DCS string ended by ST
    ((b"se\x1b[200~cr\x1b[201~et\r",), b"secret"),  # pasted text is kept
    ((b"se\x1b[", b"1;5", b"Acret\r"), b"secret"),  # a sequence split across reads
    ((b"se\x1bx", b"cret\r"), b"secret"),  # Alt+x
    ((b"se\x1b", b"cret\r"), b"secret"),  # a lone ESC at the end of a read is the Esc key
    ((b"secret",), None),  # not submitted
])
def test_password_line(chunks: tuple[bytes, ...], password: bytes | None) -> None:
    assert typed(*chunks) == password


def test_password_line_ends_at_enter_and_drops_what_follows() -> None:
    line = PasswordLine()
    assert line.feed(b"one\rtwo") == b"one"
    assert line.feed(b"\r") is None


def test_password_line_is_bounded() -> None:
    assert typed(b"x" * (MAX_PASSWORD + 100) + b"\r") == b"x" * MAX_PASSWORD


# -- the lock screen ------------------------------------------------------------------------

INFO = LockInfo("alice", "web01", "14:03", "15:03")


def drawn(term: str, *, enter: bool, leave: bool, conceal: bool) -> tuple[bytes, bytes, bytes]:
    """What the lock screen writes to a pipe (drawn 24x80): shown, a wrong password, closed."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    try:
        screen = open_lock_screen(write_end, INFO, term=term, enter=enter, leave=leave)
        parts = []
        for step in (screen.show, lambda: screen.prompt("Wrong password: 2 attempts left."),
                     lambda: screen.close(conceal=conceal)):
            step()
            parts.append(os.read(read_end, 1 << 20))
        return parts[0], parts[1], parts[2]
    finally:
        os.close(read_end)
        os.close(write_end)


def test_full_screen_enters_the_alternate_screen_clears_it_and_leaves_it() -> None:
    shown, wrong, closed = drawn("xterm", enter=True, leave=True, conceal=False)
    assert shown.startswith(lock_screen.ENTER.encode())
    assert shown.count(b"\x1b[?1049h") == 1
    assert lock_screen.CLEAR.encode() in shown
    for text in ("This session is locked.", "alice on web01, locked since 14:03",
                 "It will be closed at 15:03 unless unlocked.", "Password for alice:"):
        assert text.encode() in shown, text
    assert b"Wrong password: 2 attempts left." in wrong
    assert closed.endswith(lock_screen.LEAVE.encode())
    assert closed.count(b"\x1b[?1049l") == 1


def test_full_screen_over_a_full_screen_program_switches_nothing() -> None:
    shown, _, closed = drawn("xterm", enter=False, leave=False, conceal=False)
    assert b"\x1b[?1049" not in shown + closed
    assert lock_screen.CLEAR.encode() in shown


def test_a_session_that_ends_locked_is_left_cleared_with_no_scrollback() -> None:
    _, _, closed = drawn("xterm", enter=False, leave=False, conceal=True)
    assert closed.endswith(lock_screen.CONCEAL.encode())
    assert lock_screen.CONCEAL == "\x1b[?1049l\x1b[H\x1b[2J\x1b[3J"


def test_dumb_terminal_gets_lines_and_a_prompt() -> None:
    shown, wrong, closed = drawn("dumb", enter=True, leave=True, conceal=False)
    assert shown == (b"\r\n" * 24 + b"This session is locked.\r\nalice on web01, locked since "
                     b"14:03\r\nIt will be closed at 15:03 unless unlocked.\r\nPassword: ")
    assert wrong == b"Wrong password: 2 attempts left.\r\nPassword: "
    assert closed == b"\r\n"
    assert b"\x1b" not in shown + wrong + closed


@pytest.mark.parametrize("cols", [1, 2, 5, 20, 40, 80, 200])
@pytest.mark.parametrize("rows", [1, 2, 5, 9, 24])
def test_layout_renders_at_every_size(rows: int, cols: int) -> None:
    canvas = lock_screen.layout(INFO, "Wrong password: 2 attempts left.").render(
        (cols, rows), focus=True)
    text = b"\n".join(canvas.text).decode()
    assert len(canvas.text) == rows
    if rows >= 9 and cols >= 44:
        assert "Password for alice:" in text and "It will be closed at 15:03" in text


# -- the check's child process --------------------------------------------------------------


class FakeCheck:
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour

    def unavailable(self) -> str | None:
        return None

    def verify(self, user: str, password: bytes, tty: str | None, rhost: str | None) -> bool:
        if self.behaviour == "raise":
            raise RuntimeError("PAM blew up")
        if self.behaviour == "die":
            os._exit(3)
        if self.behaviour == "hang":
            time.sleep(60)
        if self.behaviour == "fds":  # what the check process holds open
            return sorted(os.listdir("/proc/self/fd")) == ["0", "1", "2", "3", "4"]
        return (user, password, tty, rhost) == ("alice", b"pw", "/dev/pts/9", "10.0.0.5")


PLAN = LockPlan("alice", "/dev/pts/9", "10.0.0.5", at_deadline=True, attempts=3,
                terminate_after=None)


def verdict_of(check: FakeCheck, password: bytes, timeout: float = 5) -> bool | None:
    running = unlock.start_check(check, PLAN, password, time.monotonic())
    try:
        end = time.monotonic() + timeout
        while (verdict := running.verdict()) is None and time.monotonic() < end:
            time.sleep(0.01)
        return verdict
    finally:
        running.cancel()
        os.waitpid(running.pid, 0)


@pytest.mark.parametrize(("behaviour", "password", "verdict"), [
    ("verify", b"pw", True),
    ("verify", b"wrong", False),
    ("raise", b"pw", False),  # a failure of the check is a wrong password, never an unlock
    ("die", b"pw", False),
])
def test_the_check_reports_its_verdict_on_a_pipe(behaviour: str, password: bytes,
                                                 verdict: bool) -> None:
    assert verdict_of(FakeCheck(behaviour), password) is verdict


def test_the_check_holds_no_fd_of_the_session() -> None:
    """Only stdio on /dev/null, the verdict pipe, and listdir's own fd."""
    keep = os.pipe()  # stands for the pty master and the user's terminal
    try:
        assert verdict_of(FakeCheck("fds"), b"pw") is True
    finally:
        for fd in keep:
            os.close(fd)


def test_cancel_stops_a_check_that_hangs() -> None:
    running = unlock.start_check(FakeCheck("hang"), PLAN, b"pw", 0.0)
    assert running.verdict() is None
    assert running.deadline == unlock.CHECK_TIMEOUT
    running.cancel()
    _, status = os.waitpid(running.pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_the_service_file_is_checked_before_pam_is_asked(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setattr(unlock, "PAM_SERVICE_FILE", str(tmp_path / "idlewrap"))
    assert unlock.PamCheck().unavailable() == "no_pam_service"
    (tmp_path / "idlewrap").write_text("auth required pam_deny.so\n")
    assert unlock.PamCheck().unavailable() is None


# -- finding the session's wrapper ----------------------------------------------------------


def fake_proc(tmp_path: Path, *processes: tuple[int, str, int, int]) -> str:
    for pid, name, parent, uid in processes:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({name}) S {parent} {pid} 0 0\n")
        (tmp_path / str(pid) / "status").write_text(
            f"Name:\t{name}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    return str(tmp_path)


def test_the_nearest_wrapper_above_is_found(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, (900, "idlewrap", 800, 1000), (950, "idlewrap", 900, 1000),
                     (951, "bash", 950, 1000), (960, "tmux: server", 950, 1000),
                     (961, "sudo", 960, 0), (962, "bash", 961, 0), (963, "idlewrap", 962, 0))
    assert find_wrapper(951, proc) == Process(950, "idlewrap", 900, 1000)
    assert find_wrapper(963, proc) == Process(950, "idlewrap", 900, 1000)  # not itself
    assert find_wrapper(950, proc) == Process(900, "idlewrap", 800, 1000)


def test_no_wrapper_above(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, (10, "sshd", 1, 0), (11, "bash", 10, 1000),
                     (20, "loop", 21, 1000), (21, "loop", 20, 1000))
    assert find_wrapper(11, proc) is None
    assert find_wrapper(20, proc) is None  # a cycle (a pid reused meanwhile) ends the walk
    assert find_wrapper(404, proc) is None


def test_a_name_with_parentheses_and_spaces(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, (30, "a) (b c", 1, 7))
    assert read_process(30, proc) == Process(30, "a) (b c", 1, 7)


def test_outside_a_session_the_command_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    if find_wrapper(os.getpid()) is not None:
        pytest.skip("the tests run inside an idlewrap session: this would lock it")
    assert lock_command.main([]) == 1
    assert capsys.readouterr().err == ("idlewrap lock: not inside an idlewrap session "
                                       "(no idlewrap wrapper above this command)\n")
