"""Frozen value classes for a host's start path, without the dataclasses module's start-up cost.

``@dataclass(frozen=True)`` writes and compiles six methods for each class when its module is
imported (1-2.5 ms a class here, and 2.5 ms to import ``dataclasses``): for the seven value
classes a host builds at start that was a tenth of its budget (bench/bench_host_start.py), and
the dicomweb source's configuration classes cost creating one about 5 ms.
A :class:`Record` behaves as such a dataclass does: equality and hashing over its fields,
a repr naming them, no assignment or deletion after ``__init__``, and :meth:`Record.replace`
in place of ``dataclasses.replace``. A class built by hand writes its own ``__init__``, so its
signature, defaults and checks stay readable where it is defined; one with many fields built
in one place (a source's validated configuration) takes them by keyword.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

__all__ = ["Record"]

_R = TypeVar("_R", bound="Record")


class Record:
    """Base of a frozen value class: list the fields in ``_fields``, set them in ``__init__``."""

    __slots__ = ()

    _fields: ClassVar[tuple[str, ...]] = ()
    # the values of fields a caller may leave out
    _defaults: ClassVar[dict[str, Any]] = {}
    # fields left out of the repr (a configuration may hold secrets) and out of ==/hash
    _no_repr: ClassVar[frozenset[str]] = frozenset()
    _no_compare: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **values: Any) -> None:
        """Every field by keyword (``_defaults`` fill the rest), for a class with many fields
        that is built in one place; a class built by hand writes its own ``__init__``."""
        unknown = sorted(set(values) - set(self._fields))
        missing = [f for f in self._fields if f not in values and f not in self._defaults]
        if unknown or missing:
            problem = f"unknown fields {unknown}" if unknown else f"missing fields {missing}"
            raise TypeError(f"{type(self).__name__}(): {problem}")
        self._set(**{**self._defaults, **values})

    def _set(self, **values: Any) -> None:
        """Set fields from ``__init__`` (assignment is refused everywhere else)."""
        self.__dict__.update(values)

    def _key(self) -> tuple[Any, ...]:
        return tuple(self.__dict__[f] for f in self._fields if f not in self._no_compare)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._key() == other._key()  # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={self.__dict__[f]!r}" for f in self._fields if f not in self._no_repr)
        return f"{type(self).__qualname__}({shown})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")

    def replace(self: _R, **changes: Any) -> _R:
        """A copy with some fields changed, through ``__init__`` so its checks run again."""
        values = {f: self.__dict__[f] for f in self._fields}
        values.update(changes)
        return type(self)(**values)
