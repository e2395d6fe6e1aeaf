"""What a login is: its kind for the policy's rules, and its command's name for the log."""

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idlewrap.identity import session_kind
from idlewrap.session import command_name


@pytest.mark.parametrize(("command", "tty", "kind"), [
    (None, True, "interactive"),  # ssh host
    (None, False, "interactive"),  # ssh -T host, ssh host < script: a login shell
    ("bash", True, "interactive"),  # ssh -t host bash: a pty is interactive, whatever runs
    ("vim notes", True, "interactive"),
    ("bash", False, "command"),  # ssh host bash
    ("internal-sftp", False, "command"),
    ("scp -t .", False, "command"),
])
def test_session_kind(command: str | None, tty: bool, kind: str) -> None:
    assert session_kind(command=command, tty=tty) == kind


@pytest.mark.parametrize(("command", "name"), [
    ("scp -t /home/alice/secret-plans.txt", "scp"),
    ("/usr/lib/openssh/sftp-server", "sftp-server"),
    ("internal-sftp", "internal-sftp"),
    ("rsync --server -vlogDtpre.iLsfxCIvu . backup/", "rsync"),
    ("LC_ALL=C PASSWORD=hunter2 /usr/bin/rsync --server .", "rsync"),
    ("git-upload-pack 'project.git'", "git-upload-pack"),
    ("'/opt/my tools/run' --now", "run"),
    ("script -qfc 'bash --norc -i' /dev/null", "script"),
    ("echo 'unbalanced", "echo"),
    ("A=1 B=2", ""),
    ("   ", ""),
])
def test_command_name(command: str, name: str) -> None:
    assert command_name(command) == name


words = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                min_size=1, max_size=12)
assignments = st.builds(lambda n, v: f"{n}={v}", st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}",
                                                                fullmatch=True), words)


@given(st.lists(assignments, max_size=3), words.filter(lambda w: "=" not in w and "/" not in w),
       st.lists(words, max_size=4))
def test_command_name_is_the_program_never_an_argument_or_assignment(
    env: list[str], program: str, args: list[str],
) -> None:
    command = shlex.join([*env, program, *args])
    assert command_name(command) == program


@given(st.text(max_size=40))
def test_command_name_never_raises(command: str) -> None:
    assert isinstance(command_name(command), str)
