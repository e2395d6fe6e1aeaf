"""`idlewrap check`, and the shipped sample files (policy and sshd drop-in)."""

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from idlewrap import unlock
from idlewrap.commands import check
from tests import infra

SAMPLE_POLICY = infra.REPO / "etc" / "idlewrap" / "idlewrap.toml"
SAMPLE_SSHD = infra.REPO / "etc" / "ssh" / "sshd_config.d" / "50-idlewrap.conf"

pytestmark = pytest.mark.root


Run = Callable[[Path], tuple[int, str, str]]


@pytest.fixture
def run_check(capsys: pytest.CaptureFixture[str]) -> Run:
    def run(path: Path) -> tuple[int, str, str]:
        status = check.main(["--config", str(path)])
        out, err = capsys.readouterr()
        return status, out, err
    return run


GOOD = """\
idle_timeout = "15m"
warn_before = "60s"

[[match]]
name = "admins"
groups = ["root"]
idle_timeout = "10m"

[[match]]
users = "root"
addresses = ["10.0.0.0/8", "2001:db8::/32"]
sessions = ["interactive", "command"]
message = "bye {user}, idle for {idle}"
"""

BROKEN = [
    ('idle_timeout = "15m"\nwarn_befor = "1m"\n',
     "2: unknown key 'warn_befor' (did you mean 'warn_before'?)"),
    ('[[match]]\nusers = "root"\ngroup = "adm"\n',
     "3: unknown key 'group' in match[1] (did you mean 'groups'?)"),
    ('# policy\n\nidle_timeout = "ten minutes"\n',
     "3: idle_timeout: 'ten minutes' is not a duration: use seconds (\"90\") or units d, h, m, "
     "s in that order (\"1h30m\")"),
    ('idle_timeout = "5m"\nwarn_before = "5m"\n',
     "2: warn_before (5m) must be shorter than idle_timeout (5m)"),
    ('[[match]]\nname = "x"\nidle_timeout = "2m"\nwarn_before = "3m"\n',
     "4: warn_before (3m) must be shorter than idle_timeout (2m)"),
    ('[[match]]\naddresses = ["10.0.0.0/8", "10.0.0.0/33"]\n',
     "2: addresses: '10.0.0.0/33' is not an IP address or CIDR network"),
    ('[[match]]\naddresses = "192.168.1.1/24"\n',
     "2: addresses: 192.168.1.1/24 has host bits set (did you mean 192.168.1.0/24?)"),
    ('[[match]]\nusers = "root"\nsessions = "sftp"\n',
     "3: sessions: 'sftp' is not a session kind: use \"interactive\" or \"command\""),
    ('bell = "no"\n', "1: bell: must be a boolean, not a string"),
    ('[[match]]\nusers = ["root", 0]\n',
     "2: users: must be a string or an array of strings, not an array"),
    ('idle_timeout = "15m"\n[[match]\nusers = "root"\n',
     "2: TOML syntax error: expected ']]' at the end of an array declaration (column 8)"),
    ('unlock_attempts = -1\n', "1: unlock_attempts: -1 is not a positive integer"),
    ('idle_timeout = "2h"\nterminate_after = "1h"\n',
     "2: terminate_after (1h) must be longer than idle_timeout (2h)"),
    ('message = "closed {when}"\n',
     "1: message: '{when}' is not allowed: only {idle} and {user} expand, no other braces"),
    ('shell = "zsh"\n', "1: shell: 'zsh' is not an absolute path"),
    ('warn_before = 2.5\n', "1: warn_before: 2.5 is not a whole number of seconds "
     "(write \"90s\" or \"2m\")"),
    ('[log]\nsyslog_socket = ["/dev/log"]\n', "2: syslog_socket: must be a string, not an array"),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_file(trusted_dir: Path, run_check: Run, text: str, expected: str) -> None:
    path = infra.write_root_file(trusted_dir / "idlewrap.toml", text)
    assert run_check(path) == (1, "", f"{path}:{expected}\n")


def test_several_problems_one_line_each(trusted_dir: Path, run_check: Run) -> None:
    path = infra.write_root_file(trusted_dir / "idlewrap.toml",
                                 'bell = 1\n[[match]]\nusers = "iwp-no-such-user"\nexempt = 0\n')
    status, out, err = run_check(path)
    assert (status, out) == (1, "")
    assert err.splitlines() == [
        f"{path}:1: bell: must be a boolean, not an integer",
        f"{path}:3: warning: users: unknown user 'iwp-no-such-user'",
        f"{path}:4: exempt: must be a boolean, not an integer",
    ]


def test_good_file_is_silent(trusted_dir: Path, run_check: Run) -> None:
    path = infra.write_root_file(trusted_dir / "idlewrap.toml", GOOD)
    assert run_check(path) == (0, "", "")


def test_unknown_names_are_warnings(trusted_dir: Path, run_check: Run) -> None:
    path = infra.write_root_file(
        trusted_dir / "idlewrap.toml",
        '[[match]]\nusers = "iwp-no-such-user"\n\n[[match]]\nnot_groups = ["iwp-no-such-group"]\n'
        'bell = false\n')
    assert run_check(path) == (0, "", f"{path}:2: warning: users: unknown user "
                               f"'iwp-no-such-user'\n{path}:5: warning: not_groups: unknown "
                               "group 'iwp-no-such-group'\n")


def test_missing_file(trusted_dir: Path, run_check: Run) -> None:
    assert run_check(trusted_dir / "nope.toml") == (1, "", f"{trusted_dir}/nope.toml: "
                                                    "file not found\n")


@pytest.mark.parametrize(("uid", "mode", "reason"), [
    (0, 0o664, "writable by group"), (0, 0o646, "writable by others"),
    (1001, 0o644, "owned by uid 1001, not root"),
])
def test_untrusted_file(trusted_dir: Path, run_check: Run, uid: int, mode: int,
                        reason: str) -> None:
    path = infra.write_root_file(trusted_dir / "idlewrap.toml", GOOD, mode=mode)
    os.chown(path, uid, 0)
    assert run_check(path) == (1, "", f"{path}: not trusted: {path} is {reason}\n")


def test_untrusted_directory(trusted_dir: Path, run_check: Run) -> None:
    os.chmod(trusted_dir, 0o775)
    path = infra.write_root_file(trusted_dir / "idlewrap.toml", GOOD)
    assert run_check(path) == (1, "", f"{path}: not trusted: {trusted_dir} is writable by "
                               "group\n")


def test_shipped_sample_passes(trusted_dir: Path, run_check: Run) -> None:
    path = infra.write_root_file(trusted_dir / "idlewrap.toml", SAMPLE_POLICY.read_text())
    status, out, err = run_check(path)
    assert (status, out) == (0, "")
    # Only groups this system lacks may be mentioned (wheel on Debian, sudo elsewhere).
    for line in err.splitlines():
        assert re.fullmatch(rf"{path}:\d+: warning: groups: unknown group '\w+'", line), line


def _sshd_t(trusted_dir: Path, dropin: Path) -> subprocess.CompletedProcess[str]:
    key = trusted_dir / "host_ed25519"
    if not key.exists():
        infra.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    config = trusted_dir / "sshd_config"
    config.write_text(f"HostKey {key}\nInclude {dropin}\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    return infra.run(infra.SSHD, "-t", "-f", str(config), check=False)


def test_shipped_sshd_dropin_passes_sshd_t(trusted_dir: Path) -> None:
    result = _sshd_t(trusted_dir, SAMPLE_SSHD)
    assert result.returncode == 0, result.stderr
    shown = infra.run(infra.SSHD, "-T", "-f", str(trusted_dir / "sshd_config")).stdout
    assert "forcecommand /usr/bin/python3 -I -m idlewrap\n" in shown
    assert "permituserenvironment no\n" in shown
    assert re.search(r"^channeltimeout .*direct-tcpip=15m", shown, re.M)


def test_shipped_sshd_match_examples_pass_sshd_t(trusted_dir: Path) -> None:
    """The commented Match blocks still pass once an admin uncomments them."""
    text = SAMPLE_SSHD.read_text()
    uncommented = re.sub(r"^# (Match .*|    ForceCommand .*)$", r"\1", text, flags=re.M)
    assert uncommented.count("\nMatch ") == 3
    dropin = trusted_dir / "50-idlewrap.conf"
    dropin.write_text(uncommented)
    result = _sshd_t(trusted_dir, dropin)
    assert result.returncode == 0, result.stderr


def test_shipped_sample_with_the_lock_uncommented_passes(trusted_dir: Path, run_check: Run,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The commented lock lines are valid once an admin turns them on."""
    text = re.sub(r"^# ((action|terminate_after|unlock_attempts) = .*)$", r"\1",
                  SAMPLE_POLICY.read_text(), flags=re.M)
    assert text.count('\naction = "lock"\n') == 1
    monkeypatch.setattr(unlock, "PAM_SERVICE_FILE", "/etc/passwd")  # a file that exists
    path = infra.write_root_file(trusted_dir / "idlewrap.toml", text)
    status, out, err = run_check(path)
    assert (status, out) == (0, "")
    # at the top level the lock applies to command sessions too, which have no terminal
    line = text.splitlines().index('action = "lock"') + 1
    assert [line for line in err.splitlines() if "action" in line] == [
        f'{path}:{line}: warning: action "lock": '
        "command sessions without a terminal (ssh host CMD) cannot be locked and end instead "
        '(limit it to sessions = "interactive", or give sessions = "command" a rule of its own)']
