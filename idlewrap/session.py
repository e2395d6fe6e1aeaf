"""What to run for a login, and how: interactive (pty), command (no pty) or pipe (ssh -T)."""

from __future__ import annotations

import os
import re

from idlewrap.records import NamedTuple

TYPE_CHECKING = False  # not typing's: a session never imports typing (records.py)
if TYPE_CHECKING:
    from typing import Literal

    Mode = Literal["interactive", "command", "pipe"]

FALLBACK_SHELL = "/bin/bash"
LAUNCHER_MARKER = b"# idlewrap login-shell launcher"
SFTP_SERVERS = (
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/libexec/sftp-server",
    "/usr/lib/ssh/sftp-server",
)


class Plan(NamedTuple):
    """The program to start: executable path, argv (argv[0] may be "-bash") and environment."""

    mode: Mode
    path: str
    argv: list[str]
    env: dict[str, str]


def is_launcher(path: str) -> bool:
    """True if `path` is an idlewrap login-shell launcher (wrapping it again would loop)."""
    try:
        with open(path, "rb") as f:
            return LAUNCHER_MARKER in f.read(512)
    except OSError:
        return False


def real_shell(policy_shell: str | None, account_shell: str | None) -> str:
    """The shell to run: the policy's, else the account's, never idlewrap itself."""
    if policy_shell:
        return policy_shell
    if account_shell and not is_launcher(account_shell):
        return account_shell
    if not account_shell:
        return "/bin/sh"  # what login(1) and sshd use for an empty passwd shell field
    return FALLBACK_SHELL


def map_internal_sftp(command: str) -> str:
    """`internal-sftp` is sshd-internal; a shell can only run the sftp-server binary."""
    words = command.split(maxsplit=1)
    if not words or words[0] != "internal-sftp":
        return command
    import shlex  # here and below: only a session with a command needs it

    server = next((s for s in SFTP_SERVERS if os.access(s, os.X_OK)), SFTP_SERVERS[0])
    rest = f" {words[1]}" if len(words) > 1 else ""
    return shlex.quote(server) + rest


_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def command_name(command: str) -> str:
    """The program a command line runs, for the log: never one of its arguments.

    The basename of the first word after any `NAME=value` assignments (which may hold
    secrets): `rsync` for `LC_ALL=C /usr/bin/rsync --server ...`. A line that is only
    assignments, or no words, gives "".
    """
    import shlex

    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: the shell will say so; the log gets a best guess
        words = command.split()
    for word in words:
        if not _ASSIGNMENT.match(word):
            return os.path.basename(word.rstrip("/")) or word
    return ""



def plan(*, shell: str, command: str | None, tty: bool, env: dict[str, str]) -> Plan:
    """Decide the mode and command line, as sshd would have run them without idlewrap."""
    child_env = dict(env)
    child_env.pop("SSH_ORIGINAL_COMMAND", None)  # sshd sets it only for forced commands
    child_env["SHELL"] = shell
    name = os.path.basename(shell)
    if command is None:
        mode: Mode = "interactive" if tty else "pipe"
        return Plan(mode, shell, [f"-{name}"], child_env)
    mode = "interactive" if tty else "command"
    return Plan(mode, shell, [name, "-c", map_internal_sftp(command)], child_env)
