"""Fashion-MNIST: the IDX reader and the decoded train/test splits."""
from __future__ import annotations

import functools
import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import LandscapeError
from .files import ENV_VAR, PathLike, _candidate_dirs, _file_key, _frozen

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")


_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: PathLike, ndim: int | None = None) -> np.ndarray:
    """The array stored in an IDX file (gzipped or plain), with the header checked strictly."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise LandscapeError(f"corrupt or unreadable IDX file {path}: {e}") from None
    if len(raw) < 4:
        raise LandscapeError(f"corrupt IDX file {path}: {len(raw)} bytes, no header")
    zero, code, nd = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _IDX_DTYPES or nd == 0:
        raise LandscapeError(f"corrupt IDX file {path}: bad magic number 0x{raw[:4].hex()}")
    if ndim is not None and nd != ndim:
        raise LandscapeError(f"corrupt IDX file {path}: {nd} dimensions, expected {ndim}")
    head = 4 + 4 * nd
    if len(raw) < head:
        raise LandscapeError(f"corrupt IDX file {path}: truncated header")
    dims = struct.unpack(f">{nd}I", raw[4:head])
    dtype = _IDX_DTYPES[code]
    want = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - head
    if got != want:
        kind = "truncated" if got < want else "trailing bytes in"
        raise LandscapeError(f"corrupt IDX file {path}: {kind} data ({got} bytes, header "
                             f"{'x'.join(map(str, dims))} needs {want})")
    return np.frombuffer(raw, dtype=dtype, offset=head).reshape(dims)


_FMNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                 "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find_idx(folder: Path, stem: str) -> Path | None:
    for cand in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz",
                 stem.replace("-idx", ".idx")):
        p = folder / cand
        if p.is_file():
            return p
    return None


def _fashion_mnist(split: str, root: PathLike | None) -> tuple[np.ndarray, np.ndarray]:
    img_stem, lab_stem = _FMNIST_FILES[split]
    dirs = _candidate_dirs(root, ["fashion-mnist"], Path(FASHION_MNIST_ROOT))
    for d in dirs:
        ip, lp = _find_idx(d, img_stem), _find_idx(d, lab_stem)
        if ip is not None and lp is not None:
            return _decode_idx_pair(_file_key(ip), _file_key(lp))
        if ip is not None or lp is not None:
            missing = lab_stem if ip is not None else img_stem
            raise LandscapeError(f"Fashion-MNIST in {d} lacks {missing}[.gz]; reinstall it "
                                 "(apt-get install --reinstall dataset-fashion-mnist)")
    where = ", ".join(str(d) for d in dirs) or FASHION_MNIST_ROOT
    raise LandscapeError(f"Fashion-MNIST not found (looked for {img_stem}[.gz] in {where}); "
                         "install it with `apt-get install dataset-fashion-mnist`, or point "
                         f"--data-root / ${ENV_VAR} at a folder holding the IDX files")


@functools.lru_cache(maxsize=8)
def _decode_idx_pair(img_key: tuple[str, int, int],
                     lab_key: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(img_key[0], ndim=3)
    labels = read_idx(lab_key[0], ndim=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        bad = img_key[0] if images.dtype != np.uint8 else lab_key[0]
        raise LandscapeError(f"corrupt IDX file {bad}: expected unsigned bytes (type 0x08)")
    if images.shape[0] != labels.shape[0]:
        raise LandscapeError(f"{img_key[0]} holds {images.shape[0]} images but {lab_key[0]} "
                             f"holds {labels.shape[0]} labels")
    if labels.size and labels.max() >= 10:
        raise LandscapeError(f"corrupt IDX file {lab_key[0]}: label {int(labels.max())} >= 10")
    return _frozen(images[:, None].copy()), _frozen(labels.astype(np.int64))
