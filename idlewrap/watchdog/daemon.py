"""The watchdog's record of connections and its event loop (the design: __init__.py).

One thread, one epoll: the listening socket, a socket per hook request or wrapper, a
pidfd per connection's sshd process (and per command a wrapper handed over to), one
inotify fd (a closed connection's cgroup became empty) and one timer (`deadline.Alarm`,
CLOCK_BOOTTIME) set to the nearest thing due. Nothing is polled: with every session
registered and nobody typing, the loop sleeps (docs/performance.md, `bench/watchdog`).

What is due:
- a connection's check: every process an sshd of the connection started (a child of
  one of its sshd processes) that is not sshd itself must be a registered wrapper,
  within `wrapper_grace` of its start (or of the last wrapper registering or ending,
  which covers sshd exec'ing the launcher after ~/.ssh/rc ran). Otherwise the session
  runs with no deadline: `no_wrapper`. Exempt accounts are not checked. It runs
  `wrapper_grace` after the connection opened, and whenever one of its wrappers
  registers, reports its deadline or ends: nothing tells the watchdog when a client
  opens another session on a connection (multiplexing), so that is when it is seen.
- a wrapper's deadline: its dead man's switch plus the grace (`deadline_missed`).
A wrapper whose socket closes without `end` (and that did not hand over to a command
with `exec`) died or could not finish its teardown: `wrapper_died`. Each of the three
ends every process of the connection but sshd's privileged one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import re
import select
import socket
import stat
import struct
import sys
from collections import Counter
from collections.abc import Callable
from ipaddress import ip_address

from idlewrap import deadline as clock
from idlewrap.deadline import Alarm
from idlewrap.events import EventLog
from idlewrap.identity import LoginContext, groups_of
from idlewrap.libc import IN_MODIFY, inotify_init, inotify_read, inotify_unwatch, inotify_watch
from idlewrap.policy import Policy, load_policy_failsafe, resolve
from idlewrap.signals import ENDING, SignalWakeup
from idlewrap.watchdog import peer, procfs, protocol
from idlewrap.watchdog.cgroups import Cgroups, Group

_TTY = re.compile(r"/dev/pts/[0-9]+")
# A user may hold this many connections to the socket beyond two for each SSH connection
# of theirs the daemon follows (its wrapper and its ~/.ssh/rc runner each hold one): more
# are closed at once, so nobody can use up the daemon's descriptors, and a user with many
# sessions is never turned away (a fixed cap ended every session past it as no_wrapper).
SPARE_CLIENTS_PER_USER = 64
MAX_REFUSALS_LOGGED = 10  # per connection: a loop of fake registrations must not flood the log


class Wrapper:
    """A registered wrapper (kind `session`) or ~/.ssh/rc runner (kind `rc`)."""

    def __init__(self, pid: int, kind: str, pidfd: int) -> None:
        self.pid = pid
        self.kind = kind
        self.pidfd = pidfd
        self.due: float | None = None  # deadline_missed from then on
        self.clean = False  # said `end`
        self.handed_over = False  # said `exec`: the pid is now the user's command
        self.via: int | None = None  # an rc runner: the shell sshd's popen started it with


class Connection:
    """One ssh connection, as the PAM hook announced it."""

    def __init__(self, priv: int, pidfd: int, group: Group, fields: dict[str, str],
                 account: pwd.struct_passwd, policy: Policy, now: float) -> None:
        self.priv = priv
        self.pidfd = pidfd
        self.group = group
        self.user = account.pw_name
        self.uid = account.pw_uid
        self.home = account.pw_dir
        self.shell = account.pw_shell
        self.conn = fields.get("conn")
        self.rhost = fields.get("rhost")
        self.sshd = procfs.exe_of(priv)
        self.grace = float(policy.watchdog.wrapper_grace)
        self.exempt = _exempt(policy, account, self.rhost)
        self.wrappers: dict[int, Wrapper] = {}
        self.last_cover = now  # opened, or a wrapper registered or ended
        self.check_at: float | None = now + self.grace
        self.ended = False  # sshd's privileged process exited
        self.killed = False
        self.watch: int | None = None  # inotify watch on the cgroup, once ended or killed
        self.refusals = 0

    def fields(self) -> dict[str, object]:
        """What every event about the connection carries."""
        return {"user": self.user, "uid": self.uid, "rhost": self.rhost, "conn": self.conn}


def _exempt(policy: Policy, account: pwd.struct_passwd, rhost: str | None) -> bool:
    try:
        address = ip_address(rhost) if rhost else None
    except ValueError:
        address = None
    ctx = LoginContext(account.pw_name, account.pw_uid, groups_of(account.pw_name), address,
                       "interactive")
    return resolve(policy, ctx).settings.exempt


class Client:
    """One connection to the socket: a PAM hook's request, or a wrapper for its lifetime."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pid, self.uid, _ = _peer_credentials(sock)
        self.buffer = b""
        self.conn: Connection | None = None
        self.wrapper: Wrapper | None = None


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


class Watchdog:
    """The daemon: serve the socket until SIGTERM or SIGINT."""

    def __init__(self, config: str, cgroups: Cgroups) -> None:
        self.config = config
        self.cgroups = cgroups
        self.policy, _ = load_policy_failsafe(config)
        self.log = EventLog(self.policy.log_socket, stderr_fd=2)
        self.expected = peer.Expected(procfs.file_id(os.path.realpath(sys.executable)),
                                      os.path.realpath(config))
        self.connections: dict[str, Connection] = {}  # by group path
        self.by_priv: dict[int, Connection] = {}
        self.by_watch: dict[int, Connection | Group] = {}
        self.handlers: dict[int, Callable[[], None]] = {}
        self.clients: Counter[int] = Counter()  # open connections to the socket, by uid
        self.over_limit: set[int] = set()  # uids refused since they last were below the limit
        self.epoll = select.epoll()
        self.inotify = inotify_init()
        self.alarm = Alarm()
        # where wrappers and the PAM hook connect: read once (a changed policy takes a restart)
        self.socket_path = self.policy.watchdog.socket
        self.listener = _listen(self.socket_path)
        self.stopping = False

    def serve(self) -> None:
        """Run until an ending signal; then close the socket (connections stay as they are)."""
        with SignalWakeup() as signals:
            self._watch(signals.fileno(), lambda: self._on_signals(signals))
            self._watch(self.listener.fileno(), self._accept)
            self._watch(self.inotify, self._on_inotify)
            self._watch(self.alarm.fileno(), self._on_alarm)
            self._adopt_leftovers()
            self.log.emit("watchdog_start", pid=os.getpid(), socket=self.socket_path,
                          groups=self.cgroups.describe())
            while not self.stopping:
                self.alarm.set(self._next_wake())
                for fd, _ in self.epoll.poll():
                    handler = self.handlers.get(fd)
                    if handler is not None:
                        handler()
        self.log.emit("watchdog_stop", pid=os.getpid())
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)
        self.listener.close()

    # -- the loop's plumbing -------------------------------------------------------------

    def _watch(self, fd: int, handler: Callable[[], None]) -> None:
        self.handlers[fd] = handler
        self.epoll.register(fd, select.EPOLLIN)

    def _unwatch(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            self.epoll.unregister(fd)

    def _on_signals(self, signals: SignalWakeup) -> None:
        if any(signum in ENDING for signum in signals.received()):
            self.stopping = True

    def _next_wake(self) -> float | None:
        times = [c.check_at for c in self.connections.values() if c.check_at is not None]
        times += [w.due for c in self.connections.values() for w in c.wrappers.values()
                  if w.due is not None]
        return min(times, default=None)

    def _on_alarm(self) -> None:
        self.alarm.clear()
        now = clock.now()
        for conn in list(self.connections.values()):
            late = [w for w in conn.wrappers.values() if w.due is not None and now >= w.due]
            if late:
                self._end(conn, "deadline_missed", late[0].pid)
            elif conn.check_at is not None and now >= conn.check_at:
                self._check(conn, now)

    # -- clients ---------------------------------------------------------------------------

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        client = Client(sock)
        if client.uid != 0 and self.clients[client.uid] >= self._client_limit(client.uid):
            sock.close()
            if client.uid not in self.over_limit:  # once until the user is below it again
                self.over_limit.add(client.uid)
                self.log.emit("client_refused", user=_user_name(client.uid), uid=client.uid,
                              pid=client.pid, clients=self.clients[client.uid])
            return
        self.clients[client.uid] += 1
        self._watch(sock.fileno(), lambda: self._on_client(client))

    def _client_limit(self, uid: int) -> int:
        connections = sum(1 for conn in self.connections.values() if conn.uid == uid)
        return SPARE_CLIENTS_PER_USER + 2 * connections

    def _on_client(self, client: Client) -> None:
        try:
            data = client.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._hang_up(client)
            return
        client.buffer += data
        while b"\n" in client.buffer:
            line, client.buffer = client.buffer.split(b"\n", 1)
            if not self._on_message(client, line):
                self._hang_up(client)
                return
        if len(client.buffer) > protocol.MAX_LINE:
            self._hang_up(client)

    def _on_message(self, client: Client, line: bytes) -> bool:
        """Act on one line; False ends the client's connection."""
        try:
            verb, fields = protocol.decode(line)
        except ValueError:
            return False
        if verb in (protocol.OPEN, protocol.CLOSE) and client.wrapper is None:
            self._answer(client, *self._on_hook(client, verb, fields))
            return False
        if verb == protocol.REGISTER and client.wrapper is None:
            return self._register(client, fields)
        wrapper, conn = client.wrapper, client.conn
        if wrapper is None or conn is None:
            return False
        now = clock.now()
        if verb == protocol.DEADLINE:
            try:
                wrapper.due = now + max(float(fields["in"]), 0.0) + conn.grace
            except (KeyError, ValueError):
                return False
            self._check(conn, now)  # a later session of a multiplexed connection shows here
        elif verb == protocol.ENDING:
            wrapper.due = now + conn.grace
        elif verb == protocol.LOCKED:
            wrapper.due = None  # locked with no end: nobody can use it, the policy keeps it
        elif verb == protocol.EXEC:
            wrapper.handed_over, wrapper.due = True, None
            self._watch(wrapper.pidfd, lambda: self._on_command_exit(conn, wrapper))
        elif verb == protocol.END:
            wrapper.clean, wrapper.due = True, None
        else:
            return False
        return True

    def _answer(self, client: Client, verb: str, fields: dict[str, object]) -> None:
        with contextlib.suppress(OSError):
            client.sock.send(protocol.encode(verb, **fields))

    def _hang_up(self, client: Client) -> None:
        self._unwatch(client.sock.fileno())
        client.sock.close()
        self.clients[client.uid] -= 1
        if self.clients[client.uid] < self._client_limit(client.uid):
            self.over_limit.discard(client.uid)
        wrapper, conn = client.wrapper, client.conn
        if wrapper is None or conn is None or wrapper.handed_over:
            return
        if not wrapper.clean:
            self._end(conn, "wrapper_died", wrapper.pid)
        self._forget_wrapper(conn, wrapper)
        conn.last_cover = clock.now()
        self._check(conn, conn.last_cover)

    def _forget_wrapper(self, conn: Connection, wrapper: Wrapper) -> None:
        conn.wrappers.pop(wrapper.pid, None)
        self._unwatch(wrapper.pidfd)
        os.close(wrapper.pidfd)

    def _on_command_exit(self, conn: Connection, wrapper: Wrapper) -> None:
        self._forget_wrapper(conn, wrapper)

    # -- the PAM hook ----------------------------------------------------------------------

    def _on_hook(self, client: Client, verb: str, fields: dict[str, str]) -> tuple[
            str, dict[str, object]]:
        try:
            priv = int(fields["pid"])
            if client.uid != 0 or procfs.stat_of(client.pid).ppid != priv:
                return protocol.REFUSED, {"reason": "not_the_pam_hook"}
        except (KeyError, ValueError, OSError):
            return protocol.REFUSED, {"reason": "not_the_pam_hook"}
        if verb == protocol.CLOSE:
            return protocol.OK, {}
        if priv in self.by_priv:
            return protocol.OK, {}
        try:
            conn = self._open(priv, fields)
        except (KeyError, ValueError, OSError) as err:
            self.log.emit("watchdog_error", user=fields.get("user"), conn=fields.get("conn"),
                          error=f"cannot follow the connection of sshd pid {priv}: {err}")
            return protocol.REFUSED, {"reason": "no_group"}
        return protocol.OK, {"group": conn.group.path}

    def _open(self, priv: int, fields: dict[str, str]) -> Connection:
        account = pwd.getpwnam(fields["user"])
        self.policy, _ = load_policy_failsafe(self.config)  # rules may have changed
        pidfd = os.pidfd_open(priv)
        try:
            group = self.cgroups.adopt(priv)
            conn = Connection(priv, pidfd, group, fields, account, self.policy, clock.now())
        except BaseException:
            os.close(pidfd)
            raise
        self.connections[group.path] = conn
        self.by_priv[priv] = conn
        self._watch(pidfd, lambda: self._on_sshd_exit(conn))
        return conn

    def _on_sshd_exit(self, conn: Connection) -> None:
        conn.ended = True
        conn.check_at = None
        self._unwatch(conn.pidfd)
        os.close(conn.pidfd)
        self.by_priv.pop(conn.priv, None)
        self._tidy(conn)

    # -- wrappers --------------------------------------------------------------------------

    def _register(self, client: Client, fields: dict[str, str]) -> bool:
        kind = fields.get("kind", "session")
        try:
            group = self.cgroups.group_of(client.pid)
        except (OSError, ValueError):
            group = None
        conn = self.connections.get(group or "")
        if conn is None or conn.ended or conn.killed or kind not in ("session", "rc"):
            return False  # a login that is no ssh connection of ours (the console, su)
        facts = peer.Connection(conn.uid, conn.home, conn.shell, conn.sshd, self._member_of(conn))
        try:
            pidfd = os.pidfd_open(client.pid)
        except OSError:
            return False
        why = peer.refusal(client.pid, client.uid, kind, facts, self.expected)
        if why is None and not procfs.alive(pidfd):
            why = "exited while being checked"
        if why is not None:
            os.close(pidfd)
            conn.refusals += 1
            if conn.refusals <= MAX_REFUSALS_LOGGED:
                last = conn.refusals == MAX_REFUSALS_LOGGED
                self.log.emit("wrapper_refused", **conn.fields(), pid=client.pid,
                              reason=why + (" (further ones are not logged)" if last else ""))
            self._answer(client, protocol.REFUSED, {"reason": "not_a_wrapper"})
            return False
        wrapper = Wrapper(client.pid, kind, pidfd)
        with contextlib.suppress(OSError):
            parent = procfs.stat_of(client.pid).ppid
            if kind == "rc" and peer.popen_shell(parent, facts):
                wrapper.via = parent
        conn.wrappers[client.pid] = wrapper
        client.conn, client.wrapper = conn, wrapper
        if "tty" in fields:
            self._take_terminal(conn, client.pid, fields["tty"])
        self._answer(client, protocol.OK, {})
        conn.last_cover = clock.now()
        self._check(conn, conn.last_cover)
        return True

    def _member_of(self, conn: Connection) -> Callable[[int], bool]:
        def contains(pid: int) -> bool:
            return self.cgroups.group_of(pid) == conn.group.path

        return contains

    def _take_terminal(self, conn: Connection, pid: int, tty: str) -> None:
        """The session's terminal becomes root's (mode 0600) once the wrapper holds it.

        Then no process of the user can open it by name ($SSH_TTY) to write queries the
        terminal answers, or to read keys; the wrapper's open fds keep working.
        """
        try:
            if not _TTY.fullmatch(tty):
                raise OSError(f"{tty!r} is not a pty")
            held = set()
            for fd in (0, 1, 2):
                with contextlib.suppress(OSError):
                    held.add(procfs.fd_target(pid, fd).st_rdev)
            fd = os.open(tty, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                st = os.fstat(fd)
                if not stat.S_ISCHR(st.st_mode) or st.st_rdev not in held:
                    raise OSError(f"{tty} is not the terminal the wrapper holds")
                if st.st_uid not in (conn.uid, 0):
                    raise OSError(f"{tty} belongs to uid {st.st_uid}")
                os.fchown(fd, 0, -1)
                os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
        except OSError as err:
            self.log.emit("watchdog_error", **conn.fields(), error=f"terminal: {err}")

    # -- deciding and ending ---------------------------------------------------------------

    def _check(self, conn: Connection, now: float) -> None:
        """Every process sshd started for the connection must be a registered wrapper."""
        conn.check_at = None
        if conn.exempt or conn.ended or conn.killed:
            return
        facts: dict[int, tuple[procfs.Stat, procfs.FileId | None]] = {}
        for pid in self.cgroups.members(conn.group):
            try:
                facts[pid] = (procfs.stat_of(pid), _exe_or_none(pid))
            except OSError:
                continue
        sshd = {pid for pid, (_, exe) in facts.items() if exe == conn.sshd}
        covered = {*conn.wrappers, *(w.via for w in conn.wrappers.values())}
        due = None
        for pid, (st, _) in facts.items():
            if pid in sshd or st.ppid not in sshd or pid in covered or st.zombie:
                continue
            since = max(st.started, conn.last_cover)
            if now - since >= conn.grace:
                self._end(conn, "no_wrapper", pid)
                return
            due = since + conn.grace if due is None else min(due, since + conn.grace)
        conn.check_at = due

    def _end(self, conn: Connection, reason: str, culprit: int) -> None:
        """End every process of the connection but sshd's privileged one; log it."""
        if conn.killed:
            return
        conn.killed = True
        conn.check_at = None
        for wrapper in conn.wrappers.values():
            wrapper.due = None
        # Root logins have no unprivileged sshd: the privileged one is the connection.
        spare = None if conn.ended or conn.uid == 0 else conn.priv
        try:
            names = {pid: _name(pid) for pid in self.cgroups.members(conn.group) if pid != spare}
            ended = self.cgroups.end(conn.group, spare)
        except OSError as err:
            self.log.emit("watchdog_error", **conn.fields(), error=f"cannot end: {err}")
            return
        self.log.emit("watchdog_kill", **conn.fields(), reason=reason, pid=culprit,
                      processes=",".join(f"{pid}/{names.get(pid, '?')}" for pid in ended))
        self._tidy(conn)

    def _tidy(self, conn: Connection) -> None:
        """Once ended or killed: remove the cgroup when empty, forget the connection."""
        try:
            if self.cgroups.populated(conn.group) or not self.cgroups.remove(conn.group):
                self._watch_group(conn)
                return
        except OSError:
            pass
        if conn.ended:
            self._forget(conn)

    def _watch_group(self, conn: Connection) -> None:
        events = conn.group.events
        if conn.watch is None and events is not None:
            with contextlib.suppress(OSError):
                conn.watch = inotify_watch(self.inotify, events, IN_MODIFY)
                self.by_watch[conn.watch] = conn

    def _on_inotify(self) -> None:
        for wd in inotify_read(self.inotify):
            target = self.by_watch.get(wd)
            if isinstance(target, Connection):
                if target.ended or target.killed:
                    self._tidy(target)
            elif target is not None:
                self._tidy_leftover(wd, target)

    def _forget(self, conn: Connection) -> None:
        self.connections.pop(conn.group.path, None)
        if conn.watch is not None:
            self.by_watch.pop(conn.watch, None)
            with contextlib.suppress(OSError):
                inotify_unwatch(self.inotify, conn.watch)
        for wrapper in list(conn.wrappers.values()):
            if wrapper.handed_over:
                self._forget_wrapper(conn, wrapper)

    # -- what an earlier watchdog left ------------------------------------------------------

    def _adopt_leftovers(self) -> None:
        """Cgroups of connections from before a restart: removed once empty, not policed."""
        for group in self.cgroups.leftovers():
            if self.cgroups.remove(group):
                continue
            with contextlib.suppress(OSError):
                wd = inotify_watch(self.inotify, f"{group.path}/cgroup.events", IN_MODIFY)
                self.by_watch[wd] = group

    def _tidy_leftover(self, wd: int, group: Group) -> None:
        with contextlib.suppress(OSError):
            if self.cgroups.remove(group):
                self.by_watch.pop(wd, None)
                inotify_unwatch(self.inotify, wd)


def _exe_or_none(pid: int) -> procfs.FileId | None:
    try:
        return procfs.exe_of(pid)
    except OSError:  # a kernel thread, or gone
        return None


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _listen(path: str) -> socket.socket:
    """The socket every user may connect to, in a directory only root may change."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    st = os.stat(directory)
    if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise OSError(errno.EPERM, f"{directory} must be root's and writable by nobody else")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o666)
    sock.listen(128)
    sock.setblocking(False)
    return sock
