"""Reading one JSON object into a typed record, with errors that name the file, key and value.

The typed contracts (:mod:`skyshard.manifest`, :mod:`skyshard.run_record`) read their JSON through
:class:`JsonObject`: each value is fetched by name and checked against a :class:`Kind`, lists
become tuples, and whatever the reader did not ask for stays available (:meth:`JsonObject.extra`)
so that a record rewritten by this version keeps the fields a newer one added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

_MISSING = object()


@dataclass(frozen=True)
class Kind:
    """What a JSON value must be.

    Parameters
    ----------
    description : str
        The kind in words, for error messages ("an integer", "a list of strings").
    check : callable
        ``check(value) -> bool``: whether a (non-null) JSON value is of this kind.
    convert : callable, optional
        ``convert(value) -> object``: the value as the record holds it (lists become tuples).
        The identity when not given.
    """

    description: str
    check: Callable[[Any], bool]
    convert: Callable[[Any], Any] = lambda value: value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _list_of(check: Callable[[Any], bool], nullable: bool = False) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(
        (nullable and item is None) or check(item) for item in value)


def _map_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, dict) and all(
        isinstance(key, str) and check(item) for key, item in value.items())


ANY = Kind("any JSON value", lambda value: True)
STR = Kind("a string", lambda value: isinstance(value, str))
INT = Kind("an integer", _is_int)
NUMBER = Kind("a number", _is_number)
BOOL = Kind("true or false", lambda value: isinstance(value, bool))
OBJECT = Kind("a JSON object", lambda value: isinstance(value, dict), dict)
LIST = Kind("a list", lambda value: isinstance(value, list), tuple)
STR_LIST = Kind("a list of strings", _list_of(lambda item: isinstance(item, str)), tuple)
INT_LIST = Kind("a list of integers", _list_of(_is_int), tuple)
#: Numbers where ``null`` stands for a value JSON cannot hold (NaN, infinity).
NUMBER_LIST = Kind("a list of numbers (or null)", _list_of(_is_number, nullable=True), tuple)
INT_MAP = Kind("an object of integers", _map_of(_is_int), dict)
STR_MAP = Kind("an object of strings", _map_of(lambda item: isinstance(item, str)), dict)
OPTIONAL_STR_MAP = Kind("an object of strings (or null)",
                        _map_of(lambda item: item is None or isinstance(item, str)), dict)
STR_LIST_MAP = Kind("an object of lists of strings",
                    _map_of(_list_of(lambda item: isinstance(item, str))),
                    lambda value: {key: tuple(items) for key, items in value.items()})


def shown(value: Any, limit: int = 120) -> str:
    """``repr`` of a value as JSON would hold it (tuples as lists), cut to ``limit`` characters."""
    text = repr(as_json(value))
    return text if len(text) < limit else text[:limit - 3] + "..."


def as_json(value: Any) -> Any:
    """``value`` with tuples as lists and records (anything with ``to_json``) as their JSON."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [as_json(item) for item in value]
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    return value


class JsonObject:
    """One JSON object being read: values by name, checked, errors naming where they are.

    Parameters
    ----------
    payload : object
        The parsed JSON value that should be an object.
    origin : str
        What the object came from, first in every message (a file name, or "manifest").
    where : str
        The object's place inside ``origin`` as a dotted key (``"splits.train.shards[0]"``);
        empty for the top level.
    error : type of Exception
        What a value of the wrong kind raises (e.g. ``ManifestError``).

    Raises
    ------
    error
        When ``payload`` is not a JSON object.
    """

    def __init__(self, payload: Any, origin: str, where: str = "",
                 error: type[Exception] = ValueError):
        self.origin, self.where, self.error = origin, where, error
        if not isinstance(payload, dict):
            raise error(f"{self._place()} must be a JSON object, got {shown(payload)}")
        self.payload: Mapping[str, Any] = payload
        self._read: set[str] = set()

    def _place(self, name: str | None = None) -> str:
        key = ".".join(part for part in (self.where, name) if part)
        return f"{self.origin}: {key}" if key else self.origin

    def has(self, name: str) -> bool:
        """Whether the object holds ``name`` (with any value, ``null`` too)."""
        return name in self.payload

    def missing(self, names: tuple[str, ...] | list[str]) -> list[str]:
        """The ``names`` the object does not hold, in the order given."""
        return [name for name in names if name not in self.payload]

    def value(self, name: str, kind: Kind = ANY, default: Any = None) -> Any:
        """The value of ``name`` converted per ``kind``; ``default`` when absent or ``null``.

        Raises
        ------
        error
            When the value is not of ``kind``; the message names the origin, the key and the
            value.
        """
        self._read.add(name)
        value = self.payload.get(name, _MISSING)
        if value is _MISSING or value is None:
            return default
        if not kind.check(value):
            raise self.error(f"{self._place(name)} must be {kind.description}, got "
                             f"{shown(value)}")
        return kind.convert(value)

    def required(self, name: str, kind: Kind = ANY) -> Any:
        """The value of ``name``, which must be there and not ``null`` (see :meth:`value`)."""
        if self.payload.get(name) is None:
            self._read.add(name)
            raise self.error(f"{self._place(name)} is required"
                             + (" (it is null)" if name in self.payload else ""))
        return self.value(name, kind)

    def checked(self, name: str, value: Any, check: Callable[[Any, str], Any]) -> Any:
        """``check(value, place)`` for a value read from ``name``, where ``place`` names the
        origin and key; a ``ValueError`` it raises becomes this object's error (e.g. a class
        name or a path that would leave its folder, :mod:`skyshard.names`)."""
        try:
            return check(value, self._place(name))
        except ValueError as exc:
            raise self.error(str(exc)) from exc

    def child(self, name: str, where: str | None = None) -> "JsonObject | None":
        """The object under ``name`` as a :class:`JsonObject` (``None`` when absent or null)."""
        self._read.add(name)
        value = self.payload.get(name)
        if value is None:
            return None
        return JsonObject(value, self.origin, where or ".".join(
            part for part in (self.where, name) if part), self.error)

    def items(self, name: str) -> list["JsonObject"]:
        """The list under ``name`` as one :class:`JsonObject` per item (empty when absent)."""
        self._read.add(name)
        value = self.payload.get(name)
        if value is None:
            return []
        place = ".".join(part for part in (self.where, name) if part)
        if not isinstance(value, list):
            raise self.error(f"{self.origin}: {place} must be a list, got {shown(value)}")
        return [JsonObject(item, self.origin, f"{place}[{index}]", self.error)
                for index, item in enumerate(value)]

    def extra(self) -> dict[str, Any]:
        """The keys no read asked for, with their values as read, in their order."""
        return {key: value for key, value in self.payload.items() if key not in self._read}
