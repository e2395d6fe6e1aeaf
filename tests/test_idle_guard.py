"""The relay's short path for plain keys decides exactly as IdleGuard.on_input.

While nothing is up, held or pending (`at_rest`), the relay's steady path only moves
the deadline for a key without ESC, and never calls `on_input`. A guard driven that way
and one given every byte through `on_input` see the same random input and time, and
must answer, report and arm the same. No root, no terminal: the warning is the no-pty
line on stderr.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from idlewrap.deadline import IdleDeadline
from idlewrap.idle import IdleGuard, WarningStyle

IDLE, WARN = 10.0, 3.0


class Recorder:
    """The events sink and the dead man's switch in one: everything, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[object, ...]] = []

    def emit(self, event: str, **fields: object) -> None:
        self.log.append((event, sorted(fields.items())))

    def arm(self, seconds: float) -> None:
        self.log.append(("arm", round(seconds, 9)))

    def hold(self) -> None:
        self.log.append(("hold",))

    def disarm(self) -> None:
        self.log.append(("disarm",))


def _guard(recorder: Recorder) -> IdleGuard:
    return IdleGuard(IdleDeadline(IDLE, WARN, 0.0), deadman=recorder, events=recorder,
                     style=WarningStyle("Idle session.", False, None), screen=None, now=0.0)


def _as_the_relay_does(guard: IdleGuard, data: bytes, now: float) -> bytes:
    """Relay._relay_steady for a key: at rest and without ESC, only the deadline moves."""
    if guard.at_rest and 0x1B not in data:
        guard.deadline.touch(now)
        return data
    return guard.on_input(data, now)


# Keys, escape sequences whole and cut, reports, pastes: what reaches a guard.
_PIECES = st.sampled_from([
    b"a", b"ls\r", b"\xc3\xa9", b"\x1b", b"\x1b[", b"A", b"\x1b[A", b"\x1b[I", b"\x1b[O",
    b"\x1b[12;40R", b"\x1b[200~", b"pasted", b"\x1b[201~", b"\x1b]11;rgb:0/0/0\x07",
    b"\x1bP1$r0m\x1b\\", b"\x1b[<35;1;1M", b"\x1b[<0;1;1M",
])
_INPUT = st.one_of(st.lists(_PIECES, min_size=1, max_size=4).map(b"".join),
                   st.binary(min_size=1, max_size=16))
_STEPS = st.lists(st.one_of(st.tuples(st.just("input"), _INPUT, st.floats(0, 4)),
                            st.tuples(st.just("time"), st.just(b""), st.floats(0, 4))),
                  max_size=40)


@settings(max_examples=300, deadline=None)
@given(_STEPS)
def test_the_short_path_for_keys_changes_nothing(steps: list[tuple[str, bytes, float]]) -> None:
    short_log, full_log = Recorder(), Recorder()
    short, full = _guard(short_log), _guard(full_log)
    now = 0.0
    for kind, data, pause in steps:
        now += pause
        if kind == "input":
            assert _as_the_relay_does(short, data, now) == full.on_input(data, now)
        else:
            # what the relay does: call on_time once wake has come
            while short.wake is not None and short.wake <= now:
                ends = short.on_time(short.wake)
                assert full.on_time(full.wake or 0.0) == ends
                if ends:
                    break
        assert (short.wake, short.holds_output, short.at_rest, short.deadline.last_input) == (
            full.wake, full.holds_output, full.at_rest, full.deadline.last_input)
        assert short_log.log == full_log.log
        if short_log.log and short_log.log[-1] == ("disarm",):
            return


def test_a_key_at_rest_moves_the_deadline_and_nothing_else() -> None:
    recorder = Recorder()
    guard = _guard(recorder)
    before = (guard.wake, list(recorder.log))
    assert guard.at_rest
    assert guard.on_input(b"ls -l\r", 2.5) == b"ls -l\r"  # the full path agrees
    assert guard.deadline.last_input == 2.5
    assert (guard.wake, recorder.log) == before


def test_an_escape_sequence_cut_short_takes_the_guard_out_of_rest_until_resolved() -> None:
    guard = _guard(Recorder())
    guard.on_input(b"\x1b[", 1.0)  # a report or a key: the rest will tell
    assert not guard.at_rest
    guard.on_input(b"12;40R", 1.01)  # a cursor position report: not a key
    assert guard.deadline.last_input == 0.0
    assert guard.at_rest


def test_a_warned_guard_is_not_at_rest_and_a_key_takes_the_warning_back() -> None:
    recorder = Recorder()
    guard = _guard(recorder)
    assert guard.wake == IDLE - WARN
    guard.on_time(IDLE - WARN)  # the warning (a line on stderr: no pty)
    assert not guard.at_rest
    guard.on_input(b"x", IDLE - 1)
    assert ("activity_resumed", [("idle", 9)]) in recorder.log
    assert guard.at_rest
