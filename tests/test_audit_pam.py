"""`idlewrap audit`'s reading of PAM service files, and the pam.* checks."""

from pathlib import Path

import pytest

from idlewrap.audit.host import PAM_ENV_WAY_OUT, pam_checks
from idlewrap.audit.pam_stack import (
    PamError,
    exec_command,
    logical_lines,
    option,
    read_stack,
    split_words,
)


def test_split_words_keeps_brackets_together() -> None:
    line = "session [success=ok ignore=ignore default=bad] pam_selinux.so close"
    assert split_words(line) == ["session", "[success=ok ignore=ignore default=bad]",
                                 "pam_selinux.so", "close"]
    assert split_words("auth required pam_x.so [query=a\\]b c]") == [
        "auth", "required", "pam_x.so", "[query=a]b c]"]


def test_logical_lines_cut_comments_and_join_continuations() -> None:
    text = "# comment\nsession required pam_env.so \\\n  user_readenv=1 # [1]\n\n@include x\n"
    assert logical_lines(text) == [(2, "session required pam_env.so    user_readenv=1"),
                                   (5, "@include x")]


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_read_stack_follows_includes_in_the_pam_directory(tmp_path: Path) -> None:
    write(tmp_path, "common-session",
          "session required pam_unix.so\naccount required pam_unix.so\n")
    write(tmp_path, "common-env", "session required pam_env.so user_readenv=1\n")
    service = write(tmp_path, "svc", "@include common-session\n"
                    "-session optional pam_systemd.so\n"
                    "session include common-env\n"
                    "auth substack missing-file\n")
    rules = read_stack(str(service), pam_dir=str(tmp_path))
    assert [(r.type, r.module_name) for r in rules] == [
        ("session", "pam_unix.so"), ("account", "pam_unix.so"), ("session", "pam_systemd.so"),
        ("session", "pam_env.so")]
    assert rules[3].where() == f"{tmp_path}/common-env:1"
    assert option(rules[3], "user_readenv") == "1"
    assert option(rules[0], "user_readenv") is None


def test_an_include_type_filter_drops_other_types(tmp_path: Path) -> None:
    write(tmp_path, "common", "auth required pam_env.so\nsession required pam_env.so\n")
    service = write(tmp_path, "svc", "session include common\n")
    assert [r.type for r in read_stack(str(service), pam_dir=str(tmp_path))] == ["session"]


def test_an_unreadable_service_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PamError, match="No such file"):
        read_stack(str(tmp_path / "absent"))


def test_exec_command_skips_pam_execs_options(tmp_path: Path) -> None:
    service = write(tmp_path, "svc", "session optional pam_exec.so quiet log=/tmp/l "
                    "/usr/bin/python3 -I -m idlewrap.pam_hook --config /x\n")
    rule = read_stack(str(service))[0]
    assert exec_command(rule) == ["/usr/bin/python3", "-I", "-m", "idlewrap.pam_hook",
                                  "--config", "/x"]


HOOK = "session optional pam_exec.so quiet /usr/bin/python3 {flags}-m idlewrap.pam_hook\n"


def checks_for(tmp_path: Path, text: str, *, use_pam: bool = True
               ) -> tuple[dict[str, tuple[str, str]], tuple[str, ...]]:
    service = write(tmp_path, "sshd", text)
    found, way_outs = pam_checks(read_stack(str(service), pam_dir=str(tmp_path)),
                                 use_pam=use_pam, pam_file=str(service), lock_needed=False)
    return {c.id: (c.status, c.detail) for c in found}, way_outs


def test_user_readenv_fails_and_opens_a_way_out(tmp_path: Path) -> None:
    found, way_outs = checks_for(tmp_path, "session required pam_env.so user_readenv=1 "
                                 "envfile=/etc/default/locale\n" + HOOK.format(flags="-I "))
    status, detail = found["pam.user_readenv"]
    assert status == "fail"
    assert f"user_readenv=1 at {tmp_path}/sshd:1" in detail
    assert "runs as root" in detail
    assert way_outs == (PAM_ENV_WAY_OUT,)
    assert found["pam.hook"] == ("pass", f"{tmp_path}/sshd:2 runs /usr/bin/python3 -I -m "
                                 "idlewrap.pam_hook")


def test_user_readenv_0_passes(tmp_path: Path) -> None:
    found, way_outs = checks_for(tmp_path, "session required pam_env.so user_readenv=0\n")
    assert found["pam.user_readenv"][0] == "pass"
    assert found["pam.hook"][0] == "warn"
    assert found["pam.lock_service"][0] == "n/a"
    assert way_outs == ()


def test_a_hook_without_dash_I_fails(tmp_path: Path) -> None:
    found, _ = checks_for(tmp_path, HOOK.format(flags=""))
    assert found["pam.hook"] == ("fail", f"{tmp_path}/sshd:1: it runs as root without -I")


def test_use_pam_no_means_no_stack_runs(tmp_path: Path) -> None:
    found, way_outs = checks_for(tmp_path, "session required pam_env.so user_readenv=1\n",
                                 use_pam=False)
    assert found["pam.user_readenv"][0] == "n/a"
    assert found["pam.hook"] == ("warn", "UsePAM no: the PAM hook never runs")
    assert way_outs == ()
