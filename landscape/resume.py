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
import os
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
    between runs with other budgets) and ``log`` is told which settings differed.

    Nothing is swallowed: a result whose identity matches but whose file (or a companion file
    the same computation wrote, such as ``density.h5`` beside ``curvature.json``) cannot be read
    ends with one line naming it, and ``force`` recomputes it. The identity is written only after
    the computation has finished writing, so an interrupted computation is never reused.

    Under torchrun (``collective=True`` in :meth:`get`) the writer decides reuse-or-compute for
    every rank, every rank calls ``compute`` (which must write files on the writer only), and
    only the writer loads a reused result (the others get None).
    """

    def __init__(self, folder: Path, force: bool = False, checkpoint_sha256: str | None = None,
                 log: Callable[[str], None] | None = None, writer: bool = True):
        self.folder = Path(folder)
        self.force, self.checkpoint_sha256, self.log = force, checkpoint_sha256, log
        self.writer = writer
        if writer:
            self.folder.mkdir(parents=True, exist_ok=True)

    def identity(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The :func:`identity` of a result with ``settings`` in this folder."""
        return identity(settings, self.checkpoint_sha256)

    def _stored(self, name: str, ident: Mapping[str, Any], load: Callable[[Path], Any],
                companions: tuple[str, ...]) -> tuple[bool, Any]:
        """(reusable?, loaded result) on the writer; raises LandscapeError (one line) for an
        unreadable result whose identity matches."""
        path = self.folder / name
        key_path = self.folder / f"{name}.key.json"
        if self.force or not (path.exists() and key_path.exists()):
            return False, None
        try:
            stored = read_json(key_path)
        except (OSError, ValueError) as e:
            raise LandscapeError(f"{key_path}: unreadable cache key ({type(e).__name__}: "
                                 f"{str(e)[:120]}); rerun with --force to recompute") from None
        diff = differences(stored, ident) if isinstance(stored, Mapping) else ["not an identity"]
        if diff:
            if self.log:
                self.log(mismatch_message(path, name, diff, "recomputing it"))
            return False, None
        for extra in (path, *(self.folder / c for c in companions)):
            if not extra.exists():
                raise LandscapeError(f"{extra}: missing beside its cache key {key_path.name}; "
                                     "rerun with --force to recompute")
        try:
            return True, load(path)
        except LandscapeError:
            raise
        except Exception as e:  # noqa: BLE001 - any reader failure becomes one named line
            raise LandscapeError(f"{path}: cached result unreadable ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:120] if str(e) else ''}); "
                                 "rerun with --force to recompute") from None

    def get(self, name: str, settings: Mapping[str, Any], compute: Callable[[Path], Any],
            load: Callable[[Path], Any], companions: tuple[str, ...] = (),
            collective: bool = False, resumable: bool = False) -> tuple[Any, bool]:
        """(result, reused?): ``load`` of the stored result when its identity matches, else
        ``compute(path)`` (which writes ``path`` and the ``companions``) and the new identity
        stored beside it. ``load`` must validate what it reads (raise on a torn file).
        ``resumable``: ``compute`` continues a partial ``path`` left by an interrupted run with
        the same identity (recorded in ``<name>.pending.json`` while it runs)."""
        path = self.folder / name
        key_path = self.folder / f"{name}.key.json"
        ident = identity(settings, self.checkpoint_sha256)
        reuse, result = self._stored(name, ident, load, companions) if self.writer else (False,
                                                                                          None)
        if collective:
            from . import distributed as D
            reuse = bool(D.broadcast_object(reuse))
        if reuse:
            return result, True
        pending = self.folder / f"{name}.pending.json"
        if self.writer:
            # An interrupted computation with the same identity left a partial file: kept, the
            # computation continues it (spectrum and surface files resume); anything else goes.
            keep = (resumable and not self.force and pending.is_file() and path.exists()
                    and _same(pending, ident))
            for p in (key_path, pending, *(() if keep else (path,)),
                      *(self.folder / c for c in companions)):
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
            if self.log and keep:
                self.log(f"continuing the interrupted {path.name}")
            write_json(pending, ident)
        if collective:
            from . import distributed as D
            D.barrier()
        result = compute(path)
        if self.writer:
            os.replace(pending, key_path)
        return result, False


class ResultFolder:
    """The commands' store: ``<folder>/<name>`` holds a result whose own file records its
    :func:`identity` (``result.config["identity"]``; a surface file checks its own). A stored
    result is reused when its identity matches; one with other settings is refused with one
    line naming them (``remedy`` says what to do), unless ``force`` recomputes it. The same
    :meth:`get` as :class:`ResultCache`, so a runner writes through either."""

    def __init__(self, folder: Path, checkpoint_sha256: str | None = None, force: bool = False,
                 remedy: str = "delete it, use another --out or pass --force to recompute it"):
        self.folder, self.checkpoint_sha256 = Path(folder), checkpoint_sha256
        self.force, self.remedy = force, remedy

    def identity(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The :func:`identity` of a result with ``settings`` in this folder."""
        return identity(settings, self.checkpoint_sha256)

    def get(self, name: str, settings: Mapping[str, Any], compute: Callable[[Path], Any],
            load: Callable[[Path], Any], companions: tuple[str, ...] = (),
            collective: bool = False, resumable: bool = False) -> tuple[Any, bool]:
        """(result, reused?): the stored result when its identity matches ``settings`` (else
        one line, see the class), or ``compute(path)``. A ``resumable`` result (a surface
        file) is always handed to ``compute``, which continues it and checks its identity."""
        from .provenance import resume_guard
        path = self.folder / name
        if resumable or self.force or not path.exists():
            return compute(path), False
        what = name.split("_")[0].split(".")[0]
        with resume_guard(path, f"{what} result", self.remedy):
            stored = load(path)
            old = (getattr(stored, "config", None) or {}).get("identity")
        check(path, f"a {what} result", old, self.identity(settings), self.remedy)
        return stored, True


def _same(path: Path, ident: Mapping[str, Any]) -> bool:
    try:
        return not differences(read_json(path), ident)
    except (OSError, ValueError):
        return False


__all__ = ["COMPARED_VERSIONS", "RESUME_HINT", "ResultCache", "ResultFolder", "check",
           "differences", "identity", "mismatch_message", "plain"]
