"""Is the process that registers over the socket a wrapper sshd started for that connection?

A user can run any program, idlewrap's interpreter included, so a registration is
taken only from a process that

- runs as the connection's user, and is traced by nobody;
- runs the interpreter the watchdog itself runs on (same file: device and inode);
- was started as the wrapper: `-I -m idlewrap [--config P]`, or a login-shell launcher
  (root's, with `-I`), with the policy the watchdog reads;
- has maps only of files root owns and nobody else can write (a library preloaded with
  LD_PRELOAD, which could fake all of the above from inside, is a mapped file);
- is in the connection's group, as a child of one of its sshd processes: sshd starts
  the wrapper itself (ForceCommand through a shell that execs it, or the launcher). A
  wrapper started from a shell the user already has is not the session's wrapper.
  The ~/.ssh/rc runner is one step further: sshd starts it with popen(3), through
  `sh -c "<login shell> -c '/bin/sh <home>/.ssh/rc'"` (`popen_shell`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

from idlewrap.audit.launch import python_module, read_launcher, writable_by_others
from idlewrap.settings import DEFAULT_CONFIG
from idlewrap.watchdog import procfs

POPEN_SHELL = "/bin/sh"  # glibc's popen runs `sh -c COMMAND` with this file
LOGIN_ARGS: tuple[list[str], ...] = ([], ["-l"], ["--login"], ["-i"])  # as cli.login_shell


class Expected(NamedTuple):
    """What a genuine wrapper on this host runs."""

    interpreter: procfs.FileId
    config: str  # the policy file, resolved


class Connection(NamedTuple):
    """What the watchdog knows of the connection a wrapper claims."""

    uid: int
    home: str
    shell: str  # the account's login shell (the launcher, for an rc runner)
    sshd: procfs.FileId
    contains: Callable[[int], bool]


def refusal(pid: int, uid: int, kind: str, conn: Connection, expected: Expected) -> str | None:
    """Why the process `pid` (peer credentials `uid`) is not a `kind` wrapper of `conn`."""
    try:
        return _refusal(pid, uid, kind, conn, expected)
    except (OSError, ValueError) as err:
        return f"cannot read /proc/{pid}: {err}"


def _refusal(pid: int, uid: int, kind: str, conn: Connection, expected: Expected) -> str | None:
    if uid != conn.uid:
        return f"uid {uid} is not the connection's ({conn.uid})"
    tracer = procfs.tracer_of(pid)
    if tracer:
        return f"traced by pid {tracer}"
    if procfs.exe_of(pid) != expected.interpreter:
        return f"runs {os.readlink(f'/proc/{pid}/exe')}, not idlewrap's interpreter"
    why = _not_started_as_wrapper(procfs.cmdline_of(pid), kind, conn.home, expected.config)
    if why:
        return why
    parent = procfs.stat_of(pid).ppid
    if kind == "rc" and popen_shell(parent, conn):
        parent = procfs.stat_of(parent).ppid
    if not conn.contains(pid) or not conn.contains(parent) or procfs.exe_of(parent) != conn.sshd:
        return "not started by the connection's sshd"
    mapped = procfs.untrusted_mapping(pid)
    if mapped:
        return f"maps {mapped}, which others than root can write"
    return None


def popen_shell(pid: int, conn: Connection) -> bool:
    """True if `pid` is the shell sshd's popen(3) started to run ~/.ssh/rc (session.c)."""
    try:
        return (procfs.exe_of(pid) == procfs.file_id(POPEN_SHELL) and procfs.cmdline_of(pid)
                == ["sh", "-c", f"{conn.shell} -c '/bin/sh {conn.home}/.ssh/rc'"])
    except OSError:
        return False


def _not_started_as_wrapper(argv: list[str], kind: str, home: str, config: str) -> str | None:
    args = argv[1:]
    module = python_module(args)
    if module is not None:
        name, isolated, rest = module
        used = _config_of(rest)
        if name != "idlewrap" or not isolated or kind != "session" or used is None:
            return f"not the wrapper's command line: {' '.join(argv)!r}"
    else:
        launcher = read_launcher(args[1]) if len(args) > 1 else None
        if launcher is None or not launcher.isolated or not args[0].startswith("-"):
            return f"not the wrapper's command line: {' '.join(argv)!r}"
        problem = writable_by_others(args[1])
        if problem:
            return f"launcher {args[1]}: {problem}"
        rest = args[2:]
        rc = ["-c", f"/bin/sh {home}/.ssh/rc"]
        fits = rest == rc if kind == "rc" else rest in LOGIN_ARGS or rest[:1] == ["-c"]
        if not fits:
            return f"not the launcher's {kind} command line: {' '.join(argv)!r}"
        used = launcher.config or DEFAULT_CONFIG
    if os.path.realpath(used) != config:
        return f"reads the policy {used}, not {config}"
    return None


def _config_of(rest: list[str]) -> str | None:
    match rest:
        case []:
            return DEFAULT_CONFIG
        case ["--config", path]:
            return path
        case [arg] if arg.startswith("--config="):
            return arg.removeprefix("--config=")
    return None
