"""The root watchdog: what the user's own wrapper cannot guarantee (docs/security.md).

The wrapper runs as the user, so the user can kill it, limit it or never start it. The
watchdog, a root daemon (`idlewrap watchdog`), learns each ssh connection from the PAM
hook at open_session and puts the connection's sshd process into a cgroup of its own
before sshd forks the session (`cgroups.py`), so every process of the connection stays
findable whatever it does (setsid, double fork). Each wrapper registers over the
watchdog's socket (`link.py`); the daemon checks the peer against /proc (`peer.py`) and
then ends the connection's processes when a session never got a wrapper, when a
wrapper dies without saying it ended cleanly, or when it outlives its deadline
(`daemon.py`). It sleeps in epoll on its sockets, pidfds, one inotify fd and one timer.

This package's `__init__` stays empty: the wrapper imports `link` at every login.
"""
