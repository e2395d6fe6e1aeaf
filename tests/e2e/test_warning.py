"""The idle warning as deployed: private sshd with ForceCommand, the real ssh client in tmux.

Each test runs `ssh -tt` in a pane of a tmux server of its own and reads the screen back
with `capture-pane`. Policy: idle_timeout 6 s, warn_before 4 s, so the warning is up from
2 s to 6 s after the last key. Time windows are measured from when tmux took that key.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import infra
from tests.e2e.conftest import E2E

pytestmark = pytest.mark.root

IDLE = 6.0
WARN = 4.0
SHOWN_AT = IDLE - WARN
WARNING = "IW-WARN this idle session is about to close"
MESSAGE = "IW-BYE closed after 6s"
POLICY = (
    f'idle_timeout = "6s"\nwarn_before = "4s"\nbell = true\nwarning = "{WARNING}"\n'
    'message = "IW-BYE closed after {idle}"\n'
)
PROMPT = "iw-prompt$ "
HINT = "Press any key to stay connected"
FRAME = "┌┐└┘─│"
COUNTDOWN = re.compile(r"Session closes in (\d+):(\d\d)")
EXITED = "SSH-EXIT="
NOTES = "alpha line\nbeta line\ngamma line\n"
# What a terminal sends on its own: focus in, focus out, a DA1 reply.
REPORTS = (b"\x1b[I", b"\x1b[O", b"\x1b[?64;1;2c")


class Site:
    """One sshd whose ForceCommand runs idlewrap with the short policy."""

    def __init__(self, e2e: E2E) -> None:
        self.user = e2e.users.user("iwt_w_ann")
        policy = e2e.policy(POLICY, "warning-policy")
        self.server = e2e.server(f"ForceCommand {e2e.force_command(policy)}\n")


@pytest.fixture(scope="module")
def site(e2e: E2E) -> Site:
    return Site(e2e)


class Pane:
    """A tmux server on a socket of its own, running `ssh -tt` in one 80x24 pane.

    When ssh exits the pane prints its exit status and stays, so the last screen can be read.
    """

    def __init__(self, socket: Path, command: list[str]) -> None:
        self.socket = str(socket)
        shell = f"{shlex.join(command)}; echo {EXITED}$?; sleep 600"
        self.tmux("new-session", "-d", "-x", "80", "-y", "24", shell)

    def tmux(self, *args: str, check: bool = True) -> str:
        return infra.run("tmux", "-S", self.socket, "-f", "/dev/null", *args, check=check).stdout

    def kill(self) -> None:
        self.tmux("kill-server", check=False)

    def lines(self, *flags: str) -> list[str]:
        return self.tmux("capture-pane", "-p", *flags).split("\n")[:-1]

    def text(self) -> str:
        return "\n".join(self.lines())

    def cursor(self) -> tuple[int, int]:
        x, y = self.tmux("display", "-p", "#{cursor_x},#{cursor_y}").split(",")
        return int(x), int(y)

    def send(self, *keys: str) -> float:
        """tmux send-keys; returns when tmux took them."""
        self.tmux("send-keys", *keys)
        return time.monotonic()

    def send_bytes(self, data: bytes) -> float:
        return self.send("-H", *(f"{byte:02x}" for byte in data))

    def wait(self, predicate: Callable[[], object], what: str, timeout: float = 5.0) -> object:
        """Poll `predicate`; on failure show the pane."""
        try:
            return infra.wait_for(predicate, timeout)
        except AssertionError:
            raise AssertionError(f"{what}: not within {timeout}s; pane:\n{self.text()}") from None

    def wait_text(self, text: str, timeout: float = 5.0) -> None:
        self.wait(lambda: text in self.text(), repr(text), timeout)

    def box(self) -> list[str] | None:
        """The screen, if the warning box is on it."""
        lines = self.lines()
        screen = "\n".join(lines)
        return lines if HINT in screen and "┌" in screen and "┘" in screen else None

    def wait_box(self, what: str = "the warning box", timeout: float = IDLE) -> list[str]:
        lines = self.wait(self.box, what, timeout)
        assert isinstance(lines, list)
        return lines

    def exit_status(self) -> int | None:
        match = re.search(rf"^{EXITED}(\d+)$", self.text(), re.MULTILINE)
        return int(match[1]) if match else None

    def wait_exit(self, timeout: float = IDLE + 2) -> int:
        self.wait(lambda: self.exit_status() is not None, "the session's end", timeout)
        code = self.exit_status()
        assert code is not None
        return code


@pytest.fixture
def login(site: Site, tmp_path: Path) -> Iterator[Callable[..., Pane]]:
    """Start an ssh session in a fresh tmux pane and wait for its prompt."""
    panes: list[Pane] = []

    def start(term: str | None = None) -> Pane:
        command = site.server.ssh_argv(site.user.name, "-tt")
        if term is not None:
            command = ["env", f"TERM={term}", *command]  # ssh sends its TERM with the pty request
        pane = Pane(tmp_path / f"tmux-{len(panes)}.sock", command)
        panes.append(pane)
        pane.wait_text(PROMPT.rstrip(), 15)  # capture-pane drops trailing spaces
        return pane

    yield start
    for pane in panes:
        pane.kill()


def seconds_left(lines: list[str]) -> int | None:
    match = COUNTDOWN.search("\n".join(lines))
    return int(match[1]) * 60 + int(match[2]) if match else None


def assert_on_time(elapsed: float, expected: float, what: str) -> None:
    assert expected - 0.2 <= elapsed <= expected + 0.8, f"{what} after {elapsed:.2f}s"


def frame_free(lines: list[str]) -> bool:
    return not any(c in "".join(lines) for c in FRAME)


def test_box_appears_counts_down_and_a_key_leaves_the_prompt_as_it_was(
    login: Callable[..., Pane],
) -> None:
    pane = login()
    last_key = pane.send("-l", "echo half-typ")
    pane.wait_text(PROMPT + "echo half-typ")
    before, before_e, cursor = pane.lines(), pane.lines("-e"), pane.cursor()

    shown = pane.wait_box()
    assert_on_time(time.monotonic() - last_key, SHOWN_AT, "the box appeared")
    assert any(WARNING in line for line in shown)
    assert any(HINT in line for line in shown)
    first = seconds_left(shown)
    assert first is not None and WARN - 1 <= first <= WARN
    pane.wait(lambda: (left := seconds_left(pane.lines())) is not None and left < first,
              "the countdown going down", 2)
    assert pane.tmux("display", "-p", "#{window_bell_flag}").strip() == "1"

    dismissed = pane.send("x")
    pane.wait(lambda: pane.lines() == before, "the screen as before the box")
    assert pane.lines("-e") == before_e
    assert pane.cursor() == cursor

    # Closed only after a whole idle_timeout from the dismissing key.
    assert pane.wait_exit() == 124
    assert_on_time(time.monotonic() - dismissed, IDLE, "closed")
    final = pane.text()
    assert PROMPT + "echo half-typ\n" in final, "the dismissing key reached the shell"
    assert MESSAGE in final


@pytest.mark.parametrize("program", ["shell", "vim"])
def test_without_a_key_the_session_ends_at_the_deadline_with_the_message(
    site: Site, login: Callable[..., Pane], program: str
) -> None:
    site.user.write("notes.txt", NOTES)
    pane = login()
    command = "echo ready-$((6*7))" if program == "shell" else "vim -u NONE -N notes.txt"
    last_key = pane.send(command, "Enter")
    pane.wait_text("ready-42\n" if program == "shell" else "gamma line")
    pane.wait_box()
    assert pane.wait_exit() == 124
    assert_on_time(time.monotonic() - last_key, IDLE, "closed")
    final = pane.lines()
    # The shell's screen with the message under it: nothing left of the box or of vim's screen.
    assert MESSAGE in final
    above = final[: final.index(MESSAGE)]
    if program == "shell":
        assert above[-3:] == [PROMPT + command, "ready-42", PROMPT.rstrip()]
    else:
        assert above[-2:] == [PROMPT + command, ""]  # vim left the cursor under its command
    assert frame_free(final)
    assert "gamma line" not in final


def test_a_key_over_vim_leaves_vim_the_file_and_the_prompt_as_they_were(
    site: Site, login: Callable[..., Pane], tmp_path: Path
) -> None:
    notes = site.user.write("notes.txt", NOTES)
    pane = login()
    stream = tmp_path / "output.bin"
    pane.tmux("pipe-pane", "-O", f"cat > {stream}")
    pane.send("-l", "vim -u NONE -N notes.txt")
    pane.wait_text(PROMPT + "vim -u NONE -N notes.txt")
    vim_row = pane.cursor()[1]
    pane.send("Enter")
    pane.wait_text("gamma line")
    # vim redraws its message line empty after a resize (the repaint): empty it now.
    pane.send("j", "l", "C-l")
    pane.wait(lambda: pane.cursor() == (1, 1) and pane.lines()[-1] == "", "vim's cursor on beta")
    before_e, cursor = pane.lines("-e"), pane.cursor()

    pane.wait_box()
    pane.send("x")  # would delete the "e" of "beta" if it reached vim
    pane.wait(lambda: pane.lines("-e") == before_e, "vim's screen as before the box")
    assert pane.cursor() == cursor

    pane.send(":wq", "Enter")
    pane.wait(lambda: pane.cursor() == (len(PROMPT), vim_row + 1), "the prompt after vim")
    assert notes.read_text() == NOTES
    lines = pane.lines()
    assert lines[vim_row] == PROMPT + "vim -u NONE -N notes.txt"
    assert lines[vim_row + 1] == PROMPT.rstrip()
    # vim's own switch is the only one: the warning drew on vim's screen without entering or
    # leaving the alternate screen, so the cursor vim's ?1049h saved was never overwritten
    # (xterm saves it again on every ?1049h, tmux does not, so tmux alone would not tell).
    written = stream.read_bytes()
    assert written.count(b"\x1b[?1049h") == 1
    assert written.count(b"\x1b[?1049l") == 1


def test_box_is_redrawn_at_each_new_size(login: Callable[..., Pane]) -> None:
    pane = login()
    pane.send("-l", "echo half-typ")
    pane.wait_text(PROMPT + "echo half-typ")
    pane.wait_box()

    pane.tmux("resize-window", "-x", "60", "-y", "20")

    def centred_in_60x20() -> bool:
        lines = pane.lines()
        tops = [y for y, line in enumerate(lines) if "┌" in line and "┐" in line]
        bottoms = [y for y, line in enumerate(lines) if "└" in line and "┘" in line]
        if len(lines) != 20 or len(tops) != 1 or len(bottoms) != 1:
            return False
        left, right = lines[tops[0]].index("┌"), lines[tops[0]].index("┐")
        return abs(left - (59 - right)) <= 1 and abs(tops[0] - (19 - bottoms[0])) <= 1

    pane.wait(centred_in_60x20, "one box centred in 60x20", 2)

    pane.tmux("resize-window", "-x", "20", "-y", "5")

    def compact() -> bool:
        lines = pane.lines()
        screen = " ".join(line.strip() for line in lines)
        return (
            len(lines) == 5
            and frame_free(lines)
            and re.search(r"Session closes in 0:0\d Press any key to stay connected", screen)
            is not None
        )

    pane.wait(compact, "the compact form in 20x5", 2)

    pane.tmux("resize-window", "-x", "80", "-y", "24")
    pane.wait(lambda: (lines := pane.box()) is not None and len(lines) == 24, "the box at 80x24", 2)
    pane.send("x")
    pane.wait(lambda: frame_free(pane.lines()) and PROMPT + "echo half-typ" in pane.text(),
              "the prompt back without the box", 2)


def test_dumb_terminal_gets_one_line_under_the_prompt(login: Callable[..., Pane]) -> None:
    pane = login(term="dumb")
    last_key = pane.send("-l", "echo half-typ")
    pane.wait_text(PROMPT + "echo half-typ")
    before, (_, row) = pane.lines(), pane.cursor()

    def warning_line() -> str | None:
        line = pane.lines()[row + 1]
        return line if "press any key" in line else None

    line = pane.wait(warning_line, "the one-line warning", IDLE)
    assert_on_time(time.monotonic() - last_key, SHOWN_AT, "the line appeared")
    assert re.fullmatch(rf"{WARNING} Closing in 0:0[34]: press any key\.", str(line)), line
    pane.wait(lambda: (now := warning_line()) is not None and now != line,
              "the countdown redrawn on the same line", 2)
    assert pane.lines()[: row + 1] == before[: row + 1]
    assert frame_free(pane.lines())

    pane.send("x")
    pane.wait(lambda: pane.lines() == before, "the line erased, the prompt line as it was")
    assert pane.cursor() == (0, row + 1)


def test_terminal_reports_neither_close_the_box_nor_move_the_deadline(
    login: Callable[..., Pane],
) -> None:
    pane = login()
    pane.send("-l", "echo half-typ")
    pane.wait_text(PROMPT + "echo half-typ")
    pane.wait_box()
    for report in REPORTS:
        pane.send_bytes(report)
    time.sleep(1.0)  # time for a wrongly counted report to close the box
    assert pane.box() is not None, "a terminal report closed the warning"

    dismissed = pane.send("x")
    pane.wait(lambda: frame_free(pane.lines()), "a key closing the box", 2)
    pane.wait_box("the next warning")
    for report in REPORTS:
        pane.send_bytes(report)
    assert pane.wait_exit() == 124
    assert_on_time(time.monotonic() - dismissed, IDLE, "closed")


def test_output_is_held_while_the_box_is_up_and_shown_in_order_after(
    login: Callable[..., Pane],
) -> None:
    pane = login()
    # Starts before the box, writes through it and goes on after it is closed.
    # From 1.5 s to about 3.2 s after the last key: it has to be done before the next warning,
    # 2 s after the key that closes this one.
    pane.send("-l", "(sleep 1.5; for i in $(seq 1 30); do echo n$i; sleep 0.05; done) &")
    pane.send("Enter")
    shown = pane.wait_box()
    assert not any(re.fullmatch(r"n\d+", line.strip()) for line in shown)
    time.sleep(0.8)  # the job writes while the box is up
    assert pane.box() is not None
    pane.send("x")

    def numbers() -> list[int]:
        history = pane.lines("-S", "-200")
        # n1 may follow the prompt bash printed after starting the job
        return [int(m[1]) for line in history if (m := re.search(r"(?:^|\$ )n(\d+)$", line))]

    pane.wait(lambda: 30 in numbers(), "the job's last number", 8)
    assert numbers() == list(range(1, 31))


def test_output_held_when_the_session_times_out_is_shown_before_the_message(
    login: Callable[..., Pane],
) -> None:
    pane = login()
    # Writes only while the box is up (2 s to 6 s after the last key), and nobody comes back.
    pane.send("-l", "(sleep 2.5; for i in $(seq 1 20); do echo h$i; sleep 0.05; done) &")
    pane.send("Enter")
    pane.wait_box()
    assert pane.wait_exit() == 124
    history = pane.lines("-S", "-200")
    held = [int(m[1]) for line in history if (m := re.search(r"(?:^|\$ )h(\d+)$", line))]
    assert held == list(range(1, 21)), held
    last_number = max(i for i, line in enumerate(history) if re.search(r"h20$", line))
    message = next(i for i, line in enumerate(history) if MESSAGE in line)
    assert last_number < message
