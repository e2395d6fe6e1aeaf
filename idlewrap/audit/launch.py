"""How idlewrap gets started for an account, and what could run before it.

sshd runs a ForceCommand as ``<login shell> -c '<ForceCommand>'``: Debian's bash
(built with SSH_SOURCE_BASHRC) reads ~/.bashrc first and zsh reads ~/.zshenv, so the
user's own code runs before the wrapper. A launcher login shell is exec'd by sshd
directly and reads no user file. Either way the interpreter must run with ``-I`` and
be a file that only root can change, or the user can change the wrapper itself.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import shlex
import shutil
import stat
from typing import Literal, NamedTuple

from idlewrap.session import LAUNCHER_MARKER
from idlewrap.trust import TrustError, read_trusted

# sshd runs ~/.ssh/rc as `<login shell> -c '/bin/sh ~/.ssh/rc'` before the session (unless a
# ForceCommand is set, PermitUserRC is no, or the key says no-user-rc). Launchers written
# before issue 9 exec'd that untimed, so the rc file could start an interactive shell on
# the session's terminal; the launcher now runs it without a terminal for a few seconds
# at most (idlewrap/user_rc.py), and old launchers call the same code.
LAUNCHER_HOLDS_USER_RC = True

# Login shells that start no session at all: accounts with them are not audited.
NO_SESSION_SHELLS = frozenset({"nologin", "false", "true", "sync", "shutdown", "halt"})

# What each shell reads, for `SHELL -c COMMAND` started by sshd, before the command.
USER_FILES_FOR_COMMAND = {
    "bash": "~/.bashrc (Debian's bash reads it for sshd's -c)",
    "rbash": "~/.bashrc (Debian's bash reads it for sshd's -c)",
    "zsh": "~/.zshenv",
    "fish": "~/.config/fish/config.fish",
    "csh": "~/.cshrc",
    "tcsh": "~/.tcshrc or ~/.cshrc",
}
# Shells known to read nothing for -c (bash too, when it is started as "sh").
QUIET_SHELLS = frozenset({"sh", "dash", "posh"})

# sshd's PATH for a command given without a directory (Debian's default).
SSHD_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/games"
# read_trusted reads what it checks; an interpreter binary is a few MiB.
_BINARY_LIMIT = 256 << 20


def user_file_before_command(shell: str) -> str | None:
    """The user file ``shell`` reads before sshd's ``-c COMMAND``, or None if it reads none.

    An unknown shell gets a sentence saying so: it may read anything.
    """
    name = os.path.basename(shell)
    if name in QUIET_SHELLS:
        return None
    return USER_FILES_FOR_COMMAND.get(name, f"whatever {name} reads (a shell idlewrap "
                                            "does not know)")


def starts_no_session(shell: str) -> bool:
    """True for nologin, false and the like."""
    return os.path.basename(shell) in NO_SESSION_SHELLS


class Wrapper(NamedTuple):
    """An idlewrap start: a ``-m idlewrap`` command, a launcher, or the console script."""

    kind: Literal["module", "launcher", "script"]
    path: str  # the file named on the command line (interpreter, launcher or script)
    interpreter: str
    isolated: bool  # the interpreter gets -I
    config: str | None  # the policy it reads, if not the default


def _isolating(flags: list[str]) -> bool:
    """True if Python's short flags (``-I``, ``-IS``) include -I."""
    return any(f.startswith("-") and not f.startswith("--") and "I" in f[1:] for f in flags)


def _resolve(program: str) -> str:
    if "/" in program:
        return program
    return shutil.which(program, path=SSHD_PATH) or program


def _config_option(args: list[str]) -> str | None:
    for index, arg in enumerate(args):
        if arg == "--config" and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--config="):
            return arg.partition("=")[2]
    return None


def python_module(args: list[str]) -> tuple[str, bool, list[str]] | None:
    """For a Python command line's arguments: (module, -I given, module's args), or None.

    Follows CPython's option syntax: short flags may be clustered (``-Im idlewrap``),
    ``-X``/``-W``/``-Q`` take a value, ``-c`` and a script name end the options.
    """
    isolated = False
    index = 0
    while index < len(args) and args[index].startswith("-") and args[index] != "-":
        arg = args[index]
        index += 1
        if arg.startswith("--"):
            continue
        for pos, letter in enumerate(arg[1:], 1):
            value = arg[pos + 1:]
            if letter in "mXWQc" and not value and index < len(args):
                value = args[index]
                index += 1
            if letter == "m":
                return value, isolated, args[index:]
            if letter == "c":
                return None
            if letter in "XWQ":
                break
            isolated = isolated or letter == "I"
    return None


def parse_force_command(command: str) -> Wrapper | None:
    """The idlewrap start in a ForceCommand, or None if it does not start idlewrap."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    if argv[:1] == ["exec"]:
        argv = argv[1:]
    if not argv:
        return None
    program = _resolve(argv[0])
    module = python_module(argv[1:])
    if module is not None:
        name, isolated, rest = module
        if name != "idlewrap":
            return None
        return Wrapper("module", program, program, isolated, _config_option(rest))
    launcher = read_launcher(program)
    if launcher is not None:
        return launcher
    if os.path.basename(program) == "idlewrap":
        shebang = _shebang(_head(program))
        if shebang:
            return Wrapper("script", program, shebang[0], _isolating(shebang[1:]),
                           _config_option(argv[1:]))
    return None


_LAUNCHER_CONFIG = re.compile(r"login_shell\(sys\.argv\[1:\], config=(.+)\)\)\s*$", re.M)
_HEAD_BYTES = 65536


def _head(path: str) -> bytes:
    """The start of a regular file; b"" for anything else (a FIFO must not block the audit)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        return os.read(fd, _HEAD_BYTES) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    except OSError:
        return b""
    finally:
        os.close(fd)


def read_launcher(path: str) -> Wrapper | None:
    """The interpreter and policy of an ``install-shell`` launcher; None if ``path`` is not one."""
    head = _head(path)
    if LAUNCHER_MARKER not in head[:512]:
        return None
    shebang = _shebang(head)
    if not shebang:
        return None
    found = _LAUNCHER_CONFIG.search(head.decode(errors="replace"))
    try:
        config = str(ast.literal_eval(found[1])) if found else None
    except (ValueError, SyntaxError):
        config = None
    return Wrapper("launcher", path, shebang[0], _isolating(shebang[1:]), config)


def _shebang(head: bytes) -> list[str]:
    """The ``#!`` line's interpreter and its argument (Linux passes the rest as one)."""
    if not head.startswith(b"#!"):
        return []
    first = head[2:].split(b"\n", 1)[0]
    interpreter, _, rest = first.decode(errors="replace").strip().partition(" ")
    return [interpreter, rest.strip()] if rest.strip() else [interpreter]


@functools.lru_cache(maxsize=64)
def writable_by_others(path: str) -> str | None:
    """Why someone other than root could change what ``path`` runs, or None if nobody can.

    Checks the file and every directory on the way to it (symbolic links followed) as
    idlewrap's policy trust does, and, for an interpreter in a virtual environment, every
    file and directory of that environment (its site-packages is code the wrapper runs).
    """
    try:
        read_trusted(path, max_bytes=_BINARY_LIMIT)
    except TrustError as err:
        return str(err)
    except OSError as err:
        return f"{path}: {err.strerror or err}"
    venv = os.path.dirname(os.path.dirname(path))
    if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
        return _tree_writable_by_others(venv)
    return None


def _tree_writable_by_others(top: str) -> str | None:
    for directory, dirs, files in os.walk(top):
        names = [*dirs, *files] if directory != top else [".", *dirs, *files]
        for name in names:
            here = os.path.normpath(os.path.join(directory, name))
            try:
                st = os.lstat(here)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                continue
            if st.st_uid != 0:
                return f"{here} is owned by uid {st.st_uid}, not root"
            if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return f"{here} is writable by {'group' if st.st_mode & stat.S_IWGRP else 'others'}"
    return None
