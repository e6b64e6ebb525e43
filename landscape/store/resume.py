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

import contextlib
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import LandscapeError, disk_reason
from .provenance import (
    RESUME_HINT,
    file_sha256,
    plain,
    read_json,
    versions,
    write_json,
)

COMPARED_VERSIONS = ("landscape", "torch")
FOREIGN = "another model's result"


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
    """Raw results in one folder: ``<folder>/<name>`` plus ``<name>.key.json``, the result's
    record: its :func:`identity` (settings, the folder's checkpoint, versions), its name and the
    SHA-256 of every file the computation wrote (the result and its ``companions``).

    Every reuse verifies the record first: identity, name and checksums. A result whose identity
    differs (other settings, another checkpoint), whose record is unreadable or has no
    checksums, or whose files do not match their checksums (damaged, swapped with another
    plane's, copied from another model's folder) is recomputed with one line saying why
    (``log`` for other settings, which a shared folder holds normally; a warning on stderr, even
    in a quiet run, for everything else). A result that verifies but cannot be read ends with
    one line naming it; ``force`` recomputes it. The record is written only after the computation
    has finished writing, so an interrupted computation is never reused.

    Concurrent runs sharing the folder (``landscape analyze --raw``): every result has its own
    lock (``.<name>.lock``, ``fcntl.flock``) held while it is verified, computed and recorded;
    a second run waits for the first and then reuses its finished result. A folder that cannot
    be written is used for reading only: a result that must be recomputed there ends with one
    line naming the folder.

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
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                if not self.folder.is_dir():
                    raise _write_refused(e, self.folder, "create the raw-results folder"
                                         ) from None

    def _say(self, text: str) -> None:
        (self.log or (lambda t: print(t, file=sys.stderr, flush=True)))(text)

    def identity(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The :func:`identity` of a result with ``settings`` in this folder."""
        return identity(settings, self.checkpoint_sha256)

    def _stored(self, name: str, ident: Mapping[str, Any], load: Callable[[Path], Any],
                companions: tuple[str, ...]) -> tuple[bool, Any]:
        """(reusable?, loaded result) on the writer, after verifying the record; raises
        LandscapeError (one line) for a verified result that cannot be read."""
        path = self.folder / name
        key_path = self.folder / f"{name}.key.json"
        if self.force or not (path.exists() and key_path.exists()):
            return False, None
        why = self._verify(name, ident, companions)
        if why:
            line = f"{path}: {why}; recomputing it"
            if why.startswith("stored with other settings") and FOREIGN not in why:
                self._say(line)  # a shared folder's other budget: progress, not a warning
            else:  # damaged, swapped, copied or unverifiable: said even in a quiet run
                print(f"landscape: warning: {line}", file=sys.stderr, flush=True)
            return False, None
        try:
            return True, load(path)
        except LandscapeError:
            raise
        except Exception as e:  # noqa: BLE001 - any reader failure becomes one named line
            raise LandscapeError(f"{path}: cached result unreadable ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:120] if str(e) else ''}); "
                                 "rerun with --force to recompute") from None

    def _verify(self, name: str, ident: Mapping[str, Any],
                companions: tuple[str, ...]) -> str | None:
        """Why the stored result may not be reused (None: it may)."""
        key_path = self.folder / f"{name}.key.json"
        try:
            stored = read_json(key_path)
        except (OSError, ValueError) as e:
            return f"its record {key_path.name} is unreadable ({type(e).__name__})"
        if not isinstance(stored, Mapping):
            return f"its record {key_path.name} is not a JSON object"
        diff = differences(stored, ident)
        if diff:
            other = stored.get("checkpoint_sha256")
            return f"stored with other settings ({', '.join(diff)})" + (
                f" ({FOREIGN})" if other is not None and other != ident.get("checkpoint_sha256")
                else "")
        if stored.get("result", name) != name:
            return f"its record names another result ({stored.get('result')})"
        sums = stored.get("sha256")
        if not isinstance(sums, Mapping):
            return "its record has no checksums (written by an older version)"
        for f in (name, *companions):
            if f not in sums:
                return f"its record has no checksum of {f}"
        for f, want in sums.items():
            p = self.folder / str(f)
            if not p.exists():
                return f"{'the file' if f == name else f'its companion {f}'} is missing"
            if tree_sha256(p) != want:
                what = "the file" if f == name else f"its companion {f}"
                return (f"{what} does not match the checksum recorded when it was written "
                        "(damaged, or replaced by another result's file)")
        return None

    def get(self, name: str, settings: Mapping[str, Any], compute: Callable[[Path], Any],
            load: Callable[[Path], Any], companions: tuple[str, ...] = (),
            collective: bool = False, resumable: bool = False) -> tuple[Any, bool]:
        """(result, reused?): ``load`` of the stored result when its record verifies (see the
        class doc), else ``compute(path)`` (which writes ``path`` and the ``companions``) and
        the new record stored beside it. ``load`` must validate what it reads (raise on a torn
        file). ``resumable``: ``compute`` continues a partial ``path`` left by an interrupted
        run with the same identity (recorded in ``<name>.pending.json`` while it runs)."""
        ident = identity(settings, self.checkpoint_sha256)
        with self._locked(name) if self.writer else contextlib.nullcontext(None) as refused:
            return self._get(name, ident, compute, load, companions, collective, resumable,
                             refused)

    def _get(self, name: str, ident: dict[str, Any], compute: Callable[[Path], Any],
             load: Callable[[Path], Any], companions: tuple[str, ...], collective: bool,
             resumable: bool, refused: OSError | None) -> tuple[Any, bool]:
        path = self.folder / name
        key_path = self.folder / f"{name}.key.json"
        reuse, result = self._stored(name, ident, load, companions) if self.writer else (False,
                                                                                          None)
        if self.writer and not reuse and refused is not None:
            raise _write_refused(refused, self.folder, f"recompute {name}")
        if collective:
            from .. import distributed as D
            reuse = bool(D.broadcast_object(reuse))
        if reuse:
            return result, True
        pending = self.folder / f"{name}.pending.json"
        if self.writer:
            # An interrupted computation with the same identity left a partial file: kept, the
            # computation continues it (spectrum and surface files resume); anything else goes.
            keep = (resumable and not self.force and pending.is_file() and path.exists()
                    and _same(pending, ident))
            try:
                for p in (key_path, pending, *(() if keep else (path,)),
                          *(self.folder / c for c in companions)):
                    if p.is_dir():
                        shutil.rmtree(p)
                    elif p.exists():
                        p.unlink()
            except OSError as e:
                raise _write_refused(e, self.folder, f"recompute {name}") from None
            if keep:
                self._say(f"continuing the interrupted {path.name}")
            write_json(pending, ident)
        if collective:
            from .. import distributed as D
            D.barrier()
        result = compute(path)
        if self.writer:
            sums = {f: tree_sha256(self.folder / f) for f in (name, *companions)
                    if (self.folder / f).exists()}
            write_json(key_path, {**ident, "result": name, "sha256": sums})
            pending.unlink(missing_ok=True)
        return result, False

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[OSError | None]:
        """Hold ``.<name>.lock`` (an exclusive ``flock``, released when the process ends, even
        by SIGKILL) while a result is verified, computed and recorded; yields None, or for a
        folder that cannot be written the error that said so (no lock taken: reuse only)."""
        import fcntl
        lock = self.folder / f".{name}.lock"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as e:
            if disk_reason(e) in ("permission denied", "read-only file system"):
                yield e
                return
            raise _write_refused(e, self.folder, f"lock {name}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._say(f"waiting for another landscape run that is computing "
                          f"{self.folder / name}")
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield None
        finally:
            os.close(fd)  # releases the lock


def tree_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (names and contents, sorted by name)."""
    if not path.is_dir():
        return file_sha256(path)
    h = hashlib.sha256()
    for f in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0" + file_sha256(f).encode())
    return h.hexdigest()


def _write_refused(e: OSError, folder: Path, what: str) -> LandscapeError:
    reason = disk_reason(e) or (e.strerror or str(e)).lower()
    return LandscapeError(f"cannot {what} in {folder}: {reason}; make the folder writable "
                          "(or free space on it) or use another --raw")


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
            cfg = stored.get("config") if isinstance(stored, Mapping) else getattr(
                stored, "config", None)  # a JSON result records it under "config" too
            old = (cfg or {}).get("identity")
        check(path, f"a {what} result", old, self.identity(settings), self.remedy)
        return stored, True


def _same(path: Path, ident: Mapping[str, Any]) -> bool:
    try:
        return not differences(read_json(path), ident)
    except (OSError, ValueError):
        return False


__all__ = ["COMPARED_VERSIONS", "RESUME_HINT", "ResultCache", "ResultFolder", "check",
           "differences", "identity", "mismatch_message", "plain", "tree_sha256"]
