"""Stand-in for the relay, run inside a tmux pane by test_overlay.py.

It owns the terminal the way the relay does (raw mode, O_NONBLOCK, signals
through a wakeup fd, one poll loop) and drives the overlay on out_fd 1:

* SIGUSR1 opens and shows the warning, which counts down once a second;
* SIGWINCH while it is shown calls resize();
* a key read from stdin, or SIGUSR2, closes it.

It reports each step as a JSON line in STATUS (with the termios of the
terminal) and otherwise prints nothing after its fake prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import termios
import time
import traceback
import tty

from idlewrap.overlay import Overlay, open_overlay

PROMPT = "\x1b[1;32muser@host\x1b[0m:~$ echo half-typ"
BANNER = [f"IDLEWRAP-DRIVER line {n} \x1b[7mreverse\x1b[0m plain" for n in range(1, 6)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("status")
    parser.add_argument("--text", default="This session is idle and will be closed.")
    parser.add_argument("--remaining", type=int, default=42)
    parser.add_argument("--bell", action="store_true")
    args = parser.parse_args()
    try:
        Driver(args.status, args.text, args.remaining, args.bell).run()
    except BaseException:
        with open(args.status, "a") as status:
            status.write(json.dumps({"event": "error", "trace": traceback.format_exc()}) + "\n")
        raise


class Driver:
    def __init__(self, status: str, text: str, remaining: int, bell: bool) -> None:
        self.status = status
        self.text = text
        self.initial = remaining
        self.bell = bell
        self.overlay: Overlay | None = None
        self.shown_at = 0.0
        self.next_tick = 0.0

    def report(self, event: str) -> None:
        attrs = termios.tcgetattr(0)
        with open(self.status, "a") as status:
            record = {"event": event, "pid": os.getpid(), "termios": repr(attrs)}
            status.write(json.dumps(record) + "\n")

    def run(self) -> None:
        tty.setraw(0)
        os.set_blocking(1, False)  # the relay's terminal is non-blocking too
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for handled in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH):
            signal.signal(handled, lambda *_: None)
        os.write(1, ("\r\n".join(BANNER) + "\r\n\r\n" + PROMPT).encode())
        self.report("ready")
        poller = select.poll()
        poller.register(wake_r, select.POLLIN)
        poller.register(0, select.POLLIN)
        while True:
            timeout = None
            if self.overlay is not None:
                timeout = max(self.next_tick - time.monotonic(), 0) * 1000
            for fd, _ in poller.poll(timeout):
                if fd == wake_r:
                    for signum in os.read(wake_r, 64):
                        self.on_signal(signum)
                elif fd == 0:
                    self.on_key()
            if self.overlay is not None and time.monotonic() >= self.next_tick:
                elapsed = int(time.monotonic() - self.shown_at)
                self.overlay.update(self.initial - elapsed)
                self.next_tick = self.shown_at + elapsed + 1

    def on_signal(self, signum: int) -> None:
        if signum == signal.SIGUSR1 and self.overlay is None:
            term = os.environ.get("TERM")
            self.overlay = open_overlay(1, self.text, bell=self.bell, term=term)
            self.overlay.show(self.initial)
            self.shown_at = time.monotonic()
            self.next_tick = self.shown_at + 1
            self.report("shown")
        elif signum == signal.SIGWINCH and self.overlay is not None:
            self.overlay.resize()
            self.report("resized")
        elif signum == signal.SIGUSR2:
            self.close()

    def on_key(self) -> None:
        try:
            os.read(0, 1024)
        except BlockingIOError:
            return
        self.close()

    def close(self) -> None:
        if self.overlay is not None:
            self.overlay.close()
            self.overlay = None
            self.report("closed")


if __name__ == "__main__":
    main()
