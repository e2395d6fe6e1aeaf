"""The idle deadline: the one place that knows when a session expires.

Only bytes the input classifier calls user activity move it (the relay calls
`touch`). Time comes from CLOCK_BOOTTIME: wall-clock changes do not move it,
and time spent suspended counts as idle time.
"""

from __future__ import annotations

import time


def now() -> float:
    """Seconds on the clock every idle decision uses."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class IdleDeadline:
    """When the session is warned and when it expires, given the last user input."""

    def __init__(self, idle_timeout: float, warn_before: float, start: float) -> None:
        self.idle_timeout = idle_timeout
        self.warn_before = warn_before
        self.last_input = start

    def touch(self, at: float) -> None:
        """The user acted at `at`: the deadline starts over."""
        self.last_input = at

    @property
    def expires_at(self) -> float:
        """When the session ends unless the user acts first."""
        return self.last_input + self.idle_timeout

    @property
    def warn_at(self) -> float:
        """When the warning goes up."""
        return self.expires_at - self.warn_before

    def idle_for(self, at: float) -> float:
        """Seconds without user input at `at`."""
        return at - self.last_input
