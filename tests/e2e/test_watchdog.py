"""The watchdog as deployed: a real sshd with the PAM hook, real users, the daemon as root.

Policy: idle_timeout 3 s, warn_before 1 s, wrapper_grace 2 s (tests/e2e/watchdog_site.py).
The escapes it closes are in test_escapes.py; here, what it must leave alone and how.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests import infra
from tests.e2e.conftest import E2E
from tests.e2e.watchdog_site import (
    ESCAPE_RC,
    GRACE,
    IDLE,
    Site,
    assert_closed_in_window,
    assert_nothing_left,
    send_last_key,
    show,
    wait_for_process,
)

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def site(e2e: E2E) -> Iterator[Site]:
    parts = Site(e2e, "wd", exempt=("iww_exempt",))
    yield parts
    parts.close()


def names(site: Site, user: str) -> list[str]:
    return [e.name for e in site.log.events(user)]


def test_a_session_registers_and_lives_in_its_connection_cgroup(site: Site) -> None:
    user = site.user("iww_plain").name
    child = site.login(user)
    child.send("cat /proc/self/cgroup | grep ^0::; echo shell-$((1+1))\r")
    child.expect(r"0::(\S+)\r\n")
    cgroup = child.match.group(1).decode()
    child.expect("shell-2")
    assert cgroup.startswith(f"/{site.cgroup_name}/c"), cgroup
    group = site.cgroup_base() / cgroup.rsplit("/", 1)[1]
    assert group.is_dir()
    end = time.monotonic() + GRACE + 0.5  # past the grace: a registered wrapper stays
    while time.monotonic() < end:
        child.send("x")  # a key now and then: no warning
        time.sleep(0.5)
    child.send("\x15exit\r")
    child.expect(pexpect.EOF)
    infra.wait_for(lambda: not group.exists(), 5)  # removed once the connection is over
    events = site.log.wait_closed(user)
    assert names(site, user) == ["pam_open_session", "session_start", "session_end",
                                 "pam_close_session"], show(events)


def test_the_outer_terminal_is_taken_from_the_user(site: Site) -> None:
    user = site.user("iww_tty").name
    child = site.login(user)
    child.send('stat -c %U:%a "$SSH_TTY"; echo hi > "$SSH_TTY" || echo refused-$((2+2))\r')
    child.expect("root:600")
    child.expect("refused-4")
    child.send("exit\r")
    child.expect(pexpect.EOF)


def test_a_command_session_longer_than_the_grace_runs_to_its_end(site: Site) -> None:
    user = site.user("iww_cmd").name
    result = site.server.run(user, f"sleep {GRACE + 1.5:g}; echo done-$((3+4))")
    assert (result.returncode, result.stdout) == (0, b"done-7\n"), result.stderr
    assert "watchdog_kill" not in names(site, user)


def test_a_forwarding_only_connection_is_left_alone(site: Site, tmp_path: Path) -> None:
    user = site.user("iww_fwd").name
    argv = site.server.ssh_argv(user, "-N", "-o", "ExitOnForwardFailure=yes",
                                "-L", f"{infra.free_port()}:127.0.0.1:9")
    client = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(GRACE + 1.5)
        assert client.poll() is None, client.stderr.read() if client.stderr else ""
    finally:
        client.kill()
        client.wait()
    assert "watchdog_kill" not in names(site, user)


def test_sftp_with_internal_sftp_is_left_alone(site: Site, tmp_path: Path) -> None:
    user = site.user("iww_sh_sftp", launcher=True).name
    batch = tmp_path / "batch"
    batch.write_text(f"!sleep {GRACE + 1:g}\npwd\n")
    result = infra.run("sftp", *site.server.client_options(), "-b", str(batch),
                       f"{user}@127.0.0.1", check=False)
    assert result.returncode == 0, result.stderr
    assert "watchdog_kill" not in names(site, user)


def test_an_exempt_account_without_a_wrapper_is_left_alone(site: Site) -> None:
    user = site.user("iww_exempt")
    user.write(".bashrc", ESCAPE_RC)
    child = site.login(user.name)
    send_last_key(child, "echo escaped=$IW_ESCAPED", "escaped=1")
    time.sleep(GRACE + 1.5)  # the grace passing is the point
    assert child.isalive()
    child.send("exit\r")
    child.expect(pexpect.EOF)
    assert "watchdog_kill" not in names(site, user.name)


def test_a_later_escaped_session_on_a_multiplexed_connection_is_found(
        site: Site, tmp_path: Path) -> None:
    """Found when the first session's wrapper reports or ends: no signal marks a new session."""
    user = site.user("iww_mux")
    user.write(".bashrc", 'if [ -e ~/escape ] && [ -z "$IW_ESCAPED" ]; then '
               "export IW_ESCAPED=1; exec bash -i; fi\nPS1='iw-prompt$ '\n")
    control = f"ControlPath={tmp_path}/ctl"
    first = site.login(user.name, "-o", "ControlMaster=yes", "-o", control)
    send_last_key(first, "touch ~/escape; echo wrapped-$((1+1))", "wrapped-2")
    second = site.login(user.name, "-o", control)
    last = send_last_key(second, "echo escaped=$IW_ESCAPED", "escaped=1")
    assert_closed_in_window(second, last)
    first.expect(pexpect.EOF, timeout=5)
    assert_nothing_left(user.name)
    kill = site.wait_event(user.name, "watchdog_kill")
    assert kill["reason"] == "no_wrapper"


def test_without_a_watchdog_logins_work_and_say_so(site: Site) -> None:
    user = site.user("iww_nowd").name
    site.stop_watchdog()
    try:
        child = site.login(user)
        last = send_last_key(child, "echo alone-$((5+5))", "alone-10")
        assert_closed_in_window(child, last)
    finally:
        site.start_watchdog()
    [error] = site.events(user, "config_error")
    assert (error["reason"], error["socket"]) == ("no_watchdog", str(site.socket))
    assert error.pri == 84


def test_required_refuses_logins_while_no_watchdog_runs(e2e: E2E, site: Site) -> None:
    user = site.user("iww_req").name
    missing = infra.private_dir("wd-req") / "no-watchdog.sock"
    policy = e2e.policy(f'[watchdog]\nrequired = true\nsocket = "{missing}"\n', name="wd-req")
    hook = (f"session required pam_exec.so quiet {e2e.python} -I -m idlewrap.pam_hook "
            f"--config {policy}")
    server = e2e.server(f"ForceCommand {e2e.force_command(policy)}\n", hook)
    refused = server.run(user, "echo in")
    assert refused.returncode != 0 and not refused.stdout.endswith(b"in\n"), refused
    assert "pam_open_session()" in server.log()
    # the same line with the site's running watchdog lets the login in
    good = e2e.policy(f'[watchdog]\nrequired = true\nsocket = "{site.socket}"\n'
                      f'[log]\nsyslog_socket = "{site.log.path}"\n', name="wd-req-ok")
    hook = hook.replace(str(policy), str(good))
    server = e2e.server(f"ForceCommand {e2e.force_command(good)}\n", hook)
    allowed = server.run(user, "echo in")
    assert (allowed.returncode, allowed.stdout) == (0, b"in\n"), allowed


def test_the_watchdog_refuses_a_wrapper_sshd_did_not_start(site: Site) -> None:
    """A user's own `python -I -m idlewrap` in the background does not count as the session's."""
    user = site.user("iww_fake")
    user.write(".bashrc", ESCAPE_RC + f"{site.e2e.python} -I -m idlewrap --config "
               f"{site.policy} </dev/null >/dev/null 2>&1 &\n")
    started = time.monotonic()
    child = site.login(user.name)
    child.expect(pexpect.EOF, timeout=GRACE + 5)
    assert time.monotonic() - started <= GRACE + 1.5
    refused = site.wait_event(user.name, "wrapper_refused")
    assert refused["reason"] == "not started by the connection's sshd", refused.fields
    assert_nothing_left(user.name)
    kill = site.wait_event(user.name, "watchdog_kill")
    assert kill["reason"] == "no_wrapper"


def test_a_stopped_wrapper_is_ended_its_grace_after_the_deadline(site: Site) -> None:
    """Its dead man's switch would fire 5 s after the deadline; the watchdog's grace is 2 s."""
    user = site.user("iww_stop").name
    child = site.login(user)
    started = time.monotonic()
    child.send("setsid sleep 1901 & kill -STOP $PPID\r")
    child.expect(pexpect.EOF, timeout=IDLE + GRACE + 5)
    assert time.monotonic() - started <= IDLE + GRACE + 1.0
    assert_nothing_left(user)
    kill = site.wait_event(user, "watchdog_kill")
    assert kill["reason"] == "deadline_missed"


def test_without_cgroups_the_audit_session_id_finds_the_jobs(e2e: E2E) -> None:
    """A host without cgroup v2: pam_loginuid's session id marks the connection."""
    v1 = Site(e2e, "wd-v1", cgroups=False)
    try:
        user = v1.user("iww_v1").name
        child = v1.login(user)
        child.send("setsid sh -c 'trap \"\" HUP TERM; sleep 1701' & echo started\r")
        child.expect("started\r\n")
        wait_for_process(user, "sleep 1701")
        child.send("kill -9 $PPID\r")
        child.expect(pexpect.EOF, timeout=5)
        assert_nothing_left(user)
        kill = v1.wait_event(user, "watchdog_kill")
        assert kill["reason"] == "wrapper_died" and "/sleep" in kill["processes"]
        assert "audit session id" in v1.watchdog_log()
    finally:
        v1.close()


HOLD_SOCKETS = """
import socket, sys
held, refused = [], 0
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    s.settimeout(0.5)
    try:
        closed = s.recv(1) == b""  # the daemon closes a refused one at once
    except TimeoutError:
        closed = False
    if closed:
        refused += 1
        s.close()
    else:
        held.append(s)
print(refused, flush=True)
sys.stdin.read()  # hold the rest until the test is done
"""


def test_many_sockets_are_refused_past_the_limit_but_the_users_sessions_still_register(
        site: Site) -> None:
    """A user cannot use up the daemon's descriptors, and cannot be kept from registering.

    64 spare connections, then two for each SSH connection of the user: the extra ones are
    closed and logged once; a session opened while the user holds all 64 still registers
    (it is not ended as no_wrapper), because its connection raised the user's limit.
    """
    from idlewrap.watchdog.daemon import SPARE_CLIENTS_PER_USER

    user = site.user("iww_many")
    holder = subprocess.Popen(
        ["runuser", "-u", user.name, "--", site.e2e.python, "-I", "-c", HOLD_SOCKETS,
         str(site.socket), str(SPARE_CLIENTS_PER_USER + 3)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "3"
        refused = site.wait_event(user.name, "client_refused")
        assert refused["clients"] == str(SPARE_CLIENTS_PER_USER), refused.fields
        assert len(site.events(user.name, "client_refused")) == 1
        child = site.login(user.name)
        # An unregistered wrapper is ended GRACE after the login, before the idle timeout:
        # this one lives to its own timeout.
        site.wait_event(user.name, "timeout", timeout=IDLE + 5)
        child.expect(pexpect.EOF, timeout=5)
        assert "watchdog_kill" not in names(site, user.name), show(site.log.events(user.name))
    finally:
        holder.communicate(timeout=10)
