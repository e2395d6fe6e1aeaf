"""``idlewrap enable``: switch idlewrap on for sshd, in one step the admin takes.

Installing idlewrap changes no login; this does, and only this: it writes the sshd
drop-in (ForceCommand this interpreter ``-I -m idlewrap``), checks it with ``sshd -t``
(and takes it back if sshd refuses it), adds the PAM hook to sshd's PAM stack and turns
off pam_env's ``user_readenv`` there (commands/switch.py). What is already right stays
untouched; ``--dry-run`` prints the diffs and changes nothing. It reloads nothing and
enables no service: it prints those steps. ``idlewrap disable`` takes it back.
Exit status 0 (done, or nothing to do), 1 (nothing changed; one line says why).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from idlewrap.commands.switch import (
    DROPIN,
    PAM_SSHD,
    SSHD_CONFIG,
    Change,
    SwitchError,
    add_hook,
    apply,
    diff,
    enable_dropin,
    includes,
    located,
    read_text,
    readenv_off,
    undo,
)

SSHD = "/usr/sbin/sshd"


def parser() -> argparse.ArgumentParser:
    """The command line of ``idlewrap enable``."""
    command = argparse.ArgumentParser(
        prog="idlewrap enable",
        description=f"Switch idlewrap on for sshd: write {DROPIN} (ForceCommand PYTHON -I -m "
        f"idlewrap) and check it with sshd -t, add the PAM hook to {PAM_SSHD} and set "
        "user_readenv=0 for pam_env there. Changes only what is not right yet, reloads "
        "nothing. Exit status 0: done or nothing to do, 1: nothing changed (the reason "
        "on stderr). Run as root.",
    )
    add_common_options(command)
    command.add_argument("--python", default=sys.executable, metavar="PATH",
                         help="the interpreter sshd and PAM start idlewrap with (default: "
                         "the one running this command)")
    command.add_argument("--sshd", default=SSHD, metavar="PATH",
                         help=f"the sshd binary that checks the result (default {SSHD})")
    return command


def add_common_options(command: argparse.ArgumentParser) -> None:
    """``--dry-run`` and ``--root``, as enable and disable both take them."""
    command.add_argument("--dry-run", action="store_true",
                         help="print the diff of each file it would change, change nothing "
                         "(needs no root)")
    command.add_argument("--root", default="/", metavar="DIR",
                         help="change the files under DIR instead of / (for images and "
                         "tests); sshd -t then reads DIR/etc/ssh/sshd_config, whose Include "
                         "must name DIR's sshd_config.d")


def main(argv: list[str]) -> int:
    """Enable (or with ``--dry-run`` show how); the exit status."""
    usage = parser()
    options = usage.parse_args(argv)
    if not os.path.isabs(options.python):
        usage.error("--python must be an absolute path")
    try:
        return _enable(options)
    except SwitchError as err:
        print(f"idlewrap enable: {err}", file=sys.stderr)
        return 1


def _enable(options: argparse.Namespace) -> int:
    root = options.root
    if not options.dry_run:
        refuse_unless_root("enable", root)
        if not os.access(options.sshd, os.X_OK):
            raise SwitchError(f"{options.sshd}: no sshd there to check the drop-in (install "
                              "openssh-server, or give --sshd PATH)")
    sshd_config = read_text(located(root, SSHD_CONFIG))
    if sshd_config is None:
        raise SwitchError(f"{located(root, SSHD_CONFIG)}: no such file")
    if not includes(sshd_config, located(root, DROPIN)):
        raise SwitchError(f"{located(root, SSHD_CONFIG)} does not Include "
                          f"{located(root, DROPIN)} before its first Match: add "
                          f"`Include {os.path.dirname(located(root, DROPIN))}/*.conf` at its top")
    dropin = read_text(located(root, DROPIN))
    pam = read_text(located(root, PAM_SSHD))
    if pam is None:
        raise SwitchError(f"{located(root, PAM_SSHD)}: no such file (is openssh-server "
                          "installed?)")
    sshd_change = Change(DROPIN, dropin, enable_dropin(dropin, options.python),
                         f"wrote {DROPIN} (ForceCommand {options.python} -I -m idlewrap)")
    pam_change = _pam_change(pam, options.python)
    changes = [c for c in (sshd_change, pam_change) if c.new != c.old]
    if options.dry_run:
        return show(changes, "enable")
    if not changes:
        print("idlewrap enable: nothing to do, idlewrap is enabled")
        return 0
    done = []
    if sshd_change in changes:
        done = apply([sshd_change], root)
        problem = _sshd_refuses(options.sshd, located(root, SSHD_CONFIG))
        if problem is not None:
            undo(done)
            raise SwitchError(f"sshd -t refused the drop-in, put back as it was: {problem}")
    try:
        apply([c for c in changes if c is not sshd_change], root)
    except SwitchError:
        undo(done)  # so that "nothing changed" holds for the drop-in too
        raise
    for change in changes:
        print(f"idlewrap enable: {change.what}")
    _next_steps(options.python)
    return 0


def _pam_change(pam: str, python: str) -> Change:
    hooked = add_hook(pam, python)
    safe = readenv_off(hooked)
    what = [part for part, changed in (("added the PAM hook", hooked != pam),
                                        ("set user_readenv=0 for pam_env", safe != hooked))
            if changed]
    return Change(PAM_SSHD, pam, safe, f"{PAM_SSHD}: {' and '.join(what)}")


def refuse_unless_root(verb: str, root: str) -> None:
    """SwitchError unless root, when the files are the host's own."""
    if root == "/" and os.geteuid() != 0:
        raise SwitchError(f"must run as root (it changes {SSHD_CONFIG}.d and {PAM_SSHD}); "
                          f"`idlewrap {verb} --dry-run` shows what it would change")


def show(changes: list[Change], verb: str) -> int:
    """``--dry-run``: print each change as a diff; exit status 0."""
    for change in changes:
        sys.stdout.write(diff(change))
    if changes:
        print(f"idlewrap {verb} --dry-run: {len(changes)} file(s) would change, "
              "none was changed")
    else:
        print(f"idlewrap {verb} --dry-run: nothing to do")
    return 0


def _sshd_refuses(sshd: str, config: str) -> str | None:
    """sshd -t's complaint about ``config`` as one line, or None if it accepts it."""
    try:
        done = subprocess.run([sshd, "-t", "-f", config], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{sshd}: {err}"
    if done.returncode == 0:
        return None
    said = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    return "; ".join(said) or f"exit status {done.returncode}"


def _next_steps(python: str) -> None:
    print(f"""
Not done, yours to decide:
  systemctl reload ssh                       # new connections go through idlewrap
  systemctl enable --now idlewrap-watchdog   # the root watchdog (docs/deploy.md, section 6)
  # login-shell mode, for bash and zsh accounts (docs/deploy.md, section 3b):
  {python} -I -m idlewrap install-shell /usr/local/sbin/idlewrap-shell
  usermod -s /usr/local/sbin/idlewrap-shell USER
  {python} -I -m idlewrap audit   # what ends each account's idle sessions""")
