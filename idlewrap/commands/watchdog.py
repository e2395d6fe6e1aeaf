"""`idlewrap watchdog`: the root daemon, in the foreground (systemd or a test starts it)."""

from __future__ import annotations

import argparse
import os
import sys

from idlewrap.settings import DEFAULT_CONFIG
from idlewrap.watchdog.cgroups import DEFAULT_NAME, Cgroups


def parser() -> argparse.ArgumentParser:
    """The command line of ``idlewrap watchdog``."""
    command = argparse.ArgumentParser(
        prog="idlewrap watchdog",
        description="End what the user's own wrapper cannot: sessions without a wrapper, "
        "and every process of a connection whose wrapper died or missed its deadline.",
    )
    command.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH",
                         help=f"the policy file (default {DEFAULT_CONFIG}); its [watchdog] "
                         "table names the socket")
    command.add_argument("--cgroup-name", default=DEFAULT_NAME, metavar="NAME",
                         help=f"the cgroup (under the cgroup v2 mount) that holds one per "
                         f"connection (default {DEFAULT_NAME})")
    command.add_argument("--no-cgroups", action="store_true",
                         help="find a connection's processes by their audit session id, as on a "
                         "host without cgroup v2")
    return command


def main(argv: list[str]) -> int:
    """Run the watchdog until SIGTERM or SIGINT; exit status."""
    options = parser().parse_args(argv)
    if os.geteuid() != 0:
        print("idlewrap watchdog: must run as root", file=sys.stderr)
        return 1
    import resource

    from idlewrap.watchdog.daemon import Watchdog

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a socket and a pidfd per session
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        cgroups = Cgroups(options.cgroup_name, use_cgroups=not options.no_cgroups)
        daemon = Watchdog(os.path.abspath(options.config), cgroups)
    except OSError as err:
        print(f"idlewrap watchdog: {err}", file=sys.stderr)
        return 1
    print(f"idlewrap watchdog: listening on {daemon.socket_path}; {cgroups.describe()}",
          file=sys.stderr, flush=True)
    daemon.serve()
    return 0
