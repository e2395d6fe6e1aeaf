"""The lock as deployed: private sshd with ForceCommand, the real ssh client in tmux, test
users with passwords, the shipped PAM service as /etc/pam.d/idlewrap.

Policy: idle_timeout 6 s, warn_before 2 s, action "lock"; for one user terminate_after 10 s.
Most tests lock at once with `idlewrap lock` (as a user would, from the shell); the first
waits for the deadline. Events come from a syslog socket of the test's own.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from idlewrap.commands.lock import find_wrapper
from tests import infra
from tests.e2e.conftest import E2E
from tests.e2e.test_events import Event, Receiver
from tests.e2e.test_warning import NOTES, PROMPT, Pane

pytestmark = pytest.mark.root

IDLE = 6.0
TERMINATE_AFTER = 10.0
PASSWORD = infra.Users.PASSWORD
OTHER_PASSWORD = "Another-users-pw2"
ROOT_PASSWORD = "Roots-own-test-pw3"
TITLE = "This session is locked."
SERVICE = Path("/etc/pam.d/idlewrap")


class Site:
    """One sshd, the users, the log receiver."""

    def __init__(self, e2e: E2E) -> None:
        self.log = Receiver(keep_no_watchdog=False)  # no watchdog runs here
        users = e2e.users
        self.ann = users.user("iwl_ann")
        self.tina = users.user("iwl_tina")  # terminate_after
        self.lee = users.user("iwl_lee")  # usermod -L during the session
        self.bob = users.user("iwl_bob")  # another account, with a password of its own
        infra.run("chpasswd", input=f"{self.bob.name}:{OTHER_PASSWORD}\n")
        policy = e2e.policy(
            'idle_timeout = "6s"\nwarn_before = "2s"\naction = "lock"\n'
            'message = "IW-BYE closed after {idle}"\n'
            f'[[match]]\nusers = "{self.tina.name}"\nterminate_after = "10s"\n'
            f'[log]\nsyslog_socket = "{self.log.path}"\n', "lock-policy")
        self.server = e2e.server(f"ForceCommand {e2e.force_command(policy)}\n")
        self.lock_command = f"{e2e.python} -I -m idlewrap lock"

    def events(self, pane: LockPane, done: Callable[[list[str]], bool],
               timeout: float = 10) -> list[Event]:
        """The events of `pane`'s session once `done(names)` holds."""

        def session(events: list[Event]) -> list[Event]:
            # the first session_start since the login began; an earlier session of the
            # same user may still be logging its end
            new = events[pane.first:]
            start = next((e for e in new if e.name == "session_start"), None)
            return [] if start is None else [e for e in new
                                             if e.get("session") == start["session"]]

        found = self.log.wait(pane.user, lambda evs: done([e.name for e in session(evs)]),
                              timeout)
        return session(found)


@pytest.fixture(scope="module")
def site(e2e: E2E) -> Iterator[Site]:
    created = not SERVICE.exists()
    if created:  # the shipped file, installed as docs/lock.md says
        shutil.copy(infra.REPO / "pam" / "idlewrap", SERVICE)
        os.chmod(SERVICE, 0o644)
    parts = Site(e2e)
    try:
        yield parts
    finally:
        parts.log.close()
        if created:
            SERVICE.unlink()


class LockPane(Pane):
    """A pane running `ssh -tt` for one user, with the lock's own waits."""

    def __init__(self, socket: Path, command: list[str], user: str, first: int) -> None:
        super().__init__(socket, command)
        self.user = user
        self.first = first  # the user's events before this login

    def locked(self) -> bool:
        return TITLE in self.text()

    def wait_locked(self, timeout: float = 3.0) -> list[str]:
        self.wait(self.locked, "the lock screen", timeout)
        return self.lines()

    def type_password(self, password: str) -> float:
        self.send("-l", password)
        return self.send("Enter")

    def history(self) -> str:
        return "\n".join(self.lines("-S", "-500"))


@pytest.fixture
def login(site: Site, tmp_path: Path) -> Iterator[Callable[..., LockPane]]:
    panes: list[LockPane] = []

    def start(user: str, term: str | None = None) -> LockPane:
        command = site.server.ssh_argv(user, "-tt")
        if term is not None:
            command = ["env", f"TERM={term}", *command]
        pane = LockPane(tmp_path / f"tmux-{len(panes)}.sock", command, user,
                        len(site.log.events(user)))
        panes.append(pane)
        pane.wait_text(PROMPT.rstrip(), 15)
        return pane

    yield start
    for pane in panes:
        pane.kill()


def print_secret(pane: LockPane) -> float:
    """Put a secret on the screen; returns when its Enter was typed (the last key)."""
    typed = pane.send("echo SECRET-$((6*7))", "Enter")
    pane.wait_text("SECRET-42")
    return typed


def lock_now(site: Site, pane: LockPane, line: str = "{}") -> None:
    """`idlewrap lock` typed at the prompt, as `line` has it ({} is the command)."""
    pane.send("-l", line.format(site.lock_command))
    pane.send("Enter")
    pane.wait_locked()


def test_the_lock_hides_the_screen_and_only_the_right_password_brings_it_back(
    site: Site, login: Callable[..., LockPane],
) -> None:
    user = site.ann.name
    pane = login(user)
    print_secret(pane)
    last_key = pane.send("-l", "echo half-typ")
    pane.wait_text(PROMPT + "echo half-typ")
    before, cursor = pane.lines("-e"), pane.cursor()

    shown = pane.wait_locked(IDLE + 2)
    elapsed = time.monotonic() - last_key
    assert IDLE - 0.2 <= elapsed <= IDLE + 0.8, elapsed
    screen = "\n".join(shown)
    assert "SECRET" not in screen and "half-typ" not in screen
    assert f"{user} on " in screen and f"Password for {user}:" in screen
    lock = site.events(pane, lambda n: "lock" in n)[-1]
    assert lock["reason"] == "idle"

    pane.type_password("not-the-password")
    pane.wait_text("Wrong password: 2 attempts left.")
    assert pane.locked() and "not-the-password" not in pane.text()
    assert site.events(pane, lambda n: "unlock_failed" in n)[-1]["attempt"] == "1"

    pane.type_password(PASSWORD)
    pane.wait(lambda: pane.lines("-e") == before, "the screen as before the lock")
    assert pane.cursor() == cursor
    assert PASSWORD not in pane.history()
    pane.send("-l", "x")
    pane.send("Enter")
    pane.wait_text("\nhalf-typx\n")
    names = [e.name for e in site.events(pane, lambda n: "unlock" in n)]
    assert names == ["session_start", "warning", "lock", "unlock_failed", "unlock"]


def test_vim_comes_back_with_its_file_and_cursor(site: Site,
                                                 login: Callable[..., LockPane]) -> None:
    notes = site.ann.write("notes.txt", NOTES)
    pane = login(site.ann.name)
    pane.send("vim -u NONE -N notes.txt", "Enter")
    pane.wait_text("gamma line")
    pane.send("j", "l", "C-l")  # vim redraws its message line empty after the repaint
    pane.wait(lambda: pane.cursor() == (1, 1) and pane.lines()[-1] == "", "vim's cursor on beta")
    before, cursor = pane.lines("-e"), pane.cursor()

    assert "gamma line" not in "\n".join(pane.wait_locked(IDLE + 2))
    pane.type_password(PASSWORD)
    pane.wait(lambda: pane.lines("-e") == before, "vim's screen as before the lock")
    assert pane.cursor() == cursor
    pane.send(":wq", "Enter")
    pane.wait_text(PROMPT + "vim -u NONE -N notes.txt\n" + PROMPT.rstrip())
    assert notes.read_text() == NOTES


def test_output_printed_while_locked_appears_after_the_unlock_complete_and_in_order(
    site: Site, login: Callable[..., LockPane],
) -> None:
    pane = login(site.ann.name)
    lock_now(site, pane, "(sleep 0.5; for i in $(seq 1 80); do echo n$i; sleep 0.01; done) & {}")
    time.sleep(2.5)  # the job writes while locked
    assert not re.search(r"^n\d+$", pane.text(), re.MULTILINE)
    pane.type_password(PASSWORD)

    def numbers() -> list[int]:
        return [int(m[1]) for m in re.finditer(r"(?:^|\$ )n(\d+)$", pane.history(), re.M)]

    pane.wait(lambda: 80 in numbers(), "the job's last number")
    assert numbers() == list(range(1, 81))
    events = site.events(pane, lambda n: "unlock" in n)
    assert [(e.name, e.get("reason")) for e in events[1:]] == [("lock", "user"), ("unlock", None)]


def test_ctrl_c_z_and_backslash_on_the_lock_screen_never_reach_the_shell(
    site: Site, login: Callable[..., LockPane],
) -> None:
    pane = login(site.ann.name)
    pane.send("-l", "trap 'echo GOT-INT' INT; trap 'echo GOT-QUIT' QUIT")
    pane.send("Enter")
    lock_now(site, pane)
    for key in ("C-c", "C-z", "C-\\", "C-d", "C-c"):
        pane.send(key)
    time.sleep(0.3)  # time for a key that got through to be acted on
    pane.type_password(PASSWORD)
    pane.wait(lambda: not pane.locked(), "the unlock")
    pane.send("echo alive-$((2*3))", "Enter")
    pane.wait_text("alive-6")
    assert not re.search(r"^GOT-", pane.history(), re.MULTILINE)


def test_three_wrong_passwords_end_the_session_and_show_nothing_of_it(
    site: Site, login: Callable[..., LockPane],
) -> None:
    user = site.ann.name
    pane = login(user)
    print_secret(pane)
    lock_now(site, pane)
    for left in ("2 attempts", "1 attempt"):
        pane.type_password("wrong")
        pane.wait_text(f"Wrong password: {left} left.")
    pane.type_password("wrong")
    assert pane.wait_exit(5) == 124
    history = pane.history()
    assert "idlewrap: session closed after 3 wrong passwords." in history
    assert "SECRET" not in history
    events = site.events(pane, lambda n: "timeout" in n)
    assert [e.get("attempt") for e in events if e.name == "unlock_failed"] == ["1", "2", "3"]
    assert (events[-1].name, events[-1]["reason"]) == ("timeout", "unlock_attempts")


def test_terminate_after_ends_a_locked_session_nobody_unlocks(
    site: Site, login: Callable[..., LockPane],
) -> None:
    user = site.tina.name
    pane = login(user)
    last_key = print_secret(pane)
    pane.wait_locked(IDLE + 2)
    assert "It will be closed at " in pane.text()
    assert pane.wait_exit(TERMINATE_AFTER) == 124
    elapsed = time.monotonic() - last_key
    assert TERMINATE_AFTER - 0.2 <= elapsed <= TERMINATE_AFTER + 1.0, elapsed
    history = pane.history()
    assert "IW-BYE closed after 10s" in history and "SECRET" not in history
    events = site.events(pane, lambda n: "timeout" in n)
    assert [e.name for e in events] == ["session_start", "warning", "lock", "timeout"]
    assert events[-1]["reason"] == "locked"


def test_the_client_killed_while_locked_leaves_nothing_behind(
    site: Site, login: Callable[..., LockPane],
) -> None:
    user = site.ann.name
    pane = login(user)
    lock_now(site, pane, "sleep 1001 & setsid sleep 1002 & (trap '' HUP TERM; sleep 1003) & {}")
    pane.type_password("wrong")  # a check is running (pam_unix waits ~2 s after it)
    wrapper = site.events(pane, lambda n: "lock" in n)[0]["pid"]
    checks: list[str] = []

    def check_running() -> bool:
        nonlocal checks
        children = Path(f"/proc/{wrapper}/task/{wrapper}/children").read_text().split()
        # the check is a fork of the wrapper: the same name (setsid's sleep hangs here too)
        checks = [pid for pid in children if name_of(pid) == "idlewrap"]
        return bool(checks)

    infra.wait_for(check_running, 2)
    # Forked from the wrapper, the check runs as the user but is not dumpable either (its
    # /proc files belong to root): no process of the user can ptrace it to read the
    # password or forge its verdict.
    assert [Path(f"/proc/{pid}/mem").stat().st_uid for pid in checks] == [0]
    assert f"Uid:\t{site.ann.uid}\t" in Path(f"/proc/{checks[0]}/status").read_text()
    pane_pid = pane.tmux("display", "-p", "#{pane_pid}").strip()
    ssh = infra.run("pgrep", "-P", pane_pid, "-x", "ssh").stdout.split()
    assert len(ssh) == 1, ssh
    os.kill(int(ssh[0]), signal.SIGKILL)
    infra.wait_for(lambda: not infra.processes_of(user), 3.0, interval=0.05)
    assert site.events(pane, lambda n: "disconnect" in n)[-1].name == "disconnect"


def name_of(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:  # gone meanwhile
        return ""


@pytest.fixture
def root_password() -> Iterator[str]:
    """root gets a known password for the test; its own hash and date are put back."""
    entry = infra.run("getent", "shadow", "root").stdout.strip().split(":")
    infra.run("chpasswd", input=f"root:{ROOT_PASSWORD}\n")
    try:
        yield ROOT_PASSWORD
    finally:
        infra.run("usermod", "-p", entry[1], "root")
        if entry[2]:
            infra.run("chage", "-d", entry[2], "root")


def test_root_s_password_and_another_user_s_never_unlock(
    site: Site, login: Callable[..., LockPane], root_password: str,
) -> None:
    user = site.ann.name
    pane = login(user)
    lock_now(site, pane)
    pane.type_password(root_password)
    pane.wait_text("Wrong password: 2 attempts left.")
    pane.type_password(OTHER_PASSWORD)  # iwl_bob's
    pane.wait_text("Wrong password: 1 attempt left.")
    pane.type_password(PASSWORD)
    pane.wait(lambda: not pane.locked(), "the unlock with the user's own password")
    names = [e.name for e in site.events(pane, lambda n: "unlock" in n)]
    assert names == ["session_start", "lock", "unlock_failed", "unlock_failed", "unlock"]


def test_an_account_locked_during_the_session_cannot_unlock_it(
    site: Site, login: Callable[..., LockPane],
) -> None:
    user = site.lee.name
    pane = login(user)
    infra.run("usermod", "-L", user)
    try:
        lock_now(site, pane)
        pane.type_password(PASSWORD)
        pane.wait_text("Wrong password: 2 attempts left.")
    finally:
        infra.run("usermod", "-U", user)
    pane.type_password(PASSWORD)
    pane.wait(lambda: not pane.locked(), "the unlock once the account is unlocked again")
    names = [e.name for e in site.events(pane, lambda n: "unlock" in n)]
    assert names == ["session_start", "lock", "unlock_failed", "unlock"]


def test_idlewrap_lock_from_a_nested_shell_and_from_inside_tmux(
    site: Site, login: Callable[..., LockPane],
) -> None:
    user = site.ann.name
    pane = login(user)
    pane.send("bash", "Enter")
    lock_now(site, pane, "sh -c '{} && echo asked'")  # bash, bash, sh, then the command
    pane.type_password(PASSWORD)
    pane.wait_text("\nasked\n")

    # tmux inside the session: its server detaches and hangs below the wrapper
    pane.send("-l", "tmux -f /dev/null -S ~/inner.sock new-session")
    pane.send("Enter")
    pane.wait(lambda: pane.lines()[-1].startswith("[0]"), "tmux inside the session")
    lock_now(site, pane)
    pane.type_password(PASSWORD)
    pane.wait(lambda: not pane.locked() and pane.lines()[-1].startswith("[0]"),
              "tmux back after the unlock")
    pane.send("-l", "tmux -S ~/inner.sock kill-server")
    pane.send("Enter")
    pane.wait_text(PROMPT.rstrip())
    locks = [e for e in site.events(pane, lambda n: n.count("unlock") >= 2) if e.name == "lock"]
    assert [e["reason"] for e in locks] == ["user", "user"]


def test_idlewrap_lock_outside_a_session_says_so(site: Site, e2e: E2E) -> None:
    if find_wrapper(os.getpid()) is not None:
        pytest.skip("the tests run inside an idlewrap session: this would lock it")
    for prefix in ([], ["runuser", "-u", site.ann.name, "--"]):
        done = subprocess.run([*prefix, e2e.python, "-I", "-m", "idlewrap", "lock"],
                              capture_output=True, text=True, timeout=10, check=False, cwd="/")
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr == ("idlewrap lock: not inside an idlewrap session (no idlewrap "
                               "wrapper above this command)\n")


def test_a_resize_redraws_the_lock_and_a_dumb_terminal_gets_a_line_prompt(
    site: Site, login: Callable[..., LockPane],
) -> None:
    pane = login(site.ann.name)
    lock_now(site, pane)
    pane.tmux("resize-window", "-x", "60", "-y", "20")

    def centred_in_60x20() -> bool:
        lines = pane.lines()
        title = [line for line in lines if TITLE in line]
        return len(lines) == 20 and len(title) == 1 and \
            abs(title[0].index("T") - (60 - len(TITLE)) // 2) <= 1
    pane.wait(centred_in_60x20, "the lock centred in 60x20")
    pane.type_password(PASSWORD)
    pane.wait(lambda: not pane.locked(), "the unlock")

    dumb = login(site.ann.name, term="dumb")
    lock_now(site, dumb)
    dumb.wait_text(f"{TITLE}\n")
    dumb.type_password("wrong")
    dumb.wait_text("Wrong password: 2 attempts left.\nPassword:")
    dumb.type_password(PASSWORD)
    site.events(dumb, lambda n: "unlock" in n)  # keys typed during the check are dropped
    dumb.send("echo back-$((1+1))", "Enter")
    dumb.wait_text("back-2")
