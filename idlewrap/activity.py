"""The idle machine of a command without a pty: bytes moving are its activity.

A command's streams carry no keys to tell from terminal noise (scp, sftp and rsync
speak binary protocols; `tail -f` prints for nobody), so the stream relay only
reports that some bytes moved, and in which direction; the policy's
`command_activity` says which directions count. `"any"`: both, as OpenSSH's
ChannelTimeout counts traffic, so a transfer or a `tail -f` is not idle. `"input"`:
only the client's bytes, as for a pty session. Once the client's input has ended
nobody can type any more: under `"input"` the deadline then stops (a batch such as
`ssh host 'bash -s' < job.sh` runs to its end), under `"any"` output still counts.

There is no warning (a byte on stderr of scp or sftp is noise at best); the session
ends with one line on stderr. The deadline is `deadline.IdleDeadline`, as for a pty
session, and the dead man's switch is re-armed the same lazy way as `idle.IdleGuard`
does it: activity moves the deadline, not the wake time, so a transfer costs one
clock read per burst of bytes and one timer call per `command_idle_timeout`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from idlewrap.idle import DEADMAN_GRACE

if TYPE_CHECKING:
    from idlewrap.deadline import IdleDeadline
    from idlewrap.idle import DeadMan


class ActivityGuard:
    """Holds a command session to its idle deadline (see the module docstring).

    The stream relay reads `wake` (when `on_time` must run; None: never) and reports
    bytes moved (`on_moved`) and the end of the client's input (`on_input_closed`).
    """

    def __init__(
        self, deadline: IdleDeadline, *, output_counts: bool, deadman: DeadMan, now: float
    ) -> None:
        self.deadline = deadline
        self._output_counts = output_counts
        self._deadman = deadman
        self.wake: float | None = deadline.expires_at
        self._deadman.arm(deadline.expires_at - now + DEADMAN_GRACE)

    def on_moved(self, inbound: bool, now: float) -> None:
        """Bytes moved from the client (`inbound`) or to it."""
        if inbound or self._output_counts:
            self.deadline.touch(now)

    def on_input_closed(self) -> None:
        """The client's input ended: with only input counting, nothing can move the deadline."""
        if not self._output_counts:
            self.wake = None
            self._deadman.hold()  # no deadline from now on (the watchdog is told so)

    def on_time(self, now: float) -> bool:
        """The wake time came; True when the deadline has passed."""
        if now >= self.deadline.expires_at:
            return True
        self.wake = self.deadline.expires_at
        self._deadman.arm(self.wake - now + DEADMAN_GRACE)
        return False

    def stop(self) -> None:
        """The session ends: the dead man's switch must not fire during the teardown."""
        self._deadman.disarm()
