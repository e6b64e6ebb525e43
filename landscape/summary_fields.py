"""The typed fields of ``summary.json``: the converters that turn a JSON value into a typed one
(numbers, lists of numbers, nested entries), refusing a malformed value with one
:class:`~landscape.errors.LandscapeError` line that names its path in the summary, and
:class:`_Entry`, the frozen base class of every section entry
(:mod:`landscape.summary_sections`): parsing by a ``FIELDS`` table, ``extra`` for keys a class
does not name, ``nulls`` for keys read as ``null``, and ``to_json``. :func:`plain` turns numpy
values into JSON ones.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, ClassVar

from .errors import LandscapeError

Numbers = tuple[float | None, ...]
#: a converter: (JSON value, its path in the summary) -> the typed value
Conv = Callable[[Any, str], Any]


def _bad(path: str, what: str) -> LandscapeError:
    return LandscapeError(f"summary: {path} must be {what}")


def _num(v: Any, path: str, optional: bool = True) -> float | None:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _bad(path, "a number")
    return float(v)


def _int(v: Any, path: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or (
            isinstance(v, float) and not v.is_integer()):
        raise _bad(path, "an integer")
    return int(v)


def _str(v: Any, path: str) -> str | None:
    return None if v is None else str(v)


def _bool(v: Any, path: str) -> bool | None:
    if v is not None and not isinstance(v, bool):
        raise _bad(path, "true or false")
    return v


def _any(v: Any, path: str) -> Any:
    return v


def _list(v: Any, path: str) -> list | None:
    """A JSON list kept as it is (the per-batch HSIC matrices)."""
    if v is None:
        return None
    if not isinstance(v, list | tuple):
        raise _bad(path, "a list")
    return list(v)


def _nums(v: Any, path: str) -> Numbers | None:
    """A list of numbers (``null`` kept as None), or None when absent."""
    if v is None:
        return None
    if not isinstance(v, list | tuple):
        raise _bad(path, "a list of numbers")
    return tuple(_num(x, f"{path}[{i}]") for i, x in enumerate(v))


def _ints(v: Any, path: str) -> tuple[int | None, ...] | None:
    if v is None:
        return None
    if not isinstance(v, list | tuple):
        raise _bad(path, "a list of integers")
    return tuple(_int(x, f"{path}[{i}]") for i, x in enumerate(v))


def _strs(v: Any, path: str) -> tuple[str, ...] | None:
    if v is None:
        return None
    if not isinstance(v, list | tuple):
        raise _bad(path, "a list")
    return tuple(str(x) for x in v)


def _items(v: Any, path: str) -> tuple[Any, ...] | None:
    """A list of plain values (block stages: numbers or names)."""
    if v is None:
        return None
    if not isinstance(v, list | tuple):
        raise _bad(path, "a list")
    return tuple(v)


def _matrix(v: Any, path: str) -> tuple[Numbers, ...] | None:
    if v is None:
        return None
    if not isinstance(v, list | tuple):
        raise _bad(path, "a list of lists of numbers")
    return tuple(_nums(r, f"{path}[{i}]") or () for i, r in enumerate(v))


def _obj(v: Any, path: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise _bad(path, "a JSON object")
    return dict(v)


def _dict(v: Any, path: str) -> dict[str, Any] | None:
    return None if v is None else _obj(v, path)


def _one(cls: type[_Entry]) -> Conv:
    return lambda v, path: None if v is None else cls.parse(v, path)


def _many(cls: type[_Entry]) -> Conv:
    def conv(v: Any, path: str) -> tuple[Any, ...] | None:
        if v is None:
            return None
        if not isinstance(v, list | tuple):
            raise _bad(path, "a list")
        return tuple(cls.parse(x, f"{path}[{i}]") for i, x in enumerate(v))
    return conv


def plain(v: Any) -> Any:
    """``v`` with NumPy scalars and arrays, tuples and paths made JSON values (what reading the
    written file gives)."""
    if isinstance(v, Mapping):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [plain(x) for x in v]
    if isinstance(v, PurePath):
        return str(v)
    if hasattr(v, "tolist") and not isinstance(v, str | bytes):  # numpy scalar or array
        return plain(v.tolist())
    return v


@dataclass(frozen=True)
class _Entry:
    """Shared parsing and ``to_json``. ``FIELDS`` maps each JSON key a class names to its
    converter; every dataclass field but ``extra`` and ``nulls`` is one of them unless the class
    parses it itself. ``nulls`` names the keys the JSON object held as ``null`` (written back as
    ``null``; equality ignores it: absent and ``null`` read alike)."""

    FIELDS: ClassVar[dict[str, Conv]] = {}
    nulls: frozenset[str] = field(default=frozenset(), compare=False, repr=False, kw_only=True)

    @classmethod
    def _split(cls, d: Any, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the typed known keys, the rest) of JSON object ``d``; the known keys held as
        ``null`` are under ``"nulls"``."""
        d = _obj(d, path)
        known: dict[str, Any] = {k: conv(d[k], f"{path}.{k}") for k, conv in cls.FIELDS.items()
                                 if d.get(k) is not None}
        nulls = frozenset(k for k in cls.FIELDS if k in d and d[k] is None)
        if nulls:
            known["nulls"] = nulls
        return known, {k: v for k, v in d.items() if k not in cls.FIELDS}

    @classmethod
    def parse(cls, d: Any, path: str) -> Any:
        """The entry of JSON object ``d`` (``path`` names it in errors); an entry of this class
        is returned as it is."""
        if isinstance(d, cls):
            return d
        known, rest = cls._split(d, path)
        return cls(**known, extra=rest)  # type: ignore[call-arg]

    def _json_name(self, name: str) -> str:
        return name

    def to_json(self) -> dict[str, Any]:
        """The JSON object: the fields that are set (and those read as ``null``), then
        ``extra``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("extra", "nulls", "measure") or (v is None and f.name not in
                                                             self.nulls):
                continue
            out[self._json_name(f.name)] = _plain(v)
        return {**out, **getattr(self, "extra", {})}


def _plain(v: Any) -> Any:
    if isinstance(v, _Entry):
        return v.to_json()
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    return v
