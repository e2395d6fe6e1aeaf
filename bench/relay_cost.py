"""What relaying costs per MB, counted rather than timed: instructions and syscalls.

CPU time per GB (ptybench's "relay CPU") moves by 10-20% with whatever else runs on a
2-core machine. Two counts do not: the user-space instructions the relay executes
(valgrind's callgrind) and the syscalls it makes (strace -c), each per MB of output
relayed. Both are taken for the wrapper process alone (not its shell) by running it
under the counting tool in a pty, cat'ing a file through it, once with an empty file
and once with N MB, and taking the difference (start-up and exit cancel out).

    python3 bench/relay_cost.py [--mb 20] NAME=COMMAND ...    ({shell} is bash --norc)

Needs valgrind and strace (apt-get install valgrind strace).
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import select
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

SHELL = "/bin/bash --norc --noprofile -i"
PROMPT = b"RELAY-COST> "


def relay(argv: list[str], data: Path, timeout: float = 600) -> None:
    """Run argv in a pty, cat `data` through it at its prompt, then exit."""
    pid, master = pty.fork()
    if pid == 0:
        os.environ.update(PS1=PROMPT.decode(), HISTFILE="/dev/null")
        os.execvp(argv[0], argv)
    seen = b""

    def wait_for(marker: bytes) -> None:
        nonlocal seen
        end = time.monotonic() + timeout
        while marker not in seen:
            ready, _, _ = select.select([master], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                raise SystemExit(f"no {marker!r} from {argv[0]}: {seen[-300:]!r}")
            seen = (seen + os.read(master, 1 << 17))[-4096:]

    wait_for(PROMPT)
    os.write(master, f"cat {data}; echo RELAYED-$((40+2))\r".encode())
    wait_for(b"RELAYED-42")
    os.write(master, b"exit\r")
    try:
        while os.read(master, 1 << 17):
            pass
    except OSError:
        pass
    os.waitpid(pid, 0)


def instructions(argv: list[str], data: Path, out: Path) -> int:
    """User-space instructions of argv[0]'s process (not its children) relaying `data`."""
    relay(["valgrind", "--tool=callgrind", "--trace-children=no",
           f"--callgrind-out-file={out}", *argv], data)
    summary = re.search(r"^summary: (\d+)", out.read_text(), re.M)
    assert summary is not None, out
    return int(summary[1])


def syscalls(argv: list[str], data: Path, out: Path) -> dict[str, int]:
    """Syscall counts of argv[0]'s process (not its children) relaying `data`."""
    relay(["strace", "-c", "-o", str(out), *argv], data)
    counts: dict[str, int] = {}
    for line in out.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total":
            counts[fields[-1]] = int(fields[3])
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=20)
    parser.add_argument("wrappers", nargs="+", metavar="NAME=COMMAND")
    args = parser.parse_args()
    for tool in ("valgrind", "strace"):
        if shutil.which(tool) is None:
            raise SystemExit(f"relay_cost: needs {tool} (apt-get install valgrind strace)")
    tmp = Path(tempfile.mkdtemp(prefix="relay-cost."))
    try:
        empty, full = tmp / "empty", tmp / "full"
        empty.write_bytes(b"")
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/0123456789ab\n"
        full.write_bytes(line * (args.mb * 1_000_000 // len(line)))
        mb = full.stat().st_size / 1e6
        print(f"{mb:.1f} MB of text through each wrapper, counted for the wrapper process\n")
        print("| wrapper | user-space instructions per MB | syscalls per MB | of which read / "
              "write / poll+select |")
        print("|---|---|---|---|")
        for spec in args.wrappers:
            name, _, command = spec.partition("=")
            argv = shlex.split(command.replace("{shell}", SHELL))
            per_mb = (instructions(argv, full, tmp / "cg.full")
                      - instructions(argv, empty, tmp / "cg.empty")) / mb
            base = syscalls(argv, empty, tmp / "st.empty")
            loaded = syscalls(argv, full, tmp / "st.full")
            delta = {k: loaded.get(k, 0) - base.get(k, 0) for k in loaded.keys() | base.keys()}
            total = sum(delta.values()) / mb
            waits = (delta.get("poll", 0) + delta.get("pselect6", 0) + delta.get("select", 0)
                     + delta.get("ppoll", 0))
            print(f"| {name} | {per_mb / 1e6:.2f} M | {total:.0f} | "
                  f"{delta.get('read', 0) / mb:.0f} / {delta.get('write', 0) / mb:.0f} / "
                  f"{waits / mb:.0f} |")
            sys.stdout.flush()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
