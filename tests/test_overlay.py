"""The warning overlay: bytes on a pipe, and a real terminal read back through tmux."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from idlewrap import overlay
from idlewrap.overlay import open_overlay
from tests import infra

DRIVER = Path(__file__).with_name("overlay_driver.py")
TEXT = "This session is idle and will be closed."
COUNTDOWN = re.compile(r"Session closes in (\d+):(\d\d)")
FRAME = "┌┐└┘─│"


# -- bytes on a pipe --------------------------------------------------------------------------


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        with contextlib.suppress(OSError):
            os.close(fd)


def drawn(write_end: int, read_end: int, term: str | None, *, bell: bool = False) -> bytes:
    """Everything one warning writes: show(42), three updates, close()."""
    warning = open_overlay(write_end, TEXT, bell=bell, term=term)
    warning.show(42)
    for remaining in (41, 40, 39):
        warning.update(remaining)
    warning.close()
    os.set_blocking(read_end, False)
    return os.read(read_end, 1 << 20)


@pytest.mark.parametrize("term", [None, "", "dumb", "unknown", "no-such-terminal", "../../x/xterm"])
def test_terminals_urwid_cannot_drive_get_one_line(pipe: tuple[int, int], term: str | None) -> None:
    read_end, write_end = pipe
    out = drawn(write_end, read_end, term)
    assert out.startswith(b"\r\n")
    assert b"\x1b" not in out
    assert b"Closing in 0:39: press any key." in out


@pytest.mark.parametrize("term", ["xterm", "screen", "xterm-256color", "linux"])
def test_known_terminals_get_the_box(pipe: tuple[int, int], term: str) -> None:
    read_end, write_end = pipe
    out = drawn(write_end, read_end, term)
    assert out.startswith(b"\x1b[?1049h")
    assert b"Press any key to stay connected" in out
    assert out.endswith(b"\x1b[?1049l\x1b[?25h")


def test_over_a_program_on_the_alternate_screen_the_box_stays_on_that_screen(
    pipe: tuple[int, int],
) -> None:
    read_end, write_end = pipe
    warning = open_overlay(write_end, TEXT, bell=False, term="screen", on_alt_screen=True)
    warning.show(42)
    warning.close()
    os.set_blocking(read_end, False)
    out = os.read(read_end, 1 << 20)
    assert b"Press any key to stay connected" in out
    # xterm saves the cursor on every ?1049h: one here would lose the program's saved cursor
    assert b"\x1b[?1049" not in out
    assert out.endswith(b"\x1b[?25h")


def test_terminfo_is_searched_where_ncurses_looks(
    pipe: tuple[int, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "xfancy-term").write_bytes(b"")
    monkeypatch.setenv("TERMINFO_DIRS", f"/nonexistent:{tmp_path}")
    read_end, write_end = pipe
    assert drawn(write_end, read_end, "xfancy-term").startswith(b"\x1b[?1049h")


@pytest.mark.parametrize("term", ["screen", "dumb"])
@pytest.mark.parametrize("bell", [True, False])
def test_bell_rings_once_when_shown(pipe: tuple[int, int], term: str, bell: bool) -> None:
    read_end, write_end = pipe
    assert drawn(write_end, read_end, term, bell=bell).count(b"\a") == int(bell)


def test_urwid_is_imported_only_when_a_warning_is_drawn() -> None:
    code = (
        "import os, sys\n"
        "from idlewrap.overlay import open_overlay\n"
        "assert 'urwid' not in sys.modules, 'imported with the module'\n"
        "r, w = os.pipe()\n"
        "line = open_overlay(w, 'text', bell=False, term='dumb')\n"
        "assert 'urwid' not in sys.modules, 'imported before the warning is drawn'\n"
        "line.show(5)\n"
        "assert 'urwid' in sys.modules, 'the one-line form measures display width with urwid'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(infra.REPO)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_one_line_form_keeps_the_countdown_when_the_text_does_not_fit(
    pipe: tuple[int, int],
) -> None:
    read_end, write_end = pipe
    warning = open_overlay(write_end, "Long\n\ttext " * 20, bell=False, term="dumb")
    warning.show(3900)
    warning.update(-2)
    os.set_blocking(read_end, False)
    out = os.read(read_end, 1 << 16).decode()
    lines = out.split("\r")
    assert "Closing in 1:05:00: press any key." in lines
    assert "Closing in 0:00: press any key." in lines
    assert all(len(line) <= 79 for line in lines)
    assert "\t" not in out and "\n" not in out.removeprefix("\r\n")


def test_one_line_form_is_erased_on_close(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    warning = open_overlay(write_end, TEXT, bell=False, term="dumb")
    warning.show(9)
    warning.close()
    os.set_blocking(read_end, False)
    assert os.read(read_end, 1 << 16).endswith(b"\r" + b" " * 79 + b"\r")


@pytest.mark.parametrize("term", ["screen", "dumb"])
def test_a_full_terminal_is_waited_for_and_gets_the_whole_frame(
    pipe: tuple[int, int], term: str
) -> None:
    read_end, write_end = pipe
    big_r, big_w = os.pipe()
    try:
        expected = drawn(big_w, big_r, term)
    finally:
        os.close(big_r)
        os.close(big_w)
    filler = _fill(write_end)
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(read_end, 1 << 16):
            received.extend(chunk)

    # The reader starts late, so show() must meet EAGAIN and wait for room.
    reader = threading.Timer(0.3, drain)
    reader.start()
    started = time.monotonic()
    warning = open_overlay(write_end, TEXT, bell=False, term=term)
    warning.show(42)
    assert time.monotonic() - started >= 0.2
    for remaining in (41, 40, 39):
        warning.update(remaining)
    warning.close()
    os.close(write_end)
    reader.join(5)
    assert bytes(received) == filler + expected


def test_a_terminal_that_never_drains_fails_the_write(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(overlay, "_WRITE_TIMEOUT", 0.3)
    _fill(pipe[1])
    warning = open_overlay(pipe[1], TEXT, bell=False, term="screen")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        warning.show(42)
    assert 0.25 <= time.monotonic() - started < 3


def _fill(fd: int) -> bytes:
    """Fill the pipe on `fd` (made non-blocking, as the relay's terminal is); what was written."""
    os.set_blocking(fd, False)
    written = bytearray()
    try:
        while True:
            written += b"f" * os.write(fd, b"f" * 4096)
    except BlockingIOError:
        return bytes(written)


# -- the layouts ------------------------------------------------------------------------------


def _screen(cols: int, rows: int, text: str = TEXT) -> list[str]:
    canvas = overlay._layout(text, 42, cols, rows)[0].render((cols, rows), focus=True)
    assert (canvas.cols(), canvas.rows()) == (cols, rows)
    return [line.decode() for line in canvas.text]


def test_a_tick_redraws_the_built_layout_as_a_new_one_would() -> None:
    """The box keeps its layout between ticks and changes only the countdown's text."""
    for cols, rows in ((80, 24), (24, 4), (50, 12)):  # the framed box, the compact form
        widget, countdown = overlay._layout(TEXT, 600, cols, rows)
        widget.render((cols, rows), focus=True)
        for remaining in (599, 61, 9, 0, 3600):
            countdown.set_text(overlay._countdown(remaining, False))
            kept = widget.render((cols, rows), focus=True).text
            fresh = overlay._layout(TEXT, remaining, cols, rows)[0].render((cols, rows),
                                                                            focus=True).text
            assert kept == fresh
            assert overlay._clock(remaining).encode() in b"".join(kept)


def test_every_size_renders_and_from_20x5_up_shows_the_countdown_and_hint() -> None:
    for cols in range(1, 101):
        for rows in range(1, 31):
            screen = "\n".join(_screen(cols, rows))
            if cols >= 20 and rows >= 5:
                assert "0:42" in screen, (cols, rows)
                assert "Press any key" in screen, (cols, rows)


def test_the_box_needs_room_for_the_hint_inside_its_frame() -> None:
    # 39 columns leave 31 inside the frame: the hint fits, the 40-column text takes two rows.
    assert any(c in "".join(_screen(39, 10)) for c in FRAME)
    assert not any(c in "".join(_screen(39, 9)) for c in FRAME)
    assert not any(c in "".join(_screen(38, 24)) for c in FRAME)
    assert any(c in "".join(_screen(80, 9)) for c in FRAME)
    assert not any(c in "".join(_screen(80, 8)) for c in FRAME)


def test_a_long_text_wraps_inside_a_box_of_bounded_width() -> None:
    screen = _screen(200, 50, "word " * 60)
    top = next(line for line in screen if "┌" in line)
    assert len(top.strip()) == 60 + 2 * 3 + 2
    assert sum("word" in line for line in screen) > 3


# -- a real terminal: tmux --------------------------------------------------------------------


class Pane:
    """One tmux server on its own socket running the driver in an 80x24 (or other) pane."""

    def __init__(self, status: Path, cols: int, rows: int, *, term: str | None, bell: bool) -> None:
        # A socket of our own (tmux leaves the file behind: it goes with tmp_path).
        self.socket = str(status.with_suffix(".tmux"))
        self.status = status
        env = [f"PYTHONPATH={infra.REPO}"] + ([f"TERM={term}"] if term else [])
        command = ["env", *env, infra.PYTHON, str(DRIVER), str(self.status)]
        command += ["--bell"] if bell else []
        self.tmux("new-session", "-d", "-x", str(cols), "-y", str(rows), shlex.join(command))

    def tmux(self, *args: str, check: bool = True) -> str:
        return infra.run("tmux", "-S", self.socket, "-f", "/dev/null", *args, check=check).stdout

    def kill(self) -> None:
        self.tmux("kill-server", check=False)

    def capture(self, *flags: str) -> list[str]:
        return self.tmux("capture-pane", "-p", *flags).split("\n")[:-1]

    def cursor(self) -> tuple[int, int]:
        x, y = self.tmux("display", "-p", "#{cursor_x},#{cursor_y}").split(",")
        return int(x), int(y)

    def events(self) -> list[dict[str, Any]]:
        if not self.status.exists():
            return []
        return [json.loads(line) for line in self.status.read_text().splitlines()]

    def wait_event(self, name: str, count: int = 1) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            found = [e for e in self.events() if e["event"] == name]
            return found[count - 1] if len(found) >= count else None

        return cast(dict[str, Any], self.wait(seen, f"driver event {name!r} #{count}"))

    def wait(self, predicate: Callable[[], object], what: str, timeout: float = 5) -> object:
        """Poll `predicate`; fail with the driver's traceback if it died, or with the pane."""

        def check() -> object:
            for event in self.events():
                if event["event"] == "error":
                    raise RuntimeError(f"the driver failed:\n{event['trace']}")
            return predicate()

        try:
            return infra.wait_for(check, timeout)
        except AssertionError:
            pane = self.tmux("capture-pane", "-p", check=False)  # the pane may be gone
            raise AssertionError(f"{what}: not within {timeout}s; pane:\n{pane}") from None

    def kill_driver(self, signum: int) -> None:
        os.kill(self.wait_event("ready")["pid"], signum)


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Callable[..., Pane]]:
    if shutil.which("tmux") is None:
        pytest.skip("needs tmux")
    panes: list[Pane] = []

    def start(
        cols: int = 80, rows: int = 24, *, term: str | None = None, bell: bool = False
    ) -> Pane:
        status = tmp_path / f"status-{len(panes)}.jsonl"
        started = Pane(status, cols, rows, term=term, bell=bell)
        panes.append(started)
        started.wait_event("ready")
        started.wait(lambda: "half-typ" in "".join(started.capture()), "prompt")
        return started

    yield start
    for started in panes:
        started.kill()


def _shown(p: Pane, marker: str = "Press any key") -> list[str]:
    lines: list[str] = []

    def drawn() -> bool:
        lines[:] = p.capture()
        return any(marker in line for line in lines)

    p.wait(drawn, f"{marker!r} on screen")
    return lines


def _seconds(lines: list[str]) -> int:
    match = COUNTDOWN.search("\n".join(lines))
    assert match, lines
    return int(match[1]) * 60 + int(match[2])


def _box(lines: list[str], cols: int, rows: int) -> tuple[int, int, int, int]:
    """Margins of the frame: left, right, top, bottom."""
    top = next(y for y, line in enumerate(lines) if "┌" in line)
    bottom = next(y for y, line in enumerate(lines) if "└" in line)
    left, right = lines[top].index("┌"), lines[top].index("┐")
    assert len(lines) == rows
    return left, cols - 1 - right, top, rows - 1 - bottom


def test_box_is_centred_counts_down_and_leaves_the_screen_as_it_was(
    pane: Callable[..., Pane],
) -> None:
    p = pane(bell=True)
    before, before_e, cursor = p.capture(), p.capture("-e"), p.cursor()
    stream = p.status.with_suffix(".out")
    p.tmux("pipe-pane", "-O", f"cat > {stream}")
    p.kill_driver(signal.SIGUSR1)
    lines = _shown(p)
    assert any(TEXT in line for line in lines)
    assert any("Press any key to stay connected" in line for line in lines)
    left, right, top, bottom = _box(lines, 80, 24)
    assert abs(left - right) <= 1 and abs(top - bottom) <= 1
    assert p.tmux("display", "-p", "#{window_bell_flag}").strip() == "1"

    first = _seconds(lines)
    assert 40 <= first <= 42
    p.wait(lambda: _seconds(p.capture()) < first, "countdown decreasing")

    p.tmux("send-keys", "x")
    p.wait(lambda: p.capture() == before, "the screen as before show()")
    assert p.capture("-e") == before_e
    assert p.cursor() == cursor
    p.wait(lambda: stream.exists() and stream.read_bytes().endswith(b"\x1b[?25h"), "output")
    written = stream.read_bytes()
    assert written.count(b"\a") == 1
    # No DECRQM probes: their replies would arrive as input the user never typed.
    assert b"$p" not in written
    events = {e["event"]: e for e in p.events()}
    assert events["shown"]["termios"] == events["ready"]["termios"]
    assert p.wait_event("closed")["termios"] == events["ready"]["termios"]


def _one_box(lines: list[str]) -> bool:
    """Exactly one box and nothing of the frame outside it (no rows left from an earlier size)."""
    framed = [y for y, line in enumerate(lines) if any(c in line for c in FRAME)]
    return (
        bool(framed)
        and framed == list(range(framed[0], framed[-1] + 1))
        and ("┌" in lines[framed[0]] and "└" in lines[framed[-1]])
    )


def test_box_is_redrawn_at_the_new_size(pane: Callable[..., Pane]) -> None:
    p = pane()
    p.kill_driver(signal.SIGUSR1)
    _shown(p)
    # Only the height changes: rows urwid believes drawn have moved on the terminal.
    p.tmux("resize-window", "-x", "80", "-y", "14")
    p.wait_event("resized")
    p.wait(lambda: len(lines := p.capture()) == 14 and _one_box(lines), "one box in 80x14")
    p.tmux("resize-window", "-x", "60", "-y", "20")

    def recentred() -> bool:
        lines = p.capture()
        # Until the driver redraws, tmux shows the old box cut at the new right edge.
        if len(lines) != 20 or not any("┌" in line and "┐" in line for line in lines):
            return False
        left, right, top, bottom = _box(lines, 60, 20)
        return abs(left - right) <= 1 and abs(top - bottom) <= 1

    p.wait(recentred, "box centred in 60x20")
    assert _one_box(p.capture())
    p.wait_event("resized", 2)
    p.tmux("resize-window", "-x", "30", "-y", "8")
    p.wait_event("resized", 3)
    lines = _shown(p)
    assert len(lines) == 8
    assert not any(c in "".join(lines) for c in FRAME)
    assert "Session closes in" in "".join(lines)

    p.kill_driver(signal.SIGUSR2)
    p.wait_event("closed")
    p.wait(lambda: any("half-typ" in line for line in p.capture()), "prompt back")
    assert not any(c in "".join(p.capture()) for c in FRAME)


def test_20x5_gets_the_compact_form(pane: Callable[..., Pane]) -> None:
    p = pane(20, 5)
    before, cursor = p.capture(), p.cursor()
    p.kill_driver(signal.SIGUSR1)
    lines = _shown(p)
    screen = "\n".join(lines)
    assert not any(c in screen for c in FRAME)
    assert re.search(r"\b0:4\d\b", screen)
    assert p.tmux("display", "-p", "#{window_bell_flag}").strip() == "0"
    p.tmux("send-keys", "q")
    p.wait(lambda: p.capture() == before, "the screen as before show()")
    assert p.cursor() == cursor


def test_dumb_terminal_gets_one_line_redrawn_in_place(pane: Callable[..., Pane]) -> None:
    p = pane(term="dumb")
    before = p.capture()
    prompt_y = p.cursor()[1]
    p.kill_driver(signal.SIGUSR1)
    lines = _shown(p, "press any key")
    assert lines[: prompt_y + 1] == before[: prompt_y + 1]
    assert lines[prompt_y + 1] == f"{TEXT} Closing in 0:42: press any key."
    p.wait(
        lambda: p.capture()[prompt_y + 1] == f"{TEXT} Closing in 0:41: press any key.",
        "countdown redrawn on the same line",
    )
    assert p.capture()[prompt_y + 2 :] == before[prompt_y + 2 :]

    p.tmux("send-keys", "x")
    p.wait_event("closed")
    p.wait(lambda: p.capture() == before, "the line erased")
    # No cursor-up on a dumb terminal: the cursor stays at the start of the blanked line.
    assert p.cursor() == (0, prompt_y + 1)


def _columns(text: str) -> int:
    """Display columns, by Unicode's East Asian Width (independent of urwid)."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


@pytest.mark.parametrize("text", ["会话空闲即将关闭。" * 3, "Idle 💤💤💤 session " * 3])
@pytest.mark.parametrize("width", [20, 39, 79])
def test_one_line_form_fits_its_width_in_display_columns(text: str, width: int) -> None:
    """Issue 8, defect 6: CJK or emoji in the policy's warning used to overflow the line."""
    line = overlay._one_line(text, 42, width)
    assert _columns(line) <= width
    assert "0:42" in line
