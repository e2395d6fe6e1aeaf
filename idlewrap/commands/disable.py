"""``idlewrap disable``: take back exactly what ``idlewrap enable`` added.

It removes the drop-in enable wrote (it carries a mark) and the marked PAM hook line,
and leaves pam_env's ``user_readenv=0`` as it is (it protects every pam_exec line, not
only idlewrap's). Then it lists what still starts idlewrap, which removing the package
would break: accounts whose login shell is an idlewrap launcher (they need another
shell, ``usermod -s /bin/bash USER``), ForceCommand lines enable did not write, hook
lines it did not add. Exit status 0: nothing starts idlewrap any more; 3: something
still does (listed on stderr); 1: nothing changed (one line says why).
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import re
import sys
from collections.abc import Iterator

from idlewrap.audit.launch import parse_force_command, read_launcher
from idlewrap.commands.enable import add_common_options, refuse_unless_root, show
from idlewrap.commands.switch import (
    DROPIN,
    PAM_SSHD,
    SSHD_CONFIG,
    Change,
    SwitchError,
    apply,
    hook_lines,
    is_our_dropin,
    located,
    read_text,
    remove_hook,
)

EXIT_STILL_USED = 3  # done, but logins still start idlewrap (listed): keep the package


def parser() -> argparse.ArgumentParser:
    """The command line of ``idlewrap disable``."""
    command = argparse.ArgumentParser(
        prog="idlewrap disable",
        description=f"Switch idlewrap off: remove {DROPIN} and the PAM hook line that "
        f"idlewrap enable added (user_readenv=0 stays), then list what still starts "
        "idlewrap: accounts whose login shell is an idlewrap launcher, ForceCommand and "
        "hook lines enable did not write. Exit status 0: nothing starts idlewrap any "
        f"more, {EXIT_STILL_USED}: something still does (listed), 1: nothing changed "
        "(the reason on stderr). Run as root.",
    )
    add_common_options(command)
    return command


def main(argv: list[str]) -> int:
    """Disable (or with ``--dry-run`` show how); the exit status."""
    options = parser().parse_args(argv)
    try:
        return _disable(options.root, dry_run=options.dry_run)
    except SwitchError as err:
        print(f"idlewrap disable: {err}", file=sys.stderr)
        return 1


def _disable(root: str, *, dry_run: bool) -> int:
    if not dry_run:
        refuse_unless_root("disable", root)
    changes = []
    dropin = read_text(located(root, DROPIN))
    if is_our_dropin(dropin):
        changes.append(Change(DROPIN, dropin, None, f"removed {DROPIN}"))
    pam = read_text(located(root, PAM_SSHD))
    if pam is not None and remove_hook(pam) != pam:
        changes.append(Change(PAM_SSHD, pam, remove_hook(pam),
                              f"{PAM_SSHD}: removed the PAM hook"))
    if dry_run:
        show(changes, "disable")
    else:
        apply(changes, root)
        for change in changes:
            print(f"idlewrap disable: {change.what}")
        if not changes:
            print("idlewrap disable: nothing to do, enable's changes are not there")
    remaining = list(still_starting(root, {change.path: change.new for change in changes}))
    for line in remaining:
        print(f"idlewrap disable: still starts idlewrap: {line}", file=sys.stderr)
    if remaining:
        print("idlewrap disable: give those accounts another shell (usermod -s /bin/bash "
              "USER) and remove those lines before removing idlewrap", file=sys.stderr)
        return EXIT_STILL_USED
    if changes and not dry_run:
        print("idlewrap disable: `systemctl reload ssh` for new connections to see it")
    return 0


def still_starting(root: str, after: dict[str, str | None]) -> Iterator[str]:
    """What starts idlewrap once the files in ``after`` (host path: new text) are changed.

    One line each: a ForceCommand in sshd's configuration, a PAM hook line in sshd's
    stack, an account whose login shell is a launcher.
    """
    drop_ins = glob.glob(located(root, f"{SSHD_CONFIG}.d/*.conf"))
    for path in [SSHD_CONFIG, *sorted("/" + os.path.relpath(p, root) for p in drop_ins)]:
        text = after[path] if path in after else read_text(located(root, path))
        for number, line in enumerate((text or "").splitlines(), 1):
            keyword, *value = re.split(r"\s*=\s*|\s+", line.strip(), maxsplit=1)
            if keyword.lower() == "forcecommand" and value and parse_force_command(value[0]):
                yield f"{path}:{number}: {line.strip()}"
    pam = after[PAM_SSHD] if PAM_SSHD in after else read_text(located(root, PAM_SSHD))
    for index in hook_lines(pam or ""):
        yield f"{PAM_SSHD}:{index + 1}: {(pam or '').splitlines()[index].strip()}"
    for user, shell in _accounts(root):
        if read_launcher(located(root, shell)) is not None:
            yield f"account {user}: login shell {shell} is an idlewrap launcher"


def _accounts(root: str) -> Iterator[tuple[str, str]]:
    """(user, login shell) of every account: the host's, or DIR/etc/passwd's."""
    if root == "/":
        for entry in pwd.getpwall():
            yield entry.pw_name, entry.pw_shell
        return
    for line in (read_text(located(root, "/etc/passwd")) or "").splitlines():
        fields = line.split(":")
        if len(fields) == 7:
            yield fields[0], fields[6]
