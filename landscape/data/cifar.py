"""CIFAR-10/100: locating, downloading (md5 verified) and safely decoding the python pickles."""
from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LandscapeError
from .files import ENV_VAR, PathLike, _candidate_dirs, _file_key, _frozen
from .specs import _SPECS

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")


_CIFAR = {
    "cifar10": dict(folder="cifar-10-batches-py", archive="cifar-10-python.tar.gz",
                    train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    meta="batches.meta", label_key=b"labels", names_key=b"label_names",
                    url=lambda: CIFAR10_URL, md5=lambda: CIFAR10_MD5, title="CIFAR-10",
                    sub=["cifar10", "cifar-10"]),
    "cifar100": dict(folder="cifar-100-python", archive="cifar-100-python.tar.gz",
                     train=["train"], test=["test"], meta="meta", label_key=b"fine_labels",
                     names_key=b"fine_label_names", url=lambda: CIFAR100_URL,
                     md5=lambda: CIFAR100_MD5, title="CIFAR-100", sub=["cifar100", "cifar-100"]),
}


def default_cache_root() -> Path:
    """Where CIFAR archives are looked for and downloaded by default."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "landscape" / "data"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and plain containers, and refuses every other class."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
               ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "_codecs":
            import codecs
            return codecs.encode
        if module == "numpy":
            return getattr(np, name)
        try:
            from numpy._core import multiarray, numeric  # numpy >= 2; numpy.core is an alias
        except ImportError:  # numpy < 2
            from numpy.core import multiarray, numeric  # type: ignore[no-redef]
        return getattr(multiarray if module.endswith("multiarray") else numeric, name)


def _safe_unpickle(data: bytes, where: str) -> Any:
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any failure means a bad file
        raise LandscapeError(f"corrupt CIFAR file {where}: {type(e).__name__}: {e}") from None


def _get(d: dict, key: bytes) -> Any:
    if key in d:
        return d[key]
    return d.get(key.decode())


def _cifar_batch(obj: Any, where: str, label_key: bytes,
                 num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(obj, dict):
        raise LandscapeError(f"corrupt CIFAR file {where}: not a dict but {type(obj).__name__}")
    data, labels = _get(obj, b"data"), _get(obj, label_key)
    if data is None or labels is None:
        raise LandscapeError(f"corrupt CIFAR file {where}: no {b'data'!r} or {label_key!r} entry")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        raise LandscapeError(f"corrupt CIFAR file {where}: data is not uint8 (N, 3072)")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise LandscapeError(f"corrupt CIFAR file {where}: {data.shape[0]} images but "
                             f"{labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise LandscapeError(f"corrupt CIFAR file {where}: labels outside 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels


def _locate_cifar(canon: str, root: PathLike | None) -> tuple[Path | None, list[Path]]:
    """The extracted folder or archive holding ``canon`` (None if absent), and where we looked."""
    c = _CIFAR[canon]
    if root is not None and Path(root).is_file():
        return Path(root), [Path(root)]
    dirs = _candidate_dirs(root, c["sub"], default_cache_root())
    for d in dirs:
        if d.name == c["folder"] and (d / c["test"][0]).is_file():
            return d, dirs
        if (d / c["folder"] / c["test"][0]).is_file():
            return d / c["folder"], dirs
        if (d / c["archive"]).is_file():
            return d / c["archive"], dirs
    return None, dirs


def _cifar(canon: str, split: str, root: PathLike | None, download: bool, url: str | None,
           md5: str | None, progress: bool) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    c = _CIFAR[canon]
    found, looked = _locate_cifar(canon, root)
    if found is None:
        dest_dir = looked[0] if looked else default_cache_root()
        if not download:
            raise LandscapeError(
                f"{c['title']} not found (looked for {c['folder']}/ or {c['archive']} in "
                f"{', '.join(map(str, looked))}); re-run with --download (every command but "
                f"alternet-search; download=True in Python) to fetch it into {dest_dir}, or "
                f"point --data-root / ${ENV_VAR} at the folder or archive")
        found = download_archive(url or c["url"](), dest_dir / c["archive"],
                                 md5 or c["md5"](), progress=progress)
    if found.is_file():
        key = _file_key(found)
    else:  # extracted folder: changes to any of its files invalidate the cache
        stats = [f.stat() for m in c[split] + [c["meta"]] if (f := found / m).is_file()]
        key = (str(found.resolve()), max(s.st_mtime_ns for s in stats),
               sum(s.st_size for s in stats))
    return _decode_cifar(canon, split, key)


@functools.lru_cache(maxsize=4)
def _decode_cifar(canon: str, split: str,
                  key: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    c = _CIFAR[canon]
    path = Path(key[0])
    wanted = list(c[split]) + [c["meta"]]
    blobs: dict[str, bytes] = {}
    if path.is_dir():
        for member in wanted:
            p = path / member
            if p.is_file():
                blobs[member] = p.read_bytes()
    else:
        try:
            with tarfile.open(path, "r:*") as tar:
                for info in tar:
                    parts = info.name.split("/")
                    if info.isfile() and len(parts) >= 2 and parts[-2] == c["folder"] \
                            and parts[-1] in wanted:
                        blobs[parts[-1]] = tar.extractfile(info).read()
                        if len(blobs) == len(wanted):
                            break
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise LandscapeError(f"corrupt CIFAR archive {path}: {e}") from None
    missing = [m for m in c[split] if m not in blobs]
    if missing:
        raise LandscapeError(f"{c['title']} at {path} lacks {', '.join(missing)} "
                             f"(expected inside {c['folder']}/)")
    num_classes = _SPECS[canon].num_classes
    parts = [_cifar_batch(_safe_unpickle(blobs[m], f"{path}:{m}"), f"{path}:{m}", c["label_key"],
                          num_classes) for m in c[split]]
    u8 = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0].copy()
    labels = np.concatenate([p[1] for p in parts])
    classes: tuple[str, ...] = CIFAR10_CLASSES if canon == "cifar10" else \
        tuple(str(i) for i in range(num_classes))
    if c["meta"] in blobs:
        meta = _safe_unpickle(blobs[c["meta"]], f"{path}:{c['meta']}")
        got = _get(meta, c["names_key"]) if isinstance(meta, dict) else None
        if isinstance(got, list) and len(got) == num_classes:
            classes = tuple(v.decode() if isinstance(v, bytes) else str(v) for v in got)
    return _frozen(u8), _frozen(labels), classes


def download_archive(url: str, dest: PathLike, md5: str, progress: bool = True,
                     timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` through a temporary file; refuse it unless its md5 matches."""
    from tqdm import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    total = resp.headers.get("Content-Length")
                    with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                              desc=f"download {dest.name}", disable=not progress,
                              file=sys.stderr) as bar:
                        while True:
                            chunk = resp.read(1 << 20)
                            if not chunk:
                                break
                            out.write(chunk)
                            digest.update(chunk)
                            bar.update(len(chunk))
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise LandscapeError(f"download of {url} failed: {e}") from None
        got = digest.hexdigest()
        if got != md5.lower():
            raise LandscapeError(f"checksum mismatch for {url}: expected md5 {md5}, got {got}; "
                                 "the download was deleted")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest
