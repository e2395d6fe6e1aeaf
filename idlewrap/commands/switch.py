"""What ``idlewrap enable`` writes and ``idlewrap disable`` takes back (not a command itself).

Three edits switch idlewrap on for sshd: the drop-in with the ForceCommand
(:data:`DROPIN`), the PAM hook line in sshd's PAM stack, and ``user_readenv=0`` for
pam_env there (docs/security.md: with 1 a user's ~/.pam_environment reaches the root
hook). Each is a pure function of a file's text, so ``--dry-run`` shows it as a diff and
a test can check that disable undoes enable byte for byte. Each of the two is marked
(:data:`DROPIN_MARK`, :data:`HOOK_MARK`) so that disable removes exactly what enable
added. The shipped examples (etc/ssh/sshd_config.d/50-idlewrap.conf,
pam/sshd-session.snippet) are these texts for /usr/bin/python3; a test keeps them so.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
import re
import shlex
import stat
import tempfile
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import NamedTuple

from idlewrap.audit.host import hook_command
from idlewrap.audit.pam_stack import PamLine, logical_lines, split_words

SSHD_DIR = "/etc/ssh"  # where sshd looks up a relative Include
SSHD_CONFIG = "/etc/ssh/sshd_config"
DROPIN = "/etc/ssh/sshd_config.d/50-idlewrap.conf"
PAM_SSHD = "/etc/pam.d/sshd"

DROPIN_MARK = ("# idlewrap's sshd drop-in: `idlewrap enable` writes it, "
               "`idlewrap disable` removes it.")
HOOK_MARK = "# idlewrap's PAM hook (`idlewrap disable` removes this line and the next):"

_DROPIN = """\
{mark}
# Installed as /etc/ssh/sshd_config.d/50-idlewrap.conf (Debian's sshd_config includes
# that directory), it sends every ssh session through idlewrap, which ends it after a
# time without input from the user's terminal (the limits: /etc/idlewrap/idlewrap.toml).
# Check with `sshd -t`, then `systemctl reload ssh`.
#
# sshd runs the forced command for every session of the users it applies to:
# interactive shells, `ssh host command`, scp, sftp and rsync. idlewrap reads the
# real command from SSH_ORIGINAL_COMMAND and runs it through the user's shell; a
# command without a pty is exec'd untimed unless the policy sets command_idle_timeout.
#
# -I keeps the interpreter from reading PYTHON* variables and the user's
# site-packages. The interpreter is the one idlewrap is installed for (for a virtual
# environment, that environment's python, readable by every user).
#
# Caveat: sshd runs a forced command as `<login shell> -c '<command>'`, and Debian's
# bash reads ~/.bashrc first (zsh reads ~/.zshenv): a user who can edit those files
# can escape the wrapper. For such accounts make idlewrap the login shell instead
# (`idlewrap install-shell`, docs/deploy.md).

# idlewrap runs in the user's environment: never let users set LD_PRELOAD,
# PYTHONPATH and friends from ~/.ssh/environment.
PermitUserEnvironment no

# Forwarded channels are not sessions and idlewrap cannot see them: let sshd close
# the ones that carry no data for 15 minutes (OpenSSH 9.2 and later).
ChannelTimeout agent-connection=15m direct-tcpip=15m direct-streamlocal@openssh.com=15m \
forwarded-tcpip=15m forwarded-streamlocal@openssh.com=15m x11-connection=15m

# Everyone's sessions go through idlewrap. Keep this line last in the main section:
# `Match` blocks below apply until the end of the file.
ForceCommand {python} -I -m idlewrap

# To guard only some accounts, remove the ForceCommand above and use Match blocks
# instead (the idle limits themselves still come from /etc/idlewrap/idlewrap.toml):
#
# Match Group sudo,adm
#     ForceCommand {python} -I -m idlewrap
#
# Match User alice,bob
#     ForceCommand {python} -I -m idlewrap
#
# A Match block can also exempt an account from the forced command altogether, e.g.
# a service account (idlewrap's own `exempt = true` keeps it logged instead):
#
# Match User backup-svc
#     ForceCommand none
"""


class SwitchError(Exception):
    """A file that cannot be read, changed or trusted: one line for the admin."""


class Change(NamedTuple):
    """One file as it is and as it would be."""

    path: str  # as on the host: /etc/pam.d/sshd
    old: str | None  # None: there is no such file
    new: str | None  # None: remove it
    what: str  # one line for the admin: "added the PAM hook"


def dropin_text(python: str) -> str:
    """The sshd drop-in for interpreter ``python``."""
    return _DROPIN.format(mark=DROPIN_MARK, python=python)


def hook_line(python: str) -> str:
    """The PAM hook's line for /etc/pam.d/sshd (pam/README.md), for interpreter ``python``."""
    return f"session    optional     pam_exec.so quiet {python} -I -m idlewrap.pam_hook"


def located(root: str, path: str) -> str:
    """Where host path ``path`` is under ``root`` (``/`` for the host itself)."""
    return os.path.join(root, path.lstrip("/"))


def read_text(path: str) -> str | None:
    """The file's text, or None if there is none."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise SwitchError(f"{path}: {getattr(err, 'strerror', None) or err}") from None


def diff(change: Change) -> str:
    """``change`` as a unified diff (``/dev/null`` for a file created or removed)."""
    old = [] if change.old is None else change.old.splitlines(keepends=True)
    new = [] if change.new is None else change.new.splitlines(keepends=True)
    return "".join(difflib.unified_diff(
        old, new, "/dev/null" if change.old is None else change.path,
        "/dev/null" if change.new is None else change.path))


# -- sshd ---------------------------------------------------------------------------------

def includes(sshd_config: str, path: str) -> bool:
    """True if the main section of ``sshd_config`` (before any Match) Includes ``path``."""
    for raw in sshd_config.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, *rest = re.split(r"\s*=\s*|\s+", line, maxsplit=1)
        if keyword.lower() == "match":
            return False
        if keyword.lower() != "include":
            continue
        try:
            patterns = shlex.split(rest[0]) if rest else []
        except ValueError:
            continue
        for pattern in patterns:
            if PurePosixPath(path).match(os.path.join(SSHD_DIR, pattern)):
                return True
    return False


def enable_dropin(old: str | None, python: str) -> str:
    """The drop-in's new text; SwitchError if a file there is not idlewrap's."""
    if old is not None and DROPIN_MARK not in old.splitlines():
        raise SwitchError(f"{DROPIN} exists and is not idlewrap's (no line {DROPIN_MARK!r}): "
                          "move it away first")
    return dropin_text(python)


def is_our_dropin(text: str | None) -> bool:
    """True if ``text`` is a drop-in enable wrote (it carries the mark)."""
    return text is not None and DROPIN_MARK in text.splitlines()


# -- PAM ----------------------------------------------------------------------------------

def _rules(text: str) -> list[tuple[int, list[str]]]:
    """(0-based first physical line, words) of each rule of a PAM file."""
    return [(number - 1, split_words(line)) for number, line in logical_lines(text)]


def _runs_hook(words: list[str]) -> bool:
    if len(words) < 3 or words[0].lstrip("-").lower() != "session":
        return False
    rule = PamLine("", 0, "session", words[1], words[2], tuple(words[3:]))
    return rule.module_name == "pam_exec.so" and hook_command(rule) is not None


def hook_lines(text: str) -> list[int]:
    """The 0-based lines of ``text`` that run idlewrap's PAM hook."""
    return [start for start, words in _rules(text) if _runs_hook(words)]


def add_hook(text: str, python: str) -> str:
    """``text`` with the marked hook line for ``python``; unchanged if a hook line is there.

    A marked line for another interpreter is replaced. A new one goes after the last
    session rule, but before ``pam_selinux.so open`` (and its comment): rules after that
    one run in the user's security context, and the hook is root's.
    """
    lines = text.splitlines(keepends=True)
    line = hook_line(python) + "\n"
    for index in _marked_hooks(text):
        if lines[index + 1] != line:
            lines[index + 1] = line
            return "".join(lines)
    if hook_lines(text):
        return text
    sessions = [(start, words) for start, words in _rules(text)
                if words[0].lstrip("-").lower() == "session"
                or (words[0] == "@include" and "session" in " ".join(words[1:]))]
    if not sessions:
        at = len(lines)
    else:
        start, words = sessions[-1]
        if words[2:3] == ["pam_selinux.so"] and "open" in words[3:]:
            at = start
            while at > 0 and lines[at - 1].lstrip().startswith("#"):
                at -= 1
        else:
            at = _end_of_rule(lines, start)
    if at == len(lines) and lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines[at:at] = [HOOK_MARK + "\n", line]
    return "".join(lines)


def remove_hook(text: str) -> str:
    """``text`` without the marked hook lines (what :func:`add_hook` added)."""
    lines = text.splitlines(keepends=True)
    for index in reversed(_marked_hooks(text)):
        del lines[index:index + 2]
    return "".join(lines)


def _marked_hooks(text: str) -> list[int]:
    """The 0-based lines of each mark that a hook line follows."""
    hooks = set(hook_lines(text))
    return [index for index, line in enumerate(text.splitlines())
            if line.rstrip() == HOOK_MARK and index + 1 in hooks]


def _end_of_rule(lines: list[str], start: int) -> int:
    """The line after the rule that starts at ``start`` (a backslash continues a line)."""
    at = start
    while at < len(lines) - 1 and lines[at].split("#", 1)[0].rstrip().endswith("\\"):
        at += 1
    return at + 1


_READENV_ON = re.compile(r"(?<=\s)user_readenv=1(?=\s|$)")


def readenv_off(text: str) -> str:
    """``text`` with ``user_readenv=1`` made 0 on each pam_env line (comments untouched)."""
    lines = text.splitlines(keepends=True)
    for start, words in _rules(text):
        if len(words) > 2 and os.path.basename(words[2]) == "pam_env.so":
            rule, hash_, comment = lines[start].partition("#")
            lines[start] = _READENV_ON.sub("user_readenv=0", rule) + hash_ + comment
    return "".join(lines)


# -- files --------------------------------------------------------------------------------

def write_atomically(path: str, text: str, *, uid: int, gid: int, mode: int) -> None:
    """Replace ``path`` with ``text`` at once: a temporary file beside it, renamed over it."""
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Applied(NamedTuple):
    """A change made, and how to take it back."""

    at: str  # the real path
    old: str | None
    owner: tuple[int, int, int]  # uid, gid, mode it had (or would have had)


def apply(changes: Iterable[Change], root: str) -> list[Applied]:
    """Make each change under ``root``; on a failure take back those made, raise SwitchError."""
    done: list[Applied] = []
    for change in changes:
        at = located(root, change.path)
        try:
            if os.path.islink(at):
                # Replacing the link would cut it; following it could change a file other
                # services share (config management often links PAM files).
                raise OSError(errno.ELOOP, "a symbolic link, not replaced: change it by hand")
            owner = _owner(at)
            if change.new is None:
                os.unlink(at)
            else:
                write_atomically(at, change.new, uid=owner[0], gid=owner[1], mode=owner[2])
        except OSError as err:
            undo(done)
            raise SwitchError(f"{change.path}: {err.strerror or err} (nothing changed)") from None
        done.append(Applied(at, change.old, owner))
    return done


def undo(done: list[Applied]) -> None:
    """Put back what :func:`apply` changed, last first."""
    for applied in reversed(done):
        with contextlib.suppress(OSError):
            if applied.old is None:
                os.unlink(applied.at)
            else:
                uid, gid, mode = applied.owner
                write_atomically(applied.at, applied.old, uid=uid, gid=gid, mode=mode)


def _owner(path: str) -> tuple[int, int, int]:
    """The owner and mode of ``path``; for a new file its directory's owner and 0644."""
    try:
        st = os.stat(path)
        return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)
    except FileNotFoundError:
        st = os.stat(os.path.dirname(path))
        return st.st_uid, st.st_gid, 0o644
