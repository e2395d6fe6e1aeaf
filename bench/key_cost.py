"""CPU a relay spends on one key and its echo after a pause, and that echo's latency.

    python3 bench/key_cost.py [--reps R] [--keys K] [--gap S] NAME=COMMAND...

Each COMMAND is a relay given a program to run (`{pyref}`-style: the relay's argv, then
the program); it runs `sh -c 'stty -icanon echo; exec cat >/dev/null'` in its pty, so the
pty echoes each key. The relay (pinned to CPU 1; this script to CPU 0) gets K keys, GAP
seconds apart, each sent once the last echo arrived: after each pause its caches are
cold, as after a user's pause. Reported per relay, medians over R interleaved rounds:
echo p50 and the relay's own CPU per key (/proc/PID/schedstat), the figures behind
docs/performance.md's sparse echo. No root needed.
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import shlex
import statistics
import time
import tty

PROGRAM = ["sh", "-c", "stty -icanon echo; exec cat >/dev/null"]


def _cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def one_round(command: str, keys: int, gap: float) -> tuple[float, float]:
    """(echo p50 µs, relay CPU µs per key) for one relay started afresh."""
    pid, fd = pty.fork()
    if pid == 0:
        os.sched_setaffinity(0, {1})
        argv = shlex.split(command) + PROGRAM
        os.execvp(argv[0], argv)  # COMMAND may name its program without a path
    try:
        os.sched_setaffinity(0, {0})
        tty.setraw(fd)
        time.sleep(1.0)  # started, its program waiting
        while select.select([fd], [], [], 0.2)[0]:
            os.read(fd, 65536)
        latencies = []
        before = _cpu_ns(pid)
        for _ in range(keys):
            time.sleep(gap)
            sent = time.perf_counter()
            os.write(fd, b"x")
            echoed = b""
            while b"x" not in echoed:
                echoed += os.read(fd, 100)
            latencies.append((time.perf_counter() - sent) * 1e6)
        per_key = (_cpu_ns(pid) - before) / keys / 1000
        return statistics.median(latencies), per_key
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.02, help="s between keys")
    parser.add_argument("relays", nargs="+", metavar="NAME=COMMAND")
    args = parser.parse_args()
    relays = dict(spec.split("=", 1) for spec in args.relays)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in relays}
    for _ in range(args.reps):
        for name, command in relays.items():
            results[name].append(one_round(command, args.keys, args.gap))
    print("| relay | echo p50 µs | relay CPU per key µs |\n|---|---|---|")
    for name, rounds in results.items():
        echo = statistics.median(r[0] for r in rounds)
        cpu = statistics.median(r[1] for r in rounds)
        print(f"| {name} | {echo:.0f} | {cpu:.0f} |")


if __name__ == "__main__":
    main()
