"""records.NamedTuple behaves as typing.NamedTuple, which it stands in for at run time."""

import copy
import pickle
import typing
from typing import Any

import pytest

from idlewrap import records


def _point(base: Any) -> Any:
    class Point(base):  # type: ignore[misc, valid-type]
        """A point."""

        x: int
        y: int = 0
        label: str = ""

        def moved(self, by: int) -> "Point":
            return self._replace(x=self.x + by)  # type: ignore[no-any-return]

        @property
        def norm(self) -> int:
            return abs(self.x) + abs(self.y)

    return Point


OURS, THEIRS = _point(records.NamedTuple), _point(typing.NamedTuple)


def test_a_record_is_the_tuple_typing_makes() -> None:
    for cls in (OURS, THEIRS):
        p = cls(1, label="a")
        assert (p, p.x, p.y, p.label, p[0], len(p)) == ((1, 0, "a"), 1, 0, "a", 1, 3)
        assert isinstance(p, tuple) and p == (1, 0, "a") and hash(p) == hash((1, 0, "a"))
        assert repr(p) == "Point(x=1, y=0, label='a')"
        assert p._replace(y=5) == cls(1, 5, "a") and p.moved(2) == (3, 0, "a")
        assert p.norm == 1 and cls.__doc__ == "A point." and cls.__name__ == "Point"
        assert cls._fields == ("x", "y", "label") and cls.__match_args__ == cls._fields
        assert cls._field_defaults == {"y": 0, "label": ""}
        assert p._asdict() == {"x": 1, "y": 0, "label": "a"}
        assert cls._make([4, 5, "b"]) == (4, 5, "b")
        assert copy.copy(p) == p and copy.deepcopy(p) == p
        assert cls.__module__ == __name__ and "_point.<locals>.Point" in cls.__qualname__
        with pytest.raises(AttributeError):
            p.x = 2


def test_wrong_arguments_fail_the_same_way() -> None:
    for cls in (OURS, THEIRS):
        for args, kwargs in (((), {}), ((1, 2, "a", 4), {}), ((1,), {"x": 2}), ((1,), {"z": 2})):
            with pytest.raises(TypeError):
                cls(*args, **kwargs)
        with pytest.raises(TypeError):
            cls._make([1])
        with pytest.raises(ValueError, match="unexpected field names"):
            cls(1)._replace(z=1)


def test_a_record_pickles() -> None:
    again = pickle.loads(pickle.dumps(_Pair(1, "a")))
    assert again == _Pair(1, "a") and type(again) is _Pair


def test_the_class_body_follows_the_rules_of_typing() -> None:
    with pytest.raises(TypeError, match="Non-default namedtuple field"):
        class Bad(records.NamedTuple):  # type: ignore[misc]
            a: int = 1
            b: int
    with pytest.raises(AttributeError, match="Cannot overwrite NamedTuple attribute _replace"):
        class Worse(records.NamedTuple):
            a: int

            def _replace(self) -> None:  # type: ignore[override]
                pass


class _Pair(records.NamedTuple):
    n: int
    s: str
