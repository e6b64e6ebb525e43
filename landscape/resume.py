"""One resumable result store: a stored result is identified by its settings, the checkpoint's
SHA-256 and the versions that made it, and is continued or reused only when they match.

Every resumable analysis stores :func:`identity` beside its numbers (spectrum and surface
files: an HDF5 attribute; feature results and training: their JSON; ``landscape analyze``:
a ``<name>.key.json`` file beside each raw result, see :class:`ResultCache`) and calls
:func:`check` before it continues or reuses the result. A mismatch ends with ONE line naming
every differing setting with its stored and its new value, e.g.
``runs/x/spectrum.h5 holds a spectrum with other settings (batch_size: 16 -> 32, seed: 0 -> 1);
delete it or use another --out``.

What is compared:

- every setting; nested settings are named by their path (``directions.seed``);
- the checkpoint's SHA-256 (None for results of no checkpoint, such as training);
- the landscape and torch versions at major.minor (:data:`COMPARED_VERSIONS`): a minor release
  may change the computation (kernels, defaults). A patch-level difference, and the Python,
  numpy and platform versions, are recorded but do not block a resume.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import LandscapeError
from .provenance import RESUME_HINT, read_json, versions, write_json

COMPARED_VERSIONS = ("landscape", "torch")


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON values (tuples -> lists, numpy/Path values converted), so that a
    stored identity read back compares equal to a fresh one."""
    from .provenance import _default
    return json.loads(json.dumps(obj, sort_keys=True, default=_default))


def identity(settings: Mapping[str, Any], checkpoint_sha256: str | None = None) -> dict[str, Any]:
    """What identifies a result: its settings, the checkpoint's SHA-256 and the versions now."""
    return plain({"settings": dict(settings), "checkpoint_sha256": checkpoint_sha256,
                  "versions": versions()})


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, Mapping):
        return {prefix or "value": d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        out.update(_flat(v, name) if isinstance(v, Mapping) and v else {name: v})
    return out


def _major_minor(v: Any) -> Any:
    return ".".join(str(v).split("+")[0].split(".")[:2]) if v is not None else None


def _compared(ident: Mapping[str, Any]) -> dict[str, Any]:
    vers = ident.get("versions") if isinstance(ident.get("versions"), Mapping) else {}
    return {**_flat(ident.get("settings") or {}),
            "checkpoint_sha256": ident.get("checkpoint_sha256"),
            **{f"versions.{k}": _major_minor(vers.get(k)) for k in COMPARED_VERSIONS}}


def _show(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return v[:12]  # a SHA-256
    return text if len(text) <= 40 else text[:37] + "..."


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``"name: stored -> new"`` for every compared field that differs (see module doc)."""
    a, b = _compared(plain(old)), _compared(plain(new))
    show = lambda d, k: _show(d[k]) if k in d else "unset"  # noqa: E731
    return [f"{k}: {show(a, k)} -> {show(b, k)}" for k in sorted(set(a) | set(b))
            if k not in a or k not in b or a[k] != b[k]]


def mismatch_message(path: str | Path, what: str, diff: list[str],
                     remedy: str = RESUME_HINT) -> str:
    """The one line for a stored result that does not match."""
    return f"{path} holds {what} with other settings ({', '.join(diff)}); {remedy}"


def check(path: str | Path, what: str, old: Any, new: Mapping[str, Any],
          remedy: str = RESUME_HINT) -> None:
    """Raise LandscapeError (one line naming every difference) unless the stored identity
    ``old`` matches ``new``; ``old`` that is not an identity at all is named as unreadable."""
    if not isinstance(old, Mapping):
        raise LandscapeError(f"cannot resume from {path}: its stored settings are not a JSON "
                             f"object; {remedy}")
    diff = differences(old, new)
    if diff:
        raise LandscapeError(mismatch_message(path, what, diff, remedy))


class ResultCache:
    """Raw results in one folder: ``<folder>/<name>`` plus ``<name>.key.json`` holding its
    :func:`identity` (with the folder's checkpoint). A stored result is reused when its
    identity matches; otherwise it is recomputed (``landscape analyze`` shares one raw folder
    between runs with other budgets) and ``log`` is told which settings differed."""

    def __init__(self, folder: Path, force: bool = False, checkpoint_sha256: str | None = None,
                 log: Callable[[str], None] | None = None):
        self.folder = Path(folder)
        self.force, self.checkpoint_sha256, self.log = force, checkpoint_sha256, log
        self.folder.mkdir(parents=True, exist_ok=True)

    def get(self, name: str, settings: Mapping[str, Any], compute: Callable[[Path], Any],
            load: Callable[[Path], Any]) -> tuple[Any, bool]:
        """(result, reused?): ``load`` of the stored result when its identity matches, else
        ``compute(path)`` (which writes ``path``) and the new identity stored beside it."""
        path = self.folder / name
        key_path = self.folder / f"{name}.key.json"
        ident = identity(settings, self.checkpoint_sha256)
        if not self.force and path.exists() and key_path.exists():
            try:
                diff = differences(read_json(key_path), ident)
                if not diff:
                    return load(path), True
                if self.log:
                    self.log(mismatch_message(path, name, diff, "recomputing it"))
            except Exception:  # noqa: BLE001 - an unreadable cache entry is recomputed
                pass
        for p in (path, key_path):
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        result = compute(path)
        write_json(key_path, ident)
        return result, False


__all__ = ["COMPARED_VERSIONS", "RESUME_HINT", "ResultCache", "check", "differences",
           "identity", "mismatch_message", "plain"]
