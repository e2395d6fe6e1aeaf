#!/usr/bin/env python3
"""The no-pty row: a byte stream through the wrapper's stream relay vs no wrapper at all.

One private sshd (tests/infra.py), two accounts: `iwd_bwrap` gets idlewrap as its
ForceCommand with `command_idle_timeout` set (so its commands are relayed), and
`iwd_bplain` gets `ForceCommand none` (the command runs as sshd starts it). Each run
moves SIZE bytes both ways for each account, interleaved:

    down  ssh host 'head -c SIZE /dev/zero' > (read and dropped by this script)
    up    head -c SIZE /dev/zero | ssh host 'cat > /dev/null'

Throughput is timed from the first byte (down) or from a marker the command prints
before `cat` starts (up) to the end, so connection set-up is left out. CPU is each
process's schedstat run time, read while the session is still open: the command
closes its output and sleeps a moment after the transfer, and meanwhile this script
reads every process below the sshd listener (sshd's own, the wrapper, the command).
The wrapper's start-up (interpreter, policy) is measured once on an empty command and
subtracted, so "relay CPU/GB" is what moving the bytes cost.

    IDLEWRAP_TEST_PYTHON=/opt/idlewrap-test/venv-N/bin/python \
        bench/commands.py [--size 1G] [--runs 3]

As root (real users, a private sshd), after tests/run has installed the checkout into
that venv. It is CPU heavy: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import infra

TAIL = "exec >&- 2>&-; sleep 0.6"  # the output ends, the session (and its processes) stays
SIZES = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


class Sample(NamedTuple):
    """One transfer: its rate and the CPU seconds of each kind of process."""

    mb_s: float
    relay: float
    sshd: float
    command: float


def size(text: str) -> int:
    """`1G`, `500M`, `4096` as bytes."""
    match = re.fullmatch(r"(\d+)([KMG]?)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(match[1]) * SIZES.get(match[2], 1)


def cpu_below(root: int) -> dict[str, float]:
    """CPU seconds (schedstat) of every process below `root`, by kind."""
    totals = {"relay": 0.0, "sshd": 0.0, "command": 0.0}
    stack = [root]
    while stack:
        pid = stack.pop()
        for task in _tasks(pid):
            stack.extend(_children(pid, task))
        if pid == root:
            continue
        try:
            run_ns = int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        program = cmdline.split(b"\0")[0].split(b":")[0]
        kind = ("relay" if b"\0-m\0idlewrap" in cmdline
                else "sshd" if program.endswith(b"sshd") or b"-sshd-" in program
                else "command")
        totals[kind] += run_ns / 1e9
    return totals


def _tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def _children(pid: int, task: str) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    except OSError:
        return []


class Bench:
    """The sshd, the two accounts, and one transfer at a time."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        workdir = infra.private_dir("bench-commands")
        key = workdir / "client_ed25519"
        infra.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        self.users = infra.Users((workdir / "client_ed25519.pub").read_text().strip())
        self.wrapped = self.users.user("iwd_bwrap").name
        self.plain = self.users.user("iwd_bplain").name
        self.log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        log_path = workdir / "log"
        self.log.bind(str(log_path))
        os.chmod(log_path, 0o666)
        policy = infra.write_root_file(
            workdir / "idlewrap.toml",
            f'command_idle_timeout = "5m"\n[log]\nsyslog_socket = "{log_path}"\n')
        self.server = infra.SshServer(
            f"ForceCommand {infra.PYTHON} -I -m idlewrap --config {policy}\n"
            f"Match User {self.plain}\n  ForceCommand none\n",
            workdir, key).start()
        assert self.server.process is not None
        self.listener = self.server.process.pid

    def close(self) -> None:
        self.server.stop()
        self.log.close()
        self.users.cleanup()
        infra.cleanup_run_dir()

    def _ssh(self, user: str, command: str, **kw: object) -> subprocess.Popen[bytes]:
        argv = [*self.server.ssh_argv(user), command]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, **kw)  # type: ignore[call-overload, no-any-return]

    def down(self, user: str) -> Sample:
        """`head -c SIZE /dev/zero` on the server, read here."""
        ssh = self._ssh(user, f"head -c {self.nbytes} /dev/zero; {TAIL}",
                        stdin=subprocess.DEVNULL)
        assert ssh.stdout is not None
        fd = ssh.stdout.fileno()
        first = os.read(fd, 1 << 20)
        started, got = time.monotonic(), len(first)
        while chunk := os.read(fd, 1 << 20):
            got += len(chunk)
        ended = time.monotonic()
        return self._finish(ssh, got, (got - len(first)) / (ended - started))

    def up(self, user: str) -> Sample:
        """`head -c SIZE /dev/zero` here, `cat > /dev/null` on the server."""
        head = subprocess.Popen(["head", "-c", str(self.nbytes), "/dev/zero"],
                                stdout=subprocess.PIPE)
        ssh = self._ssh(user, f"echo go; cat > /dev/null; echo done; {TAIL}", stdin=head.stdout)
        assert ssh.stdout is not None and head.stdout is not None
        head.stdout.close()
        lines = ssh.stdout.readline(), time.monotonic(), ssh.stdout.readline(), time.monotonic()
        assert lines[0] == b"go\n" and lines[2] == b"done\n", lines
        head.wait()
        return self._finish(ssh, self.nbytes, self.nbytes / (lines[3] - lines[1]))

    def empty(self) -> float:
        """The wrapper's CPU for a session that moves nothing: its start-up."""
        ssh = self._ssh(self.wrapped, f"echo go; {TAIL}", stdin=subprocess.DEVNULL)
        assert ssh.stdout is not None
        ssh.stdout.read()
        return self._finish(ssh, 0, 0.0).relay

    def _finish(self, ssh: subprocess.Popen[bytes], got: int, rate: float) -> Sample:
        """Read the processes' CPU while the session idles in its tail, then wait for it."""
        time.sleep(0.2)
        cpu = cpu_below(self.listener)
        if ssh.wait(30) != 0:
            raise RuntimeError(f"ssh exited {ssh.returncode}")
        if got not in (0, self.nbytes):
            raise RuntimeError(f"moved {got} bytes of {self.nbytes}")
        return Sample(rate / 1e6, cpu["relay"], cpu["sshd"], cpu["command"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=size, default=size("1G"), help="bytes per transfer (1G)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs (3)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/commands.py: must run as root (real users, a private sshd)", file=sys.stderr)
        return 2
    infra.installed_python_check()
    bench = Bench(args.size)
    try:
        bench.down(bench.plain)  # warm up caches and the host key
        start_up = statistics.median(bench.empty() for _ in range(3))
        samples: dict[tuple[str, str], list[Sample]] = {}
        accounts = [("plain", bench.plain), ("wrapped", bench.wrapped)]
        for run in range(args.runs):
            for direction in ("down", "up"):
                # every other run the other way round, so that drift hits both alike
                for who, user in accounts if run % 2 == 0 else accounts[::-1]:
                    sample = getattr(bench, direction)(user)
                    samples.setdefault((direction, who), []).append(sample)
    finally:
        bench.close()
    print(report(samples, args.size, start_up, args.runs))
    return 0


def report(samples: dict[tuple[str, str], list[Sample]], nbytes: int, start_up: float,
           runs: int) -> str:
    """A Markdown table of medians, with the ratios the targets are about."""
    gb = nbytes / (1 << 30)
    lines = [
        f"{runs} run(s), {nbytes >> 20} MiB each way; wrapper start-up CPU "
        f"{start_up * 1000:.0f} ms (subtracted)",
        "",
        "| direction | plain MB/s | wrapped MB/s | ratio | relay CPU s/GB | sshd CPU s/GB "
        "(wrapped) | relay / sshd |",
        "|---|---|---|---|---|---|---|",
    ]
    for direction in ("down", "up"):
        plain, wrapped = samples[(direction, "plain")], samples[(direction, "wrapped")]
        rate_p = statistics.median(s.mb_s for s in plain)
        rate_w = statistics.median(s.mb_s for s in wrapped)
        relay = statistics.median(max(s.relay - start_up, 0.0) for s in wrapped) / gb
        sshd = statistics.median(s.sshd for s in wrapped) / gb
        ratios = ", ".join(f"{w.mb_s / p.mb_s:.2f}" for p, w in zip(plain, wrapped, strict=True))
        lines.append(f"| {direction} | {rate_p:.0f} | {rate_w:.0f} | {rate_w / rate_p:.2f} "
                     f"({ratios}) | {relay:.3f} | {sshd:.2f} | {relay / sshd:.1%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
