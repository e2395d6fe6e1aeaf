"""`NamedTuple` for the records a session uses, without importing `typing` at run time.

`typing` (with what it loads) costs every wrapper about 0.7 MiB of private memory for the
whole session (docs/performance.md, "300 sessions on one host"), and a session needs
nothing of it but `NamedTuple`. mypy sees `typing.NamedTuple` itself (it treats any name
``TYPE_CHECKING`` as the typing flag): the field types are checked as before.

At run time a record is what `typing.NamedTuple` makes, a tuple with named fields: the
fields are the annotated names in order, the defaults their values; positional and
keyword construction, ``_replace``, ``_asdict``, ``_make``, ``_fields``,
``_field_defaults``, the repr, equality and hash of a tuple; the methods, properties and
docstring of the class body. Unlike `collections.namedtuple`, whose class compiles its
own ``__new__`` and carries a repr, a property and a docstring per field (about 5 KiB a
class, 17 of them on a login's path), the methods are shared here and a field is one
C accessor.
"""

TYPE_CHECKING = False

__all__ = ["NamedTuple"]

if TYPE_CHECKING:
    from typing import NamedTuple
else:
    from _collections import _tuplegetter  # collections.namedtuple's field accessor

    # what typing.NamedTuple forbids in a class body (Lib/typing.py, NamedTupleMeta)
    _FORBIDDEN = frozenset({"__new__", "__init__", "__slots__", "__getnewargs__", "_fields",
                            "_field_defaults", "_make", "_replace", "_asdict", "_source"})

    class _Record(tuple):
        """What every record shares (collections.namedtuple's methods, written once)."""

        __slots__ = ()  # each record sets _fields and _field_defaults

        def __new__(cls, *args, **kwargs):
            fields = cls._fields
            if len(args) > len(fields):
                raise TypeError(f"{cls.__name__}() takes {len(fields)} positional arguments "
                                f"but {len(args)} were given")
            values = list(args)
            for name in fields[len(args):]:
                if name in kwargs:
                    values.append(kwargs.pop(name))
                elif name in cls._field_defaults:
                    values.append(cls._field_defaults[name])
                else:
                    raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
            if kwargs:
                name = next(iter(kwargs))
                if name in fields:
                    raise TypeError(f"{cls.__name__}() got multiple values for argument "
                                    f"{name!r}")
                raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {name!r}")
            return tuple.__new__(cls, values)

        @classmethod
        def _make(cls, iterable):
            """A new record from a sequence or iterable."""
            made = tuple.__new__(cls, iterable)
            if len(made) != len(cls._fields):
                raise TypeError(f"Expected {len(cls._fields)} arguments, got {len(made)}")
            return made

        def _replace(self, /, **changes):
            """A new record with the fields in ``changes`` replaced."""
            made = self._make(map(changes.pop, self._fields, self))
            if changes:
                raise ValueError(f"Got unexpected field names: {list(changes)!r}")
            return made

        def _asdict(self):
            """A new dict of field names to values."""
            return dict(zip(self._fields, self, strict=True))

        def __repr__(self):
            pairs = zip(self._fields, self, strict=True)
            shown = ", ".join(f"{name}={value!r}" for name, value in pairs)
            return f"{self.__class__.__name__}({shown})"

        def __getnewargs__(self):
            return tuple(self)

    class _RecordMeta(type):
        def __new__(mcs, name, bases, namespace):
            if not bases:  # NamedTuple itself
                return super().__new__(mcs, name, bases, namespace)
            fields = tuple(namespace.get("__annotations__", {}))
            defaults = {}
            for field in fields:
                if field in namespace:
                    defaults[field] = namespace[field]
                elif defaults:
                    raise TypeError(f"Non-default namedtuple field {field} cannot follow "
                                    f"default field{'s' * (len(defaults) > 1)} "
                                    f"{', '.join(defaults)}")
            body = {}
            for key, value in namespace.items():
                if key in _FORBIDDEN:
                    raise AttributeError(f"Cannot overwrite NamedTuple attribute {key}")
                if key not in defaults:
                    body[key] = value
            body.setdefault("__doc__", f"{name}({', '.join(fields)})")
            body.update(__slots__=(), _fields=fields, _field_defaults=defaults,
                        __match_args__=fields)
            for index, field in enumerate(fields):
                body[field] = _tuplegetter(index, None)
            return type(name, (_Record,), body)

    class NamedTuple(metaclass=_RecordMeta):
        """Base class of a record: ``class Point(NamedTuple): x: int; y: int = 0``."""
