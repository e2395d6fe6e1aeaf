"""`idlewrap enable` and `idlewrap disable` on a copy of Debian 12's files (``--root DIR``).

Nothing in the host's /etc is touched: each test gets DIR/etc with Debian's stock
sshd_config (its Include pointed at DIR's sshd_config.d, and a host key of its own, so
that ``sshd -t -f`` checks exactly what enable wrote) and Debian's stock /etc/pam.d/sshd.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from idlewrap.commands import disable, enable, install_shell, switch
from tests import infra

DEBIAN = infra.REPO / "tests" / "data" / "debian12"
PYTHON = "/opt/idlewrap/bin/python"
STOCK_PAM = (DEBIAN / "pam.d" / "sshd").read_text()
STOCK_READENV = "session    required     pam_env.so user_readenv=1 envfile=/etc/default/locale\n"
SAFE_PAM = STOCK_PAM.replace(STOCK_READENV, STOCK_READENV.replace("=1", "=0"))
HOOK = (f"{switch.HOOK_MARK}\n"
        f"session    optional     pam_exec.so quiet {PYTHON} -I -m idlewrap.pam_hook\n")

needs_sshd = pytest.mark.skipif(not os.access(infra.SSHD, os.X_OK), reason="needs sshd "
                                "(apt-get install openssh-server)")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """DIR with Debian 12's etc/ssh/sshd_config and etc/pam.d/sshd."""
    ssh = tmp_path / "etc" / "ssh"
    (ssh / "sshd_config.d").mkdir(parents=True)
    (tmp_path / "etc" / "pam.d").mkdir()
    key = ssh / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    stock = (DEBIAN / "ssh" / "sshd_config").read_text()
    assert "\nInclude /etc/ssh/sshd_config.d/*.conf\n" in stock
    (ssh / "sshd_config").write_text(
        f"HostKey {key}\n" + stock.replace("Include /etc/ssh/", f"Include {ssh}/"))
    shutil.copy(DEBIAN / "pam.d" / "sshd", tmp_path / "etc" / "pam.d" / "sshd")
    return tmp_path


def run(command: str, root: Path, *args: str,
        capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    module = enable if command == "enable" else disable
    extra = ["--python", PYTHON, "--sshd", infra.SSHD] if command == "enable" else []
    status = module.main(["--root", str(root), *extra, *args])
    out, err = capsys.readouterr()
    return status, out, err


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_dry_run_prints_each_diff_and_changes_nothing(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = files(root)
    status, out, err = run("enable", root, "--dry-run", capsys=capsys)
    assert (status, err) == (0, "")
    assert files(root) == before
    dropin_diff, pam_diff = out.split(f"--- {switch.PAM_SSHD}\n")
    lines = switch.dropin_text(PYTHON).splitlines()
    assert dropin_diff == (f"--- /dev/null\n+++ {switch.DROPIN}\n@@ -0,0 +1,{len(lines)} @@\n"
                           + "".join(f"+{line}\n" for line in lines))
    assert f"+ForceCommand {PYTHON} -I -m idlewrap\n" in dropin_diff
    assert pam_diff.splitlines() == [
        f"+++ {switch.PAM_SSHD}",
        "@@ -44,8 +44,10 @@",
        " session    required     pam_env.so # [1]",
        " # In Debian 4.0 (etch), locale-related environment variables were moved to",
        " # /etc/default/locale, so read that as well.",
        "-" + STOCK_READENV.rstrip(),
        "+" + STOCK_READENV.rstrip().replace("=1", "=0"),
        " ",
        *("+" + line for line in HOOK.splitlines()),
        " # SELinux needs to intervene at login time to ensure that the process starts",
        " # in the proper default security context.  Only sessions which are intended",
        " # to run in the user's context should be run after this.",
        "idlewrap enable --dry-run: 2 file(s) would change, none was changed"]


def test_dry_run_needs_no_sshd_and_no_root(root: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    status, out, err = run("enable", root, "--dry-run", "--sshd", "/nonexistent/sshd",
                           capsys=capsys)
    assert (status, err) == (0, "")
    assert out.endswith("idlewrap enable --dry-run: 2 file(s) would change, none was changed\n")


def test_enable_needs_root_for_the_hosts_files(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for module, verb in ((enable, "enable"), (disable, "disable")):
        assert module.main([]) == 1
        assert capsys.readouterr() == ("", (
            f"idlewrap {verb}: must run as root (it changes /etc/ssh/sshd_config.d and "
            f"/etc/pam.d/sshd); `idlewrap {verb} --dry-run` shows what it would change\n"))


@needs_sshd
def test_enable_then_again_changes_nothing_more(root: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    pam = root / "etc" / "pam.d" / "sshd"
    pam.chmod(0o640)  # enable keeps a file's mode (and owner)
    status, out, err = run("enable", root, capsys=capsys)
    assert (status, err) == (0, "")
    assert out.startswith(
        f"idlewrap enable: wrote {switch.DROPIN} (ForceCommand {PYTHON} -I -m idlewrap)\n"
        f"idlewrap enable: {switch.PAM_SSHD}: added the PAM hook and set user_readenv=0 for "
        "pam_env\n\nNot done, yours to decide:\n  systemctl reload ssh ")
    dropin = root / switch.DROPIN.lstrip("/")
    assert dropin.read_text() == switch.dropin_text(PYTHON)
    assert (dropin.stat().st_mode & 0o7777, pam.stat().st_mode & 0o7777) == (0o644, 0o640)
    assert pam.read_text() == SAFE_PAM.replace("\n# SELinux needs to intervene",
                                               f"\n{HOOK}# SELinux needs to intervene")
    written = {path: os.stat(root / path).st_ino for path in (switch.DROPIN.lstrip("/"),
                                                               "etc/pam.d/sshd")}
    again = run("enable", root, capsys=capsys)
    assert again == (0, "idlewrap enable: nothing to do, idlewrap is enabled\n", "")
    assert {path: os.stat(root / path).st_ino for path in written} == written
    assert run("enable", root, "--dry-run", capsys=capsys) == (
        0, "idlewrap enable --dry-run: nothing to do\n", "")


@needs_sshd
@pytest.mark.parametrize("pam_text", [STOCK_PAM, SAFE_PAM], ids=["stock", "user_readenv=0"])
def test_disable_takes_back_exactly_what_enable_added(
        root: Path, pam_text: str, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "etc" / "pam.d" / "sshd").write_text(pam_text)
    before = files(root)
    assert run("enable", root, capsys=capsys)[0] == 0
    status, out, err = run("disable", root, capsys=capsys)
    assert (status, err) == (0, "")
    assert out == (f"idlewrap disable: removed {switch.DROPIN}\n"
                   f"idlewrap disable: {switch.PAM_SSHD}: removed the PAM hook\n"
                   "idlewrap disable: `systemctl reload ssh` for new connections to see it\n")
    # byte for byte as before, but for user_readenv=0, which disable leaves in place
    assert files(root) == {**before, "etc/pam.d/sshd": SAFE_PAM.encode()}
    assert run("disable", root, capsys=capsys) == (
        0, "idlewrap disable: nothing to do, enable's changes are not there\n", "")


@needs_sshd
def test_a_drop_in_sshd_refuses_is_put_back(root: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (root / "etc" / "ssh" / "sshd_config.d" / "40-broken.conf").write_text("NoSuchOption yes\n")
    before = files(root)
    status, out, err = run("enable", root, capsys=capsys)
    assert (status, out) == (1, "")
    assert err.startswith("idlewrap enable: sshd -t refused the drop-in, put back as it "
                          f"was: {root}/etc/ssh/sshd_config.d/40-broken.conf: line 1: Bad "
                          "configuration option: NoSuchOption")
    assert err.count("\n") == 1
    assert files(root) == before


def test_without_the_include_nothing_is_written(root: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = root / "etc" / "ssh" / "sshd_config"
    config.write_text(config.read_text().replace("\nInclude ", "\n#Include "))
    before = files(root)
    for args in ((), ("--dry-run",)):
        assert run("enable", root, *args, capsys=capsys) == (1, "", (
            f"idlewrap enable: {config} does not Include {root}{switch.DROPIN} before its "
            f"first Match: add `Include {root}/etc/ssh/sshd_config.d/*.conf` at its top\n"))
    assert files(root) == before


def test_a_drop_in_enable_did_not_write_is_left_alone(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dropin = root / switch.DROPIN.lstrip("/")
    dropin.write_text(f"ForceCommand {PYTHON} -I -m idlewrap\n")
    before = files(root)
    status, out, err = run("enable", root, capsys=capsys)
    assert (status, out) == (1, "")
    assert err == (f"idlewrap enable: {switch.DROPIN} exists and is not idlewrap's (no line "
                   f"{switch.DROPIN_MARK!r}): move it away first\n")
    status, out, err = run("disable", root, capsys=capsys)
    assert (status, out) == (3, "idlewrap disable: nothing to do, enable's changes are not "
                                "there\n")
    assert err.startswith(f"idlewrap disable: still starts idlewrap: {switch.DROPIN}:1: "
                          f"ForceCommand {PYTHON} -I -m idlewrap\n")
    assert files(root) == before


def test_an_unreadable_file_is_one_line(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pam = root / "etc" / "pam.d" / "sshd"
    pam.unlink()
    pam.mkdir()
    assert run("enable", root, "--dry-run", capsys=capsys) == (
        1, "", f"idlewrap enable: {pam}: Is a directory\n")


def test_disable_lists_accounts_with_a_launcher_shell(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    launcher = root / "usr" / "local" / "sbin" / "idlewrap-shell"
    launcher.parent.mkdir(parents=True)
    launcher.write_text(install_shell.render(PYTHON, "/etc/idlewrap/idlewrap.toml"))
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\n"
        "alice:x:1000:1000::/home/alice:/usr/local/sbin/idlewrap-shell\n"
        "bob:x:1001:1001::/home/bob:/bin/bash\n")
    status, out, err = run("disable", root, "--dry-run", capsys=capsys)
    assert (status, out) == (3, "idlewrap disable --dry-run: nothing to do\n")
    assert err == (
        "idlewrap disable: still starts idlewrap: account alice: login shell "
        "/usr/local/sbin/idlewrap-shell is an idlewrap launcher\n"
        "idlewrap disable: give those accounts another shell (usermod -s /bin/bash USER) and "
        "remove those lines before removing idlewrap\n")


def test_an_unmarked_hook_line_counts_as_there_and_stays(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pam = root / "etc" / "pam.d" / "sshd"
    line = "session optional pam_exec.so quiet /usr/bin/python3 -I -m idlewrap.pam_hook\n"
    pam.write_text(SAFE_PAM + line)
    status, out, _ = run("enable", root, "--dry-run", capsys=capsys)
    assert status == 0 and f"--- {switch.PAM_SSHD}" not in out  # nothing to add
    status, out, err = run("disable", root, "--dry-run", capsys=capsys)
    assert (status, out) == (3, "idlewrap disable --dry-run: nothing to do\n")
    number = (SAFE_PAM + line).count("\n")
    assert err.startswith(f"idlewrap disable: still starts idlewrap: {switch.PAM_SSHD}:{number}: "
                          f"{line.strip()}\n")


def test_the_shipped_examples_are_what_enable_writes() -> None:
    """One text each: etc/ and pam/ hold enable's output for /usr/bin/python3."""
    example = infra.REPO / "etc" / "ssh" / "sshd_config.d" / "50-idlewrap.conf"
    assert example.read_text() == switch.dropin_text("/usr/bin/python3")
    snippet = (infra.REPO / "pam" / "sshd-session.snippet").read_text()
    assert snippet.endswith(f"{switch.HOOK_MARK}\n{switch.hook_line('/usr/bin/python3')}\n")


@pytest.mark.parametrize("text", [
    "session required pam_env.so\n",
    "auth required pam_unix.so\n# no session rule at all",
    "session optional pam_exec.so quiet /usr/bin/python3 -I -m idlewrap.pam_hook\n",
])
def test_add_and_remove_hook_are_inverse(text: str) -> None:
    added = switch.add_hook(text, PYTHON)
    assert switch.hook_lines(added)
    assert switch.remove_hook(added) == (text if text.endswith("\n") or added == text
                                         else text + "\n")


def test_a_marked_hook_for_another_interpreter_is_replaced() -> None:
    old = switch.add_hook(STOCK_PAM, "/usr/bin/python3")
    new = switch.add_hook(old, PYTHON)
    assert new == switch.add_hook(STOCK_PAM, PYTHON)
    assert switch.remove_hook(new) == STOCK_PAM


@pytest.mark.parametrize(("config", "included"), [
    ("Include /etc/ssh/sshd_config.d/*.conf\n", True),
    ("include sshd_config.d/*.conf\n", True),  # relative to /etc/ssh, as sshd reads it
    ("Include=/etc/ssh/sshd_config.d/50-idlewrap.conf\n", True),
    ("Include /etc/ssh/other.d/*.conf\n", False),
    ("# Include /etc/ssh/sshd_config.d/*.conf\n", False),
    ("Match User x\nInclude /etc/ssh/sshd_config.d/*.conf\n", False),  # only for x
])
def test_includes(config: str, included: bool) -> None:
    assert switch.includes(config, switch.DROPIN) is included


@pytest.mark.root
def test_install_shell_writes_through_the_same_atomic_replacement(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    launcher = tmp_path / "idlewrap-shell"
    launcher.write_text("an older launcher\n")
    launcher.chmod(0o600)
    assert install_shell.main([str(launcher), "--python", PYTHON]) == 0
    assert capsys.readouterr() == ("", "")
    st = launcher.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o755)
    assert launcher.read_text() == install_shell.render(PYTHON, "/etc/idlewrap/idlewrap.toml")
    assert [p.name for p in tmp_path.iterdir()] == ["idlewrap-shell"]  # no temporary left
    assert install_shell.main([str(tmp_path / "missing" / "shell")]) == 1
    assert capsys.readouterr() == (
        "", f"idlewrap install-shell: {tmp_path}/missing/shell: No such file or directory\n")


def test_a_linked_pam_file_is_not_replaced(root: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """/etc/pam.d/sshd as a symbolic link (config management does that): neither the link
    nor the file it names is changed, and the drop-in written first is taken back."""
    pam = root / "etc" / "pam.d" / "sshd"
    shared = root / "shared-sshd-pam"
    pam.rename(shared)
    pam.symlink_to(shared)
    before = files(root)
    status, out, err = run("enable", root, capsys=capsys)
    assert (status, out) == (1, "")
    assert err == (f"idlewrap enable: {switch.PAM_SSHD}: a symbolic link, not replaced: "
                   "change it by hand (nothing changed)\n")
    assert pam.is_symlink() and files(root) == before
