"""``idlewrap audit``: for each account, what ends its idle sessions, and could the user escape it.

Compliance checkers grep sshd_config, /etc/profile and logind.conf; this asks sshd
itself (``sshd -T`` per account, Match blocks applied), reads the PAM stack sshd runs
and the policy the wrapper reads, and says per account: covered, escapable (and how),
uncovered or exempt. Exit status 0 when nothing fails, 1 when something does, 2 when
the audit could not run. Every check id: docs/audit.md.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from ipaddress import ip_address
from pathlib import Path

from idlewrap.audit.account import HostFacts, audit_account, policy_at
from idlewrap.audit.classic import classic_checks
from idlewrap.audit.host import (
    WATCHDOG_SOCKET,
    locks,
    pam_checks,
    policy_check,
    policy_limits,
    watchdog_check,
)
from idlewrap.audit.launch import starts_no_session
from idlewrap.audit.pam_stack import PamError, read_stack
from idlewrap.audit.report import Report, exit_status, render_json, render_text
from idlewrap.audit.sshd import Connection, SshdError, effective_config, sshd_version
from idlewrap.settings import DEFAULT_CONFIG

SSHD = "/usr/sbin/sshd"
SSHD_CONFIG = "/etc/ssh/sshd_config"
PAM_FILE = "/etc/pam.d/sshd"


class AuditError(Exception):
    """The audit cannot run (exit status 2); the message is one line for the user."""


def parser() -> argparse.ArgumentParser:
    """The command line of ``idlewrap audit``."""
    command = argparse.ArgumentParser(
        prog="idlewrap audit",
        description="For every account with a login shell: what ends its idle sessions, and "
        "could the user escape it. Exit status 0: nothing failed, 1: something failed, "
        "2: the audit could not run. Run as root.",
    )
    command.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH",
                         help=f"the policy file (default {DEFAULT_CONFIG})")
    command.add_argument("--sshd-config", default=SSHD_CONFIG, metavar="PATH",
                         help=f"sshd's configuration (default {SSHD_CONFIG})")
    command.add_argument("--pam-file", default=PAM_FILE, metavar="PATH",
                         help=f"sshd's PAM service file (default {PAM_FILE})")
    command.add_argument("--user", action="append", default=[], metavar="NAME",
                         help="audit only this account (repeatable)")
    command.add_argument("--addr", default="127.0.0.1", type=_address, metavar="IP",
                         help="client address for sshd's Match blocks and the policy's "
                         "address rules (default 127.0.0.1)")
    command.add_argument("--laddr", default="127.0.0.1", type=_address, metavar="IP",
                         help="local address the connection arrives at, for Match "
                         "LocalAddress (default 127.0.0.1)")
    command.add_argument("--lport", default=22, type=int, metavar="PORT",
                         help="local port, for Match LocalPort (default 22)")
    command.add_argument("--sshd", default=SSHD, metavar="PATH",
                         help=f"the sshd binary (default {SSHD})")
    command.add_argument("--etc", default="/etc", metavar="DIR",
                         help="where to read the classic settings (profile, profile.d, "
                         "bash.bashrc, systemd/logind.conf, tmux.conf) from (default /etc)")
    command.add_argument("--watchdog-socket", default=WATCHDOG_SOCKET, metavar="PATH",
                         help=f"the watchdog's socket (default {WATCHDOG_SOCKET})")
    command.add_argument("--json", action="store_true", help="print one JSON object")
    return command


def main(argv: list[str]) -> int:
    """Audit the host; print the report (text or ``--json``); return the exit status."""
    options = parser().parse_args(argv)
    try:
        report = _audit(options)
    except AuditError as err:
        print(f"idlewrap audit: {err}", file=sys.stderr)
        return 2
    print(render_json(report) if options.json else render_text(report))
    return exit_status(report)


def _address(text: str) -> str:
    try:
        return str(ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def _audit(options: argparse.Namespace) -> Report:
    if os.geteuid() != 0:
        raise AuditError("must run as root (sshd -T reads the host keys)")
    if not (os.path.isfile(options.sshd) and os.access(options.sshd, os.X_OK)):
        raise AuditError(f"{options.sshd}: no sshd binary there (install openssh-server, "
                         "or give --sshd PATH)")
    for path in (options.sshd_config, options.pam_file):
        try:
            with open(path, "rb"):
                pass
        except OSError as err:
            raise AuditError(f"{path}: {err.strerror or err}") from None
    addr = options.addr
    connection = Connection(host="localhost" if ip_address(addr).is_loopback else addr,
                            addr=addr, laddr=options.laddr, lport=options.lport)
    try:
        # UsePAM is global; root exists everywhere, and this also validates the file.
        global_sshd = effective_config(options.sshd, options.sshd_config, "root", connection)
        stack = read_stack(options.pam_file)
        accounts = _accounts(options.user)
        version = sshd_version(options.sshd)
        policy, _ = policy_at(options.config)
        pam, way_outs = pam_checks(stack, use_pam=global_sshd.get("usepam") == "yes",
                                   pam_file=options.pam_file, lock_needed=locks(policy))
        facts = HostFacts(version, connection, options.config, way_outs)
        reports = [audit_account(user, shell, effective_config(
            options.sshd, options.sshd_config, user, connection), facts)
            for user, shell in accounts]
    except (SshdError, PamError) as err:
        raise AuditError(str(err)) from None
    checks = [policy_check(options.config), policy_limits(policy), *pam,
              watchdog_check(options.watchdog_socket), *classic_checks(Path(options.etc))]
    shown = "unknown" if version is None else f"{version[0]}.{version[1]}"
    header = (f"idlewrap audit: sshd {options.sshd_config} (OpenSSH {shown}), PAM "
              f"{options.pam_file}, policy {options.config}, connections from {addr} to "
              f"{options.laddr} port {options.lport}")
    return Report(header, reports, checks)


def _accounts(names: list[str]) -> list[tuple[str, str]]:
    """(user, login shell) to audit: the named ones, or every account with a real shell."""
    if names:
        chosen = []
        for name in dict.fromkeys(names):
            try:
                entry = pwd.getpwnam(name)
            except (KeyError, ValueError):
                raise AuditError(f"unknown user {name!r}") from None
            chosen.append((entry.pw_name, entry.pw_shell or "/bin/sh"))
        return chosen
    every: dict[str, str] = {}
    for entry in pwd.getpwall():
        shell = entry.pw_shell or "/bin/sh"  # what sshd runs for an empty field
        if not starts_no_session(shell):
            every.setdefault(entry.pw_name, shell)
    return list(every.items())
