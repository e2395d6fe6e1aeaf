"""``idlewrap check``: validate the policy file, silently when it is good (like ``sshd -t``)."""

import argparse
import sys
from collections.abc import Iterable

from idlewrap.policy import PolicyError, Problem, load_policy
from idlewrap.settings import DEFAULT_CONFIG


def parser() -> argparse.ArgumentParser:
    """The command line of ``idlewrap check``."""
    command = argparse.ArgumentParser(
        prog="idlewrap check",
        description="Check the idlewrap policy file: ownership, syntax, keys and values. "
        "Silent with exit status 0 when it is good.",
    )
    command.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH",
                         help=f"policy file (default {DEFAULT_CONFIG})")
    return command


def main(argv: list[str]) -> int:
    """Check the policy; return 0 if it is usable, 1 if not.

    Prints nothing for a good file. Otherwise prints one ``PATH:LINE: problem`` line
    per problem to stderr. Warnings (users or groups the system does not know, shells
    that are not executable, rules whose ``warn_before`` gets clamped) are printed too
    but do not fail the check.
    """
    args = parser().parse_args(argv)
    try:
        policy = load_policy(args.config, lint=True)
    except PolicyError as err:
        _print(err.problems)
        return 1
    _print(policy.warnings)
    return 0


def _print(problems: Iterable[Problem]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)
