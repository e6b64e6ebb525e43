"""What a result file records beside its numbers (versions, time, host, file hashes), and the
output folder of a run: created, locked against a second writer, resumed through one guarded
read path. Imports neither torch nor numpy until they are needed.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import hashlib
import json
import os
import platform
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..errors import LandscapeError, disk_error

T = TypeVar("T")
LOCK_NAME = ".landscape.lock"
RESUME_HINT = "delete it or use another --out"


def versions() -> dict[str, str]:
    """Versions of Python, torch, numpy and landscape."""
    import numpy as np
    import torch

    from .. import __version__
    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": np.__version__, "landscape": __version__, "platform": platform.platform()}


def run_metadata(**extra: Any) -> dict[str, Any]:
    """Versions plus a UTC timestamp plus ``extra`` (config, seed, ...)."""
    return {"versions": versions(),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            **extra}


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _default(o: Any) -> Any:
    np = sys.modules.get("numpy")
    torch = sys.modules.get("torch")
    if np is not None:
        if isinstance(o, (np.integer,)):
            return int(o)
        if isinstance(o, (np.floating,)):
            return float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
    if torch is not None and isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def check_output_path(path: str | Path) -> Path:
    """Refuse (LandscapeError) an output folder that is, or would lie under, a file; creates
    nothing (the CLI calls it before a command runs)."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == path else f"lies under the file {p}"
                raise LandscapeError(f"cannot use output folder {path}: it {what}; "
                                     "use another --out")
            break
    return path


def output_dir(path: str | Path, lock: bool = True) -> Path:
    """The output folder of a run, created and (``lock``) locked for this process.

    A path that is, or lies under, a file is refused (LandscapeError), and so is a folder whose
    lock another live process holds (see :func:`lock_output_dir`).
    """
    path = check_output_path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LandscapeError(f"cannot create output folder {path}: "
                             f"{e.strerror or e}; use another --out") from None
    if lock:
        lock_output_dir(path)
    return path


# --------------------------------------------------------------------------- output-folder lock
_HELD: dict[str, Path] = {}


def _lock_text() -> str:
    return f"{os.getpid()} {socket.gethostname()}\n"


def _read_lock(lock: Path) -> tuple[int, str] | None:
    """(pid, host) recorded in a lock file, or None when it is gone, empty or garbled."""
    try:
        pid, host = lock.read_text().split()
        return int(pid), host
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """Whether a process with this PID runs on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _create_exclusive(path: Path) -> bool:
    """Create ``path`` holding our PID atomically; False when it exists already."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as e:
        raise LandscapeError(f"cannot write to output folder {path.parent}: "
                             f"{e.strerror or e}; use another --out") from None
    with os.fdopen(fd, "w") as f:
        f.write(_lock_text())
    return True


def lock_output_dir(path: str | Path) -> Path:
    """Take ``PATH/.landscape.lock`` for this process (O_CREAT|O_EXCL, our PID and host inside).

    Re-entrant within a process. A lock whose process is dead (same host) is taken over, under
    a second exclusive file so that two processes never both take it over. A lock held by a
    live process, or by a process on another host, is refused with one line naming it.
    Locks are released by :func:`release_locks` (at exit at the latest).
    """
    lock = Path(path) / LOCK_NAME
    key = str(lock.resolve())
    if key in _HELD:
        return lock
    me, host = os.getpid(), socket.gethostname()
    for _ in range(5):
        if _create_exclusive(lock):
            _HELD[key] = lock
            return lock
        holder = _read_lock(lock)
        if holder is None:
            if not lock.exists():
                continue  # released meanwhile
            raise LandscapeError(f"output folder {path} is in use by another landscape process "
                                 f"(its lock file {lock} is being written or is damaged); if no "
                                 "other run uses it, delete that file, or use another --out")
        pid, where = holder
        if where != host:
            raise LandscapeError(f"output folder {path} is in use by process {pid} on {where} "
                                 f"(lock file {lock}); use another --out, or delete the lock "
                                 "file if that process is gone")
        if pid != me and _alive(pid):
            raise LandscapeError(f"output folder {path} is in use by another landscape process "
                                 f"(PID {pid}); wait for it to finish or use another --out")
        # stale (dead holder, or an earlier process that had our PID): take it over
        guard = lock.with_name(LOCK_NAME + ".takeover")
        if not _create_exclusive(guard):
            g = _read_lock(guard)
            if g is not None and g[1] == host and not _alive(g[0]):
                guard.unlink(missing_ok=True)  # a taker that died: retry
                continue
            raise LandscapeError(f"output folder {path} is being taken over by another "
                                 "landscape process; use another --out")
        try:
            if _read_lock(lock) == holder:
                lock.unlink(missing_ok=True)
        finally:
            guard.unlink(missing_ok=True)
    raise LandscapeError(f"could not lock output folder {path} ({lock}); use another --out")


def release_locks() -> None:
    """Remove every output-folder lock this process holds."""
    me = os.getpid()
    for key, lock in list(_HELD.items()):
        holder = _read_lock(lock)
        if holder is not None and holder[0] == me:
            with contextlib.suppress(OSError):
                lock.unlink()
        _HELD.pop(key, None)


atexit.register(release_locks)


# --------------------------------------------------------------------------- guarded resume reads
@contextlib.contextmanager
def resume_guard(path: str | Path, what: str, remedy: str = RESUME_HINT) -> Iterator[None]:
    """Run the reading of a file a run resumes from: any failure becomes one LandscapeError
    that names the file, says why, and says what to do (``remedy``: delete it or use another
    --out)."""
    try:
        yield
    except LandscapeError as e:
        msg = str(e)
        if "delete" in msg or "another --out" in msg:
            raise
        raise LandscapeError(f"{msg}; {remedy}") from None
    except Exception as e:  # noqa: BLE001 - corrupt files fail in many ways; each becomes one line
        reason = " ".join(str(e).split()) or type(e).__name__
        raise LandscapeError(f"cannot resume from {path}: not a readable {what} "
                             f"({type(e).__name__}: {reason[:200]}); {remedy}") from None


def read_resume_file(path: str | Path, read: Callable[[Path], T], what: str,
                     remedy: str = RESUME_HINT) -> T:
    """``read(path)`` inside :func:`resume_guard`."""
    with resume_guard(path, what, remedy):
        return read(Path(path))


@contextlib.contextmanager
def atomic_write(path: str | Path, *, copy_existing: bool = False,
                 fsync: bool = False, size: int | None = None) -> Iterator[Path]:
    """The one atomic-write helper: yields a temporary file of a unique name in ``path``'s folder
    (``.<name>.<random>.tmp``: two processes writing the same result never share it) to write;
    when the block ends without an exception the temp file replaces ``path`` (``os.replace``:
    readers see the old file or the new one, never a torn one); on an exception (a full disk
    included) it is deleted and ``path`` is unchanged. ``copy_existing`` starts the temp file as
    a copy of ``path`` (for in-place HDF5 updates); ``fsync`` flushes it to disk before the
    rename. Errors of the file system (no space, no permission) become one
    :class:`~landscape.errors.LandscapeError` naming ``path`` and, given ``size`` (bytes),
    the space the file needs (:func:`disk_error`)."""
    import shutil
    import tempfile
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as e:
        raise (disk_error(e, path) or e) from None
    tmp = Path(name)
    try:
        if copy_existing and path.exists():
            shutil.copyfile(path, tmp)
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # RuntimeError: torch.save on a full disk
        error = disk_error(e, path, f"the file is {_size(size)}" if size else "")
        if error is None:
            raise
        raise error from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_h5(path: str | Path, *, copy_existing: bool = False, fsync: bool = False,
              seal: bool = False, **kwargs: Any) -> Iterator[Any]:
    """An HDF5 file written atomically: yields an ``h5py.File`` held in memory (a new file, or
    with ``copy_existing`` a copy of ``path`` opened for update); when the block ends its bytes
    are written through :func:`atomic_write`. HDF5 itself never writes to the disk, so a full
    disk is one OSError of a plain write (one line, :func:`disk_error`) and no HDF5 handle is
    left open with data it cannot flush (h5py closing such a handle at exit segfaults).
    ``seal``: store the checksum of the file's data in it (:func:`.checksums.seal_h5`; for
    files that are never updated in place)."""
    import io

    import h5py
    path = Path(path)
    buf = io.BytesIO()
    mode = "w"
    if copy_existing and path.exists():
        try:
            buf.write(path.read_bytes())
        except OSError as e:
            raise (disk_error(e, path) or e) from None
        buf.seek(0)
        mode = "r+"
    f = h5py.File(buf, mode, **kwargs)
    try:
        yield f
        if seal:
            from .checksums import seal_h5
            seal_h5(f)
    finally:
        f.close()
    data = buf.getbuffer()
    with atomic_write(path, fsync=fsync, size=data.nbytes) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (:func:`atomic_write`), NaN allowed, numpy/torch values converted."""
    text = json.dumps(obj, indent=2, default=_default)
    with atomic_write(path, size=len(text.encode())) as tmp:
        tmp.write_text(text)


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def read_cache_json(path: str | Path, default: Any, what: str = "cache") -> Any:
    """A JSON file that is only a cache (timings): its content; ``default`` when it is missing,
    and ``default`` with one warning line on stderr when it is unreadable (torn, garbled, not
    of ``default``'s type)."""
    path = Path(path)
    if not path.is_file():
        return default
    try:
        value = read_json(path)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        print(f"landscape: warning: ignoring the unreadable {what} {path} ({type(e).__name__}); "
              "it will be rewritten", file=sys.stderr)
        return default
    if not isinstance(value, type(default)):
        print(f"landscape: warning: ignoring the {what} {path} (not a JSON "
              f"{type(default).__name__}); it will be rewritten", file=sys.stderr)
        return default
    return value


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON values (tuples -> lists, numpy/Path values converted), so that a
    stored identity read back compares equal to a fresh one."""
    return json.loads(json.dumps(obj, sort_keys=True, default=_default))


class JsonResult:
    """Mixin for dataclass results stored as one JSON file tagged with ``KIND``.

    ``DERIVED`` names properties written beside the fields for readers of the raw file; they are
    dropped again on load.
    """

    KIND: ClassVar[str] = ""
    DERIVED: ClassVar[tuple[str, ...]] = ()

    def save(self, path: str | Path) -> Path:
        """Write JSON atomically, with the checksum of its data (:mod:`.checksums`)."""
        from .checksums import seal_json
        write_json(path, seal_json(plain({"kind": self.KIND, **self.__dict__,
                                          **{k: getattr(self, k) for k in self.DERIVED}})))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Any:
        """The result, after checking the checksum of its data (a damaged file: one line)."""
        from .checksums import verify_json
        d = read_json(path)
        if not isinstance(d, dict):
            raise LandscapeError(f"{path} is not a {cls.KIND} result")
        d = verify_json(d, path)
        if d.pop("kind", None) != cls.KIND:
            raise LandscapeError(f"{path} is not a {cls.KIND} result")
        for k in cls.DERIVED:
            d.pop(k, None)
        return cls(**d)
