"""`idlewrap audit` against the real sshd binary, real users, a real launcher and PAM files.

Each test writes an sshd_config into a private directory and lets `sshd -T` apply it per
account, as the daemon would; one test also runs a real sshd to show that what the
audit calls escapable really is.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest

from idlewrap.audit.findings import CATALOG
from tests import infra
from tests.e2e.conftest import E2E

pytestmark = pytest.mark.root

POLICY = """\
idle_timeout = "15m"
warn_before = "60s"

[[match]]
name = "admins"
groups = ["iwc_admins", "sudo", "adm"]
idle_timeout = "10m"
"""

# A host with nothing to fail: ClientAlive as the STIG asks, nothing forwarded, idle
# command sessions closed by sshd, no user rc or environment files.
GOOD_GLOBALS = """\
PermitUserRC no
PermitUserEnvironment no
AcceptEnv LANG LC_*
ClientAliveInterval 600
ClientAliveCountMax 1
DisableForwarding yes
ChannelTimeout session=15m
"""


@dataclass
class Fixture:
    """The parts every audit here uses."""

    e2e: E2E
    dir: Path
    host_key: Path
    policy: Path
    launcher: Path
    pam_good: Path
    pam_stock: Path
    etc_empty: Path
    watchdog: Path

    @property
    def force(self) -> str:
        return self.e2e.force_command(self.policy)

    def sshd_config(self, body: str) -> Path:
        """A config sshd -T accepts: our host key, PAM on, then ``body``."""
        path = infra.write_root_file(
            self.dir / f"sshd_config.{time.monotonic_ns()}",
            f"HostKey {self.host_key}\nUsePAM yes\n{body}", 0o600)
        test = infra.run(infra.SSHD, "-t", "-f", str(path), check=False)
        assert test.returncode == 0, test.stderr
        return path

    def audit(self, config: Path, *args: str, pam: Path | None = None,
              etc: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run `python -I -m idlewrap audit` as root; never raises on its exit status."""
        return infra.run(
            self.e2e.python, "-I", "-m", "idlewrap", "audit", "--sshd-config", str(config),
            "--config", str(self.policy), "--pam-file", str(pam or self.pam_good),
            "--etc", str(etc or self.etc_empty), "--watchdog-socket", str(self.watchdog),
            *args, check=False)

    def audit_json(self, config: Path, *args: str, **kw: Path) -> tuple[int, dict[str, object]]:
        result = self.audit(config, "--json", *args, **kw)
        assert result.stderr == "", result.stderr
        return result.returncode, json.loads(result.stdout)


def hook_line(python: str) -> str:
    return f"session optional pam_exec.so quiet {python} -I -m idlewrap.pam_hook"


@pytest.fixture(scope="module")
def fx(e2e: E2E) -> Fixture:
    directory = infra.private_dir("audit")
    key = directory / "host_ed25519"
    infra.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    policy = e2e.policy(POLICY, "audit-policy")
    launcher = directory / "idlewrap-shell"
    infra.run(e2e.python, "-I", "-m", "idlewrap", "install-shell", str(launcher),
              "--config", str(policy))
    users = e2e.users
    users.user("iwc_admin", groups=("iwc_admins",), shell="/bin/sh")
    users.user("iwc_bashadm", groups=("iwc_admins",), shell="/bin/bash")
    users.user("iwc_plain", shell="/bin/sh")
    users.user("iwc_off", shell="/bin/sh")
    users.user("iwc_launch", shell=str(launcher))
    etc_empty = directory / "etc"
    etc_empty.mkdir()
    return Fixture(
        e2e=e2e, dir=directory, host_key=key, policy=policy, launcher=launcher,
        pam_good=infra.write_root_file(directory / "pam-good",
                                       infra.pam_stack(hook_line(e2e.python))),
        pam_stock=infra.write_root_file(directory / "pam-stock", infra.pam_stack(
            hook_line(e2e.python), stock_pam_env=True)),
        etc_empty=etc_empty, watchdog=directory / "no-watchdog.sock")


def accounts(report: dict[str, object]) -> dict[str, dict[str, object]]:
    listed = report["accounts"]
    assert isinstance(listed, list)
    return {a["user"]: a for a in listed}


def check_of(entry: dict[str, object], check_id: str) -> dict[str, object]:
    checks = entry["checks"]
    assert isinstance(checks, list)
    return next(c for c in checks if c["id"] == check_id)


def test_match_group_forcecommand_covers_its_members_only(fx: Fixture) -> None:
    config = fx.sshd_config(f"{GOOD_GLOBALS}Match Group iwc_admins\n    ForceCommand {fx.force}\n")
    status, report = fx.audit_json(config, "--user", "iwc_admin", "--user", "iwc_plain",
                                   "--user", "iwc_bashadm")
    found = accounts(report)
    assert found["iwc_admin"]["coverage"] == "covered", found["iwc_admin"]
    assert found["iwc_admin"]["idle_timeout"] == 600
    assert found["iwc_plain"]["coverage"] == "uncovered"
    assert found["iwc_plain"]["idle_timeout"] is None
    # Same Match block, but bash reads ~/.bashrc before the ForceCommand.
    assert found["iwc_bashadm"]["coverage"] == "escapable"
    assert "/bin/bash reads ~/.bashrc" in str(found["iwc_bashadm"]["why"])
    assert status == 1


def test_match_user_forcecommand_none_uncovers_that_user(fx: Fixture) -> None:
    config = fx.sshd_config(f"{GOOD_GLOBALS}ForceCommand {fx.force}\n"
                            "Match User iwc_off\n    ForceCommand none\n")
    status, report = fx.audit_json(config, "--user", "iwc_off", "--user", "iwc_plain")
    found = accounts(report)
    assert found["iwc_off"]["coverage"] == "uncovered"
    assert check_of(found["iwc_off"], "sshd.force_command")["status"] == "fail"
    assert found["iwc_plain"]["coverage"] == "covered"
    assert check_of(found["iwc_plain"], "sshd.force_command")["status"] == "pass"
    assert status == 1


def test_match_blocks_see_the_connection_given(fx: Fixture) -> None:
    config = fx.sshd_config(f"{GOOD_GLOBALS}Match LocalPort 2222 Address 10.0.0.0/8\n"
                            f"    ForceCommand {fx.force}\n")
    _, report = fx.audit_json(config, "--user", "iwc_plain")
    assert accounts(report)["iwc_plain"]["coverage"] == "uncovered"
    _, report = fx.audit_json(config, "--user", "iwc_plain", "--lport", "2222",
                              "--addr", "10.1.2.3")
    assert accounts(report)["iwc_plain"]["coverage"] == "covered"


def test_a_good_host_passes_with_exit_0(fx: Fixture) -> None:
    config = fx.sshd_config(f"{GOOD_GLOBALS}ForceCommand {fx.force}\n"
                            "Match User iwc_launch\n    ForceCommand none\n")
    result = fx.audit(config, "--user", "iwc_admin", "--user", "iwc_plain",
                      "--user", "iwc_launch")
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith("  fail")], result.stdout
    assert lines[-1].startswith("3 accounts: 3 covered, 0 escapable, 0 uncovered, 0 exempt;")
    # No watchdog runs here: that is a warning, not a failure.
    assert any(line.startswith("  warn  watchdog.running: ") for line in lines)


@pytest.mark.parametrize(("change", "stock_pam", "check_id", "words", "way_out"), [
    ("ClientAliveCountMax 0", False, "sshd.client_alive",
     "since OpenSSH 8.2 a count of 0 turns the check off", None),
    ("PermitUserEnvironment yes", False, "sshd.permit_user_environment",
     "~/.ssh/environment can set LD_PRELOAD", "~/.ssh/environment can set LD_PRELOAD"),
    ("", True, "pam.user_readenv", "~/.pam_environment can set LD_PRELOAD",
     "~/.pam_environment can set LD_PRELOAD"),
])
def test_bad_settings_fail_with_the_reason(fx: Fixture, change: str, stock_pam: bool,
                                          check_id: str, words: str,
                                          way_out: str | None) -> None:
    kept = [line for line in GOOD_GLOBALS.splitlines()
            if not change or line.split()[0] != change.split()[0]]
    config = fx.sshd_config("\n".join([*kept, change, f"ForceCommand {fx.force}", ""]))
    status, report = fx.audit_json(config, "--user", "iwc_admin",
                                   pam=fx.pam_stock if stock_pam else fx.pam_good)
    admin = accounts(report)["iwc_admin"]
    host_checks = report["checks"]
    assert isinstance(host_checks, list)
    found = next(c for c in [*admin["checks"], *host_checks]  # type: ignore[misc]
                 if c["id"] == check_id)
    assert found["status"] == "fail"
    assert words in found["detail"], found
    assert found["fix"] == CATALOG[check_id].fix
    assert status == 1
    if way_out is None:
        assert admin["coverage"] == "covered"  # ClientAlive never held an idle session
    else:
        assert admin["coverage"] == "escapable"
        assert way_out in str(admin["why"])


def test_launcher_with_user_rc_is_covered_as_it_really_is(fx: Fixture) -> None:
    """The audit says the launcher holds ~/.ssh/rc: a real sshd shows it does."""
    short = fx.e2e.policy('idle_timeout = "2s"\nwarn_before = "1s"\n', "audit-short")
    launcher = fx.dir / "idlewrap-shell-2s"
    infra.run(fx.e2e.python, "-I", "-m", "idlewrap", "install-shell", str(launcher),
              "--config", str(short))
    user = fx.e2e.users.user("iwc_rc", shell=str(launcher))
    # sshd runs this as `<login shell> -c '/bin/sh ~/.ssh/rc'` before the session; the
    # launcher runs it with no controlling terminal, so it cannot take the session's.
    user.write(".ssh/rc", "PS1='rc-shell$ ' exec bash --norc -i </dev/tty >/dev/tty 2>&1\n")
    server = fx.e2e.server("PermitUserRC yes\n")
    child = server.interactive("iwc_rc")
    try:
        child.expect_exact("/dev/tty: No such device or address")
        child.expect_exact("iw-prompt$ ")  # the wrapped session, under the 2s limit
        child.expect(pexpect.EOF, timeout=5)
        assert "closed after 2s without input" in child.before.decode(errors="replace")
    finally:
        child.close(force=True)

    user_rc = fx.sshd_config(GOOD_GLOBALS.replace("PermitUserRC no", "PermitUserRC yes"))
    status, report = fx.audit_json(user_rc, "--user", "iwc_rc")
    entry = accounts(report)["iwc_rc"]
    assert entry["coverage"] == "covered"
    assert check_of(entry, "sshd.permit_user_rc") == {
        **check_of(entry, "sshd.permit_user_rc"), "status": "pass",
        "detail": "PermitUserRC yes: the launcher runs ~/.ssh/rc without a terminal, for a "
                  "few seconds at most"}
    assert status == 0
    status, report = fx.audit_json(fx.sshd_config(GOOD_GLOBALS), "--user", "iwc_rc")
    assert accounts(report)["iwc_rc"]["coverage"] == "covered"
    assert check_of(accounts(report)["iwc_rc"], "policy.idle_timeout")["detail"] == (
        f"idle_timeout 2s (global): within the STIG's 15m for accounts outside sudo, wheel "
        f"and adm and CIS's 15m (policy {short})")


def mixed_fixture(fx: Fixture) -> tuple[Path, Path]:
    """The fixture whose output is checked line by line: a bit of everything."""
    config = fx.sshd_config(GOOD_GLOBALS.replace("ClientAliveCountMax 1", "ClientAliveCountMax 0")
                            + f"Match Group iwc_admins\n    ForceCommand {fx.force}\n")
    etc = fx.dir / "etc-classic"
    (etc / "profile.d").mkdir(parents=True, exist_ok=True)
    (etc / "systemd").mkdir(exist_ok=True)
    (etc / "profile.d" / "tmout.sh").write_text("declare -xr TMOUT=900\n")
    (etc / "systemd" / "logind.conf").write_text("[Login]\nStopIdleSessionSec=900\n")
    (etc / "tmux.conf").write_text("set -g lock-after-time 900\n")
    return config, etc


def test_text_report_line_by_line(fx: Fixture) -> None:
    config, etc = mixed_fixture(fx)
    result = fx.audit(config, "--user", "iwc_admin", "--user", "iwc_plain", etc=etc)
    assert result.returncode == 1 and result.stderr == ""
    python = fx.e2e.python
    force = fx.force
    alive_fix = CATALOG["sshd.client_alive"].fix
    alive_refs = ", ".join(CATALOG["sshd.client_alive"].refs)
    force_refs = ", ".join(CATALOG["sshd.force_command"].refs)
    alive = ("ClientAliveInterval 600, ClientAliveCountMax 0: since OpenSSH 8.2 a count of 0 "
             "turns the check off, so it ends nothing, yet checkers written for it (older "
             "STIGs) pass it; it measures a client that stops answering, never an idle user "
             "(the client answers for them)")
    version = infra.run(infra.SSHD, "-V", check=False).stderr.split(",")[0]
    version = version.removeprefix("OpenSSH_").split("p")[0]
    common = [
        "  pass  sshd.permit_user_environment: PermitUserEnvironment no: ~/.ssh/environment "
        "is ignored",
        "  pass  sshd.accept_env: AcceptEnv LANG LC_*: no LD_* variable",
        f"  fail  sshd.client_alive: {alive}",
        f"        fix: {alive_fix}",
        f"        refs: {alive_refs}",
        "  pass  sshd.forwarding: DisableForwarding yes",
        "  pass  sshd.command_sessions: ChannelTimeout session=15m: an idle command session "
        "(ssh host bash, no pty) is closed by sshd",
    ]
    expected = [
        f"idlewrap audit: sshd {config} (OpenSSH {version}), PAM {fx.pam_good}, policy "
        f"{fx.policy}, connections from 127.0.0.1 to 127.0.0.1 port 22",
        "",
        "account iwc_admin: covered (idle limit 10m): ForceCommand runs idlewrap and /bin/sh "
        "reads no user file first",
        f"  pass  sshd.force_command: {force}: -I, only root can change the interpreter, and "
        "/bin/sh reads no user file first",
        "  n/a   shell.launcher: login shell /bin/sh is not the launcher",
        "  n/a   sshd.permit_user_rc: PermitUserRC no: sshd skips ~/.ssh/rc when a "
        "ForceCommand is set",
        *common,
        "  pass  policy.idle_timeout: idle_timeout 10m (admins): within the STIG's 15m for "
        "accounts outside sudo, wheel and adm and CIS's 15m",
        "",
        "account iwc_plain: uncovered: no ForceCommand, and the login shell /bin/sh is not the "
        "launcher: sessions run without idlewrap",
        "  fail  sshd.force_command: no ForceCommand, and the login shell /bin/sh is not the "
        "launcher: sessions run without idlewrap",
        f"        fix: {CATALOG['sshd.force_command'].fix}",
        f"        refs: {force_refs}",
        "  n/a   shell.launcher: login shell /bin/sh is not the launcher",
        "  n/a   sshd.permit_user_rc: PermitUserRC no: no wrapper runs for this account",
        *common,
        "  n/a   policy.idle_timeout: no wrapper runs for this account, so no policy applies",
        "",
        "host",
        f"  pass  policy.check: {fx.policy}: idlewrap check finds nothing wrong",
        "  pass  policy.limits: rule admins: 10m; everyone else: 15m (STIG: 10m for sudo, "
        "wheel and adm, 15m for others; CIS: 15m)",
        f"  pass  pam.user_readenv: no pam_env line in {fx.pam_good} reads ~/.pam_environment",
        f"  pass  pam.hook: {fx.pam_good}:{hook_line_number(fx.pam_good)} runs {python} -I -m "
        "idlewrap.pam_hook",
        "  n/a   pam.lock_service: no rule locks (action = \"lock\")",
        f"  warn  watchdog.running: {fx.watchdog}: No such file or directory: a wrapper killed "
        "with SIGKILL leaves jobs that ignore SIGHUP running, with no terminal",
        f"        fix: {CATALOG['watchdog.running'].fix}",
        "        refs: SRG-OS-000279-GPOS-00109, AC-12",
        f"  warn  classic.tmout: TMOUT=900 readonly ({etc}/profile.d/tmout.sh:1): a checker "
        "passes it; as it behaves: it ends only a bash, zsh or ksh waiting at its prompt, so "
        "vim, less or sleep keep the session open, and `env - bash --norc --noprofile` starts "
        "a shell without it",
        f"        fix: {CATALOG['classic.tmout'].fix}",
        f"        refs: {', '.join(CATALOG['classic.tmout'].refs)}",
        f"  warn  classic.stop_idle_session: StopIdleSessionSec=900 ({etc}/systemd/logind.conf):"
        " a checker passes it; as it behaves: logind (systemd 252+) judges idleness by the "
        "tty's access time, which the user owns (`touch $(tty)` keeps it fresh), and a session "
        "without a tty (ssh -T) never counts as idle",
        f"        fix: {CATALOG['classic.stop_idle_session'].fix}",
        f"        refs: {', '.join(CATALOG['classic.stop_idle_session'].refs)}",
        "  warn  classic.kill_user_processes: KillUserProcesses not set (the build's default; "
        "no on Debian and RHEL): when logind stops an idle session, nohup'd jobs and a tmux "
        "server keep running for the user to reattach",
        f"        fix: {CATALOG['classic.kill_user_processes'].fix}",
        f"        refs: {', '.join(CATALOG['classic.kill_user_processes'].refs)}",
        f"  warn  classic.tmux: lock-after-time 900 ({etc}/tmux.conf): the tmux rules were "
        "retired from the RHEL 8 and 9 STIGs, and as it behaves a tmux lock only covers a "
        "client attached to tmux: `ssh host bash`, `tmux -f /dev/null` or simply not starting "
        "tmux avoids it, and it never ends the session",
        f"        fix: {CATALOG['classic.tmux'].fix}",
        f"        refs: {', '.join(CATALOG['classic.tmux'].refs)}",
        "",
        "2 accounts: 1 covered, 0 escapable, 1 uncovered, 0 exempt; checks: 14 pass, 3 fail, "
        "5 warn, 6 n/a",
    ]
    got = result.stdout.splitlines()
    for number, (want, line) in enumerate(zip(expected, got, strict=False), 1):
        assert line == want, f"line {number}"
    assert len(got) == len(expected)


def hook_line_number(pam_file: Path) -> int:
    lines = pam_file.read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if "idlewrap.pam_hook" in line)


def test_json_report_field_by_field(fx: Fixture) -> None:
    config, etc = mixed_fixture(fx)
    status, report = fx.audit_json(config, "--user", "iwc_admin", "--user", "iwc_plain",
                                   etc=etc)
    assert status == 1
    assert list(report) == ["accounts", "checks"]
    admin, plain = report["accounts"]  # type: ignore[misc]
    assert list(admin) == ["user", "coverage", "why", "idle_timeout", "checks"]
    assert (admin["user"], admin["coverage"], admin["idle_timeout"]) == ("iwc_admin", "covered",
                                                                         600)
    assert admin["why"] == "ForceCommand runs idlewrap and /bin/sh reads no user file first"
    assert (plain["user"], plain["coverage"], plain["idle_timeout"]) == ("iwc_plain",
                                                                         "uncovered", None)
    per_account = ["sshd.force_command", "shell.launcher", "sshd.permit_user_rc",
                   "sshd.permit_user_environment", "sshd.accept_env", "sshd.client_alive",
                   "sshd.forwarding", "sshd.command_sessions", "policy.idle_timeout"]
    for entry in (admin, plain):
        assert [c["id"] for c in entry["checks"]] == per_account
        for found in entry["checks"]:
            assert list(found) == ["id", "status", "detail", "fix", "refs"]
            assert found["refs"] == list(CATALOG[found["id"]].refs)
            assert (found["fix"] is None) == (found["status"] in ("pass", "n/a"))
    alive = check_of(admin, "sshd.client_alive")
    assert alive["status"] == "fail"
    assert alive["detail"].startswith("ClientAliveInterval 600, ClientAliveCountMax 0: since "
                                      "OpenSSH 8.2")
    assert alive["fix"] == CATALOG["sshd.client_alive"].fix
    assert "RHEL-08-010200" in alive["refs"] and "RHEL-09-255100" in alive["refs"]
    assert "UBTU-22-255035" in alive["refs"]
    assert [c["status"] for c in plain["checks"]][:1] == ["fail"]
    host_checks = {c["id"]: c for c in report["checks"]}  # type: ignore[attr-defined]
    assert list(host_checks) == ["policy.check", "policy.limits", "pam.user_readenv",
                                 "pam.hook", "pam.lock_service", "watchdog.running",
                                 "classic.tmout", "classic.stop_idle_session",
                                 "classic.kill_user_processes", "classic.tmux"]
    assert {k: v["status"] for k, v in host_checks.items()} == {
        "policy.check": "pass", "policy.limits": "pass", "pam.user_readenv": "pass",
        "pam.hook": "pass", "pam.lock_service": "n/a", "watchdog.running": "warn",
        "classic.tmout": "warn", "classic.stop_idle_session": "warn",
        "classic.kill_user_processes": "warn", "classic.tmux": "warn"}
    assert host_checks["watchdog.running"]["fix"] == "run idlewrap watchdog (docs/deploy.md)"
    assert host_checks["classic.tmout"]["refs"][:2] == ["RHEL-09-412035", "UBTU-22-412030"]


@pytest.mark.parametrize("case", ["not-root", "no-sshd", "no-pam-file", "bad-config",
                                  "unknown-user"])
def test_when_it_cannot_run_it_says_so_in_one_line_and_exits_2(fx: Fixture, case: str) -> None:
    config = fx.sshd_config(GOOD_GLOBALS)
    if case == "not-root":
        argv = ["runuser", "-u", "iwc_plain", "--", fx.e2e.python, "-I", "-m", "idlewrap",
                "audit", "--sshd-config", str(config)]
        result = infra.run(*argv, check=False)
        expected = "idlewrap audit: must run as root (sshd -T reads the host keys)"
    elif case == "no-sshd":
        result = fx.audit(config, "--sshd", "/nonexistent/sshd")
        expected = ("idlewrap audit: /nonexistent/sshd: no sshd binary there (install "
                    "openssh-server, or give --sshd PATH)")
    elif case == "no-pam-file":
        result = fx.audit(config, pam=fx.dir / "absent")
        expected = f"idlewrap audit: {fx.dir}/absent: No such file or directory"
    elif case == "bad-config":
        bad = infra.write_root_file(fx.dir / "sshd_config.bad",
                                    f"HostKey {fx.host_key}\nBogusOption yes\n", 0o600)
        result = fx.audit(bad)
        expected = (f"idlewrap audit: {infra.SSHD} -T -f {bad}: {bad}: line 2: Bad "
                    "configuration option: BogusOption")
    else:
        result = fx.audit(config, "--user", "iwc_nosuchuser")
        expected = "idlewrap audit: unknown user 'iwc_nosuchuser'"
    assert (result.returncode, result.stdout, result.stderr) == (2, "", expected + "\n")
