"""The policy's keys, each declared once: name, kind of value, built-in default, one line of doc.

As tlog declares every setting in one schema row (rec_session_conf_schema.m4), a key
here is one field of a NamedTuple::

    idle_timeout: Annotated[int, DURATION, "end the session after ..."] = 900

Everything else reads these rows: the built-in defaults (``Settings()``), and through the
table built from them (keys.py) the validating parser (policy.py), ``idlewrap policy``
(commands/policy.py), the man page and the test that docs/policy.md documents every key.
A kind (:class:`keys.Kind`) says how the file writes a value, how it is checked, and how
it is shown; the parser has no per-key code. A new key is one such line (and its row in
docs/policy.md); a new table such as ``[log]`` is one NamedTuple here, one entry in
:data:`keys.TABLES` and the field of that name in policy.Policy.

A session needs only the defaults: it imports this module, not keys.py (the kinds, their
checks and the table, about 0.05 MiB per session) and not `typing` (records.py). The rows
are read as mypy reads them (``from __future__ import annotations``: strings until
keys.py evaluates them).
"""

from __future__ import annotations

from idlewrap.records import NamedTuple

TYPE_CHECKING = False  # not typing's: a session never imports typing (records.py)
if TYPE_CHECKING:
    from typing import Annotated

    from idlewrap.keys import (
        BOOLEAN,
        COUNT,
        DURATION,
        EXECUTABLE,
        PATH,
        TEMPLATE,
        TEXT,
        choice,
        optional,
    )

DEFAULT_CONFIG = "/etc/idlewrap/idlewrap.toml"


class Settings(NamedTuple):
    """Effective settings for one session; the top level and every ``[[match]]`` may set each.

    Field defaults are the built-in defaults; see the module docstring for the row format.
    """

    idle_timeout: Annotated[int, DURATION, "end the session after this long without input "
                            "from the user's terminal"] = 900
    # 0 (only after clamping a 1 s timeout) means no warning
    warn_before: Annotated[int, DURATION, "show the warning this long before the end; must be "
                           "shorter than idle_timeout"] = 60
    command_idle_timeout: Annotated[int | None, optional(DURATION, "off", word="off"),
                                    "end a command session without a pty after this long "
                                    "without activity"] = None
    command_activity: Annotated[str, choice("an activity", "any", "input"),
                                "what counts as activity in a command session"] = "any"
    shell: Annotated[str | None, optional(EXECUTABLE, "none (the account's login shell)"),
                     "the shell to run instead of the one in passwd"] = None
    message: Annotated[str, TEMPLATE, "printed when a session is closed"] = (
        "idlewrap: session closed after {idle} without input.")
    warning: Annotated[str, TEXT, "the warning banner text, shown as is"] = (
        "This session is idle and will be closed.")
    exempt: Annotated[bool, BOOLEAN, "no idle limit at all (the session is still logged)"] = False
    action: Annotated[str, choice("an action", "terminate", "lock"),
                      "what happens at the limit"] = "terminate"
    unlock_attempts: Annotated[int, COUNT, "wrong passwords at the lock screen before the "
                               "session ends"] = 3
    terminate_after: Annotated[int | None, optional(DURATION, "off", word="off"),
                               "end a locked session after this long without input; must be "
                               "longer than idle_timeout"] = None
    bell: Annotated[bool, BOOLEAN, "ring the terminal bell with the warning"] = True


class Log(NamedTuple):
    """The ``[log]`` table: where events go."""

    syslog_socket: Annotated[str, PATH, "the syslog socket events are written to"] = "/dev/log"


class Watchdog(NamedTuple):
    """The ``[watchdog]`` table: the root daemon that outlasts the user's wrapper."""

    wrapper_grace: Annotated[int, DURATION, "end a connection whose session has had no "
                             "registered wrapper this long, or whose wrapper outlived its "
                             "deadline by this much"] = 10
    required: Annotated[bool, BOOLEAN, "refuse logins while the watchdog is not running"] = False
    socket: Annotated[str, PATH, "the watchdog's socket (wrappers and the PAM hook connect "
                      "to it)"] = "/run/idlewrap/watchdog.sock"


SETTING_NAMES = Settings._fields
DEFAULTS = Settings()
DEFAULT_SYSLOG_SOCKET = Log().syslog_socket
DEFAULT_WATCHDOG_SOCKET = Watchdog().socket
