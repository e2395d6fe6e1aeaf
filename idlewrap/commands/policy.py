"""``idlewrap policy``: the effective settings for one login (like ``sshd -T -C user=...``)."""

from __future__ import annotations

import argparse
import json
import sys
from ipaddress import ip_address
from typing import TYPE_CHECKING

from idlewrap.identity import UnknownUserError, login_context
from idlewrap.keys import SETTING_KEYS
from idlewrap.policy import Resolved, load_policy_failsafe, resolve
from idlewrap.settings import DEFAULT_CONFIG

if TYPE_CHECKING:
    from idlewrap.identity import Address


def parser() -> argparse.ArgumentParser:
    """The command line of ``idlewrap policy``."""
    command = argparse.ArgumentParser(
        prog="idlewrap policy",
        description="Show the effective idlewrap settings for a login and their sources.",
    )
    command.add_argument("--user", required=True, metavar="NAME", help="the account logging in")
    command.add_argument("--address", type=_address, metavar="IP",
                         help="client address (default: a local login, which has none)")
    command.add_argument("--command", action="store_true",
                         help="a command session (a command without a pty: ssh host CMD, "
                         "scp, sftp) instead of an interactive one")
    command.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH",
                         help=f"policy file (default {DEFAULT_CONFIG})")
    command.add_argument("--json", action="store_true", help="print one JSON object")
    return command


def main(argv: list[str]) -> int:
    """Print the settings a login would get and which rule supplied each one.

    Returns 0, or 1 for an unknown user or a policy file that cannot be used (its
    problems go to stderr and the built-in defaults, which then apply, are shown).
    """
    args = parser().parse_args(argv)
    try:
        ctx = login_context(args.user, address=args.address, command=args.command)
    except UnknownUserError as err:
        print(f"idlewrap policy: {err}", file=sys.stderr)
        return 1
    policy, problems = load_policy_failsafe(args.config)
    for problem in problems:
        print(problem, file=sys.stderr)
    broken = any(not problem.warning for problem in problems)
    if broken:
        print(f"idlewrap policy: {args.config} cannot be used: the built-in defaults apply",
              file=sys.stderr)
    resolved = resolve(policy, ctx)
    print(_as_json(resolved) if args.json else _as_text(resolved))
    return 1 if broken else 0


def _address(text: str) -> Address:
    try:
        return ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def _as_json(resolved: Resolved) -> str:
    return json.dumps({
        "settings": resolved.settings._asdict(),
        "sources": resolved.sources,
        "rule": resolved.rule,
        "clamped": resolved.clamped,
    }, indent=2)


def _as_text(resolved: Resolved) -> str:
    lines = [f"rule {resolved.rule or 'none'}"]
    for name, key in SETTING_KEYS.items():
        source = resolved.sources[name]
        if name == "warn_before" and resolved.clamped:
            source += ", clamped to half of idle_timeout"
        lines.append(f"{name} {key.kind.show(getattr(resolved.settings, name))} ({source})")
    return "\n".join(lines)
