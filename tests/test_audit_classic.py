"""The classic idle settings (TMOUT, logind, tmux), as checkers see them and as they behave."""

from pathlib import Path

import pytest

from idlewrap.audit.classic import (
    classic_checks,
    find_tmout,
    logind_checks,
    read_logind,
    timespan_seconds,
    tmout_check,
    tmux_check,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "seconds", "readonly"), [
    ("declare -xr TMOUT=900\n", 900, True),
    ("readonly TMOUT=600\n", 600, True),
    ("typeset -r TMOUT=600\n", 600, True),
    ("TMOUT=900\nreadonly TMOUT\nexport TMOUT\n", 900, True),
    ("TMOUT=900; readonly TMOUT; export TMOUT\n", 900, True),
    ("export TMOUT=1200\n", 1200, False),
    ("if [ -z \"$TMOUT\" ]; then TMOUT='900'; fi\n", 900, False),
    ("declare -x TMOUT=900\n", 900, False),
])
def test_find_tmout(tmp_path: Path, text: str, seconds: int, readonly: bool) -> None:
    found = find_tmout(write(tmp_path / "tmout.sh", text))
    assert [(s.seconds, s.readonly) for s in found] == [(seconds, readonly)]


def test_commented_tmout_is_not_a_setting(tmp_path: Path) -> None:
    assert find_tmout(write(tmp_path / "x.sh", "# TMOUT=900\n#readonly TMOUT=900\n")) == []


def test_tmout_check_reports_the_checker_and_the_behaviour(tmp_path: Path) -> None:
    assert tmout_check(tmp_path).status == "n/a"
    write(tmp_path / "profile.d" / "tmout.sh", "declare -xr TMOUT=900\n")
    write(tmp_path / "profile.d" / "not-a-script.txt", "TMOUT=1\n")
    found = tmout_check(tmp_path)
    assert found.status == "warn"
    assert found.detail.startswith(f"TMOUT=900 readonly ({tmp_path}/profile.d/tmout.sh:1): "
                                   "a checker passes it; as it behaves:")
    assert "env - bash --norc --noprofile" in found.detail
    assert "unset TMOUT" not in found.detail
    assert "RHEL-09-412035" in found.refs and "UBTU-22-412030" in found.refs
    write(tmp_path / "bash.bashrc", "TMOUT=3600\n")
    found = tmout_check(tmp_path)
    assert "a checker fails it (more than 900 s)" in found.detail
    assert "`unset TMOUT` removes it" not in found.detail  # the first one is readonly


@pytest.mark.parametrize(("text", "seconds"), [
    ("900", 900), ("15min", 900), ("1h 30min", 5400), ("10m", 600), ("infinity", None),
    ("", None), ("5 fortnights", None),
])
def test_timespan_seconds(text: str, seconds: int | None) -> None:
    assert timespan_seconds(text) == seconds


def test_logind_drop_ins_win_in_name_order(tmp_path: Path) -> None:
    write(tmp_path / "systemd" / "logind.conf",
          "[Login]\n#StopIdleSessionSec=infinity\nKillUserProcesses=no\n")
    write(tmp_path / "systemd" / "logind.conf.d" / "20-b.conf", "[Login]\nStopIdleSessionSec=600\n")
    write(tmp_path / "systemd" / "logind.conf.d" / "10-a.conf", "[Login]\nStopIdleSessionSec=900\n")
    settings = read_logind(tmp_path)
    assert settings.stop_idle == "600"
    assert settings.stop_idle_from == f"{tmp_path}/systemd/logind.conf.d/20-b.conf"
    assert settings.kill_user_processes == "no"
    stop, kill = logind_checks(tmp_path)
    assert stop.status == "warn" and "touch $(tty)" in stop.detail
    assert stop.refs[:2] == ("RHEL-08-020035", "RHEL-09-412080")
    assert kill.status == "warn" and "nohup" in kill.detail


def test_logind_without_stop_idle_is_not_applicable(tmp_path: Path) -> None:
    stop, kill = logind_checks(tmp_path)
    assert (stop.status, kill.status) == ("n/a", "n/a")
    write(tmp_path / "systemd" / "logind.conf",
          "[Login]\nStopIdleSessionSec=15min\nKillUserProcesses=yes\n")
    stop, kill = logind_checks(tmp_path)
    assert (stop.status, kill.status) == ("warn", "pass")


def test_tmux_lock_rules_are_retired(tmp_path: Path) -> None:
    absent = tmux_check(tmp_path)
    assert absent.status == "n/a" and "retired" in absent.detail
    write(tmp_path / "tmux.conf", "set -g lock-command vlock\nset -g lock-after-time 900\n"
          "bind X lock-session\n# set -g lock-after-time 1\n")
    found = tmux_check(tmp_path)
    assert found.status == "warn"
    assert found.detail.startswith("lock-command vlock, lock-after-time 900, bind X lock-session")
    assert "retired from the RHEL 8 and 9 STIGs" in found.detail


def test_classic_checks_never_fail(tmp_path: Path) -> None:
    write(tmp_path / "profile", "TMOUT=99999\n")
    write(tmp_path / "systemd" / "logind.conf", "[Login]\nStopIdleSessionSec=2h\n")
    assert {c.status for c in classic_checks(tmp_path)} <= {"warn", "n/a", "pass"}
