"""Checksums of a result file's data, stored inside the file and verified when it is read, so
that a raw result damaged after it was written (flipped bytes, a torn copy) is refused in one
line wherever it is read, not only where the result store reads it (the store also checks the
SHA-256 of the whole file against its record: :class:`landscape.store.resume.ResultCache`).

HDF5 results: the root attribute ``data_sha256`` = SHA-256 over every dataset (name, dtype,
shape, bytes) and every attribute (name and value), in name order. JSON results: the key
``data_sha256`` = SHA-256 of the other keys as canonical JSON (sorted keys, no spaces).
A file without the key (written before it existed) is read as before.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import LandscapeError

KEY = "data_sha256"


def _value_text(v: Any) -> str:
    if hasattr(v, "dtype") and hasattr(v, "tolist"):
        return f"{v.dtype.str}:{v.tolist()!r}"
    return repr(v)


def h5_data_sha256(f: Any) -> str:
    """SHA-256 of an open ``h5py.File``'s datasets and attributes (:data:`KEY` excluded)."""
    import h5py
    import numpy as np
    h = hashlib.sha256()

    def attrs(name: str, a: Any) -> None:
        for k in sorted(a.keys()):
            if not (name == "/" and k == KEY):
                h.update(f"{name}@{k}={_value_text(a[k])}\0".encode())

    attrs("/", f.attrs)
    names: list[str] = []
    f.visit(names.append)
    for n in sorted(names):
        obj = f[n]
        attrs(n, obj.attrs)
        if isinstance(obj, h5py.Dataset):
            a = np.ascontiguousarray(obj[()])
            h.update(f"{n}:{a.dtype.str}:{a.shape}\0".encode())
            h.update(repr(a.tolist()).encode() if a.dtype == object else a.tobytes())
    return h.hexdigest()


def seal_h5(f: Any) -> None:
    """Store :func:`h5_data_sha256` in the open file (call last, before it is closed)."""
    f.attrs[KEY] = h5_data_sha256(f)


def verify_h5(f: Any, path: str | Path) -> None:
    """Raise LandscapeError (one line) when the file's data do not match its stored checksum."""
    want = f.attrs.get(KEY)
    if want is None:
        return
    want = want.decode() if isinstance(want, bytes) else str(want)
    if h5_data_sha256(f) != want:
        raise LandscapeError(f"{path}: its data do not match the checksum stored in it (the file "
                             "was damaged after it was written); delete it and compute it again")


def json_data_sha256(obj: Mapping[str, Any]) -> str:
    """SHA-256 of a JSON object's keys other than :data:`KEY`, as canonical JSON."""
    rest = {k: v for k, v in obj.items() if k != KEY}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def seal_json(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` (plain JSON values) with its :data:`KEY`."""
    return {**obj, KEY: json_data_sha256(obj)}


def verify_json(obj: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """``obj`` without its :data:`KEY` after checking it; LandscapeError (one line) on a
    mismatch."""
    want = obj.pop(KEY, None)
    if want is not None and json_data_sha256(obj) != want:
        raise LandscapeError(f"{path}: its data do not match the checksum stored in it (the file "
                             "was damaged after it was written); delete it and compute it again")
    return obj
