"""The classic idle settings, as a compliance checker sees them and as they behave.

Checkers answer with greps: TMOUT in /etc/profile.d, StopIdleSessionSec in
logind.conf, tmux's lock-after-time. Each is reported here with what it really does:
none of them ends an idle session the user wants to keep. They never fail the audit
(idlewrap is the control); a setting that is present is a warning so that nobody
counts on it, an absent one is n/a.
"""

from __future__ import annotations

import configparser
import glob
import os
import re
from pathlib import Path
from typing import NamedTuple

from idlewrap.audit.findings import Check, check

# The STIG and CIS ask for at most 15 minutes (RHEL 9's later releases: 10).
CHECKER_MAX_SECONDS = 900


class TmoutSetting(NamedTuple):
    """One ``TMOUT=N`` assignment in a shell start-up file."""

    path: str
    line: int
    seconds: int
    readonly: bool


# An assignment, optionally behind readonly/export/declare/typeset and their flags.
_TMOUT = re.compile(r"(?:^|[\s;&|(])(?:(readonly|export|declare|typeset)((?:\s+-[A-Za-z]+)*)\s+)?"
                    r"TMOUT=[\"']?(\d+)")
_READONLY_NAME = re.compile(r"(?:^|[\s;&|(])(?:readonly|(?:declare|typeset)\s+-[A-Za-z]*r"
                            r"[A-Za-z]*)(?:\s+-[A-Za-z]+)*\s+(?:[A-Za-z_][A-Za-z0-9_]*\s+)*TMOUT\b")


def tmout_files(etc: Path) -> list[Path]:
    """The files checkers grep for TMOUT: profile, profile.d/*.sh, bash.bashrc, bashrc."""
    files = [etc / "profile", *sorted((etc / "profile.d").glob("*.sh")),
             etc / "bash.bashrc", etc / "bashrc"]
    return [path for path in files if path.is_file()]


def find_tmout(path: Path) -> list[TmoutSetting]:
    """Every TMOUT assignment in ``path`` (comments ignored), with whether it is readonly."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    found = []
    readonly_later = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0]
        readonly_later = readonly_later or bool(_READONLY_NAME.search(line))
        for match in _TMOUT.finditer(line):
            keyword, flags = match[1], match[2] or ""
            readonly = keyword == "readonly" or (
                keyword in ("declare", "typeset") and "r" in flags.replace(" ", ""))
            found.append(TmoutSetting(str(path), number, int(match[3]), readonly))
    if readonly_later:
        found = [s._replace(readonly=True) for s in found]
    return found


def tmout_check(etc: Path) -> Check:
    """``classic.tmout``."""
    settings = [s for path in tmout_files(etc) for s in find_tmout(path)]
    if not settings:
        return check("classic.tmout", "n/a",
                     f"no TMOUT in {etc}/profile, profile.d/*.sh or bash.bashrc: a grep-based "
                     "checker reports a finding here, idlewrap does the job")
    first = settings[0]
    where = ", ".join(f"TMOUT={s.seconds}{' readonly' if s.readonly else ''} "
                      f"({s.path}:{s.line})" for s in settings)
    checker = ("a checker passes it" if all(s.seconds <= CHECKER_MAX_SECONDS for s in settings)
               else f"a checker fails it (more than {CHECKER_MAX_SECONDS} s)")
    escape = "" if first.readonly else "; `unset TMOUT` removes it (not readonly)"
    return check("classic.tmout", "warn",
                 f"{where}: {checker}; as it behaves: it ends only a bash, zsh or ksh "
                 "waiting at its prompt, so vim, less or sleep keep the session open, and "
                 f"`env - bash --norc --noprofile` starts a shell without it{escape}")


class LogindSettings(NamedTuple):
    """logind.conf's idle settings after drop-ins, with the file each came from."""

    stop_idle: str | None
    stop_idle_from: str | None
    kill_user_processes: str | None
    kill_from: str | None


def logind_files(etc: Path) -> list[Path]:
    """logind.conf, then its drop-ins in name order (later files win)."""
    drop_ins = sorted(glob.glob(str(etc / "systemd" / "logind.conf.d" / "*.conf")),
                      key=os.path.basename)
    return [path for path in [etc / "systemd" / "logind.conf", *map(Path, drop_ins)]
            if path.is_file()]


def read_logind(etc: Path) -> LogindSettings:
    """StopIdleSessionSec and KillUserProcesses from the [Login] sections under ``etc``."""
    values: dict[str, tuple[str, str]] = {}
    for path in logind_files(etc):
        parser = configparser.ConfigParser(strict=False, interpolation=None,
                                           comment_prefixes=("#", ";"))
        parser.optionxform = str  # type: ignore[assignment, method-assign]
        try:
            parser.read_string(path.read_text(errors="replace"), source=str(path))
        except (OSError, configparser.Error):
            continue
        if parser.has_section("Login"):
            for key in ("StopIdleSessionSec", "KillUserProcesses"):
                if parser.has_option("Login", key):
                    values[key] = (parser.get("Login", key).strip(), str(path))
    stop = values.get("StopIdleSessionSec")
    kill = values.get("KillUserProcesses")
    return LogindSettings(stop[0] if stop else None, stop[1] if stop else None,
                          kill[0] if kill else None, kill[1] if kill else None)


_SPAN_UNITS = {"": 1, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60,
               "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600,
               "hours": 3600, "d": 86400, "day": 86400, "days": 86400}
_SPAN_PART = re.compile(r"\s*(\d+)\s*([a-z]*)")


def timespan_seconds(text: str) -> int | None:
    """A systemd time span (``900``, ``15min``, ``1h 30min``) in seconds; None: infinity."""
    text = text.strip().lower()
    if text in ("", "infinity"):
        return None
    total, pos = 0, 0
    while pos < len(text):
        part = _SPAN_PART.match(text, pos)
        if part is None or part[2] not in _SPAN_UNITS:
            return None
        total += int(part[1]) * _SPAN_UNITS[part[2]]
        pos = part.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return total or None


def logind_checks(etc: Path) -> list[Check]:
    """``classic.stop_idle_session`` and ``classic.kill_user_processes``."""
    settings = read_logind(etc)
    seconds = timespan_seconds(settings.stop_idle or "")
    if seconds is None:
        stop = check("classic.stop_idle_session", "n/a",
                     "StopIdleSessionSec not set: a grep-based checker reports a finding "
                     "here, idlewrap does the job")
    else:
        checker = ("a checker passes it" if seconds <= CHECKER_MAX_SECONDS
                   else f"a checker fails it (more than {CHECKER_MAX_SECONDS} s)")
        stop = check("classic.stop_idle_session", "warn",
                     f"StopIdleSessionSec={settings.stop_idle} ({settings.stop_idle_from}): "
                     f"{checker}; as it behaves: logind (systemd 252+) judges idleness by "
                     "the tty's access time, which the user owns (`touch $(tty)` keeps it "
                     "fresh), and a session without a tty (ssh -T) never counts as idle")
    kill_value = settings.kill_user_processes
    shown = (f"KillUserProcesses={kill_value} ({settings.kill_from})" if kill_value
             else "KillUserProcesses not set (the build's default; no on Debian and RHEL)")
    if seconds is None:
        kill = check("classic.kill_user_processes", "n/a",
                     f"{shown}; it matters only with StopIdleSessionSec")
    elif (kill_value or "no").lower() in ("yes", "true", "1", "on"):
        kill = check("classic.kill_user_processes", "pass",
                     f"{shown}: a session logind stops takes its processes with it")
    else:
        kill = check("classic.kill_user_processes", "warn",
                     f"{shown}: when logind stops an idle session, nohup'd jobs and a "
                     "tmux server keep running for the user to reattach")
    return [stop, kill]


_TMUX_LOCK = re.compile(r"^\s*(?:set|set-option)\s+(?:-[a-zA-Z]+\s+)*(lock-after-time|"
                        r"lock-command)\s+(.+?)\s*$")
_TMUX_BIND = re.compile(r"^\s*(?:bind|bind-key)\s+.*\block-(?:session|client|server)\b")


def tmux_check(etc: Path) -> Check:
    """``classic.tmux``: lock rules in /etc/tmux.conf."""
    path = etc / "tmux.conf"
    found = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for raw in lines:
        line = raw.split("#", 1)[0]
        setting = _TMUX_LOCK.match(line)
        if setting:
            found.append(f"{setting[1]} {setting[2]}")
        elif _TMUX_BIND.match(line):
            found.append(line.strip())
    if not found:
        return check("classic.tmux", "n/a",
                     f"no lock rules in {path}; the tmux rules were retired from the RHEL 8 "
                     "and 9 STIGs")
    return check("classic.tmux", "warn",
                 f"{', '.join(found)} ({path}): the tmux rules were retired from the RHEL 8 "
                 "and 9 STIGs, and as it behaves a tmux lock only covers a client attached "
                 "to tmux: `ssh host bash`, `tmux -f /dev/null` or simply not starting tmux "
                 "avoids it, and it never ends the session")


def classic_checks(etc: Path) -> list[Check]:
    """Every classic-setting check, for the configuration under ``etc`` (normally /etc)."""
    return [tmout_check(etc), *logind_checks(etc), tmux_check(etc)]
