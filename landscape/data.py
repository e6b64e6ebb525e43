"""Image datasets as in-memory tensors: Fashion-MNIST, CIFAR-10/100, ImageFolder trees.

A dataset is decoded once into a uint8 array (cached in-process, keyed by file path, size and
mtime), then turned into one normalized float32 tensor ``(N, C, H, W)``; epochs only index it.

Where the files are looked for (``root`` argument, else ``$LANDSCAPE_DATA``, else the default):

* ``fashion-mnist``: the folder holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``,
  or its sub-folder ``fashion-mnist/``. Default ``/usr/share/datasets/fashion-mnist`` (Debian
  package ``dataset-fashion-mnist``). When ``$LANDSCAPE_DATA`` holds no copy, the default
  folder is still tried; an explicit ``root`` is never second-guessed.
* ``cifar10`` / ``cifar100``: a folder holding the extracted ``cifar-10-batches-py/`` /
  ``cifar-100-python/`` or the archive ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``
  (also accepted: ``root`` being the extracted folder or the archive itself, or a sub-folder
  ``cifar10/`` / ``cifar100/``). Default ``$XDG_CACHE_HOME/landscape/data`` (``~/.cache/...``);
  ``download=True`` fetches the official archive there (md5 verified).
* ``imagefolder``: ``root/<class>/<image>`` (classes sorted by name), or ``root/<split>/<class>/
  <image>`` when ``root/train`` or ``root/test`` exists.

Normalization: ``images = (pixels / 255 - mean) / std`` per channel; ``ImageData.mean/std`` are
the values actually applied (zeros/ones when ``normalize=False``).
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import io
import math
import os
import pickle
import struct
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from .errors import LandscapeError
from .validate import subset_value

PathLike = Union[str, os.PathLike]

ENV_VAR = "LANDSCAPE_DATA"
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                    ".webp")


@dataclass(frozen=True)
class DatasetSpec:
    """What a model needs to know about a dataset: classes, channels, size, normalization."""
    name: str
    num_classes: int
    in_chans: int
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


_SPECS = {
    "fashion-mnist": DatasetSpec("fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,)),
    "cifar10": DatasetSpec("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465),
                           (0.2470, 0.2435, 0.2616)),
    "cifar100": DatasetSpec("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409),
                            (0.2673, 0.2564, 0.2762)),
}
_ALIASES = {"fashion-mnist": "fashion-mnist", "fashion_mnist": "fashion-mnist",
            "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
            "cifar10": "cifar10", "cifar-10": "cifar10", "cifar_10": "cifar10",
            "cifar100": "cifar100", "cifar-100": "cifar100", "cifar_100": "cifar100",
            "imagefolder": "imagefolder", "image-folder": "imagefolder",
            "image_folder": "imagefolder"}


def names() -> list[str]:
    """Dataset names ``load_dataset`` knows."""
    return ["fashion-mnist", "cifar10", "cifar100", "imagefolder"]


def canonical_name(name: str) -> str:
    """The canonical spelling of a dataset name (``CIFAR-10`` -> ``cifar10``)."""
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise LandscapeError(f"unknown dataset {name!r}; known datasets: {', '.join(names())}")
    return _ALIASES[key]


def dataset_spec(name: str) -> DatasetSpec:
    """Classes, channels, image size and published mean/std of a named dataset."""
    canon = canonical_name(name)
    if canon == "imagefolder":
        raise LandscapeError("imagefolder has no fixed spec; load it with "
                             "load_dataset('imagefolder', root=PATH) and use ImageData.spec")
    return _SPECS[canon]


# --------------------------------------------------------------------------------------------
# ImageData


@dataclass(eq=False, repr=False)
class ImageData:
    """A labelled image set held as tensors: ``images`` float32 (N,C,H,W), ``labels`` int64 (N,).

    ``indices`` are the positions of the images in the full split (None when it is the whole
    split), ``seed`` the seed that chose them; ``mean``/``std`` the normalization applied.
    """
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    name: str
    split: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    indices: Optional[np.ndarray] = None
    seed: int = 0
    classes: Optional[tuple[str, ...]] = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return (f"ImageData({self.name!r}, split={self.split!r}, n={len(self)}, "
                f"shape={tuple(self.images.shape[1:])}, classes={self.num_classes}, "
                f"device={self.images.device}, subset={'yes' if self.indices is not None else 'no'}"
                f", seed={self.seed})")

    @property
    def spec(self) -> DatasetSpec:
        """The DatasetSpec of this data (normalization = the one applied)."""
        return DatasetSpec(self.name, self.num_classes, int(self.images.shape[1]),
                           int(self.images.shape[-1]), tuple(self.mean), tuple(self.std))

    @property
    def device(self) -> torch.device:
        return self.images.device

    def _replace(self, **kw: Any) -> "ImageData":
        fields = dict(images=self.images, labels=self.labels, num_classes=self.num_classes,
                      name=self.name, split=self.split, mean=self.mean, std=self.std,
                      indices=self.indices, seed=self.seed, classes=self.classes)
        fields.update(kw)
        return ImageData(**fields)

    def to(self, device: Union[torch.device, str]) -> "ImageData":
        """The same data with images and labels on ``device``."""
        device = torch.device(device)
        return self._replace(images=self.images.to(device), labels=self.labels.to(device))

    def take(self, n: int) -> "ImageData":
        """The first ``n`` images (all of them when ``n >= len``); indices recorded."""
        n = int(n)
        if n < 0:
            raise LandscapeError(f"cannot take a negative number of images ({n})")
        n = min(n, len(self))
        base = self.indices if self.indices is not None else np.arange(len(self), dtype=np.int64)
        return self._replace(images=self.images[:n], labels=self.labels[:n], indices=base[:n].copy())

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> "Batches":
        """Iterator of ``(x, y)`` mini-batches; with ``shuffle`` the order is a seeded permutation."""
        return Batches(self.images, self.labels, batch_size, shuffle, seed, drop_last)


class Batches:
    """Iterator over ``(x, y)`` mini-batches with a length (number of batches)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool,
                 seed: int, drop_last: bool) -> None:
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise LandscapeError(f"batch size must be a positive integer, got {batch_size!r}")
        self.images, self.labels = images, labels
        self.batch_size = int(batch_size)
        n = int(labels.shape[0])
        self.order: Optional[torch.Tensor] = None
        if shuffle:
            gen = torch.Generator().manual_seed(int(seed))
            self.order = torch.randperm(n, generator=gen).to(images.device)
        self.stops = n - n % self.batch_size if drop_last else n
        self.pos = 0

    def __len__(self) -> int:
        return math.ceil(self.stops / self.batch_size)

    def __iter__(self) -> "Batches":
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos >= self.stops:
            raise StopIteration
        i, j = self.pos, min(self.pos + self.batch_size, self.stops)
        self.pos = j
        if self.order is None:
            return self.images[i:j], self.labels[i:j]
        idx = self.order[i:j]
        return self.images.index_select(0, idx), self.labels.index_select(0, idx)


# --------------------------------------------------------------------------------------------
# Loading


def load_dataset(name: str, split: str = "train", root: Optional[PathLike] = None,
                 subset: Union[None, int, float, str] = None, seed: int = 0,
                 normalize: Union[bool, tuple[Sequence[float], Sequence[float]]] = True,
                 download: bool = False, *, img_size: Union[None, int, tuple[int, int]] = None,
                 url: Optional[str] = None, md5: Optional[str] = None,
                 progress: bool = True) -> ImageData:
    """Load a dataset split as normalized tensors, optionally a seeded stratified subset.

    ``subset``: None (all), a fraction in (0, 1], or a count of images (an int, or a string
    such as ``"500"``, ``"0.1"``, ``"10%"``); the per-class proportions are kept.
    ``normalize``: True (the dataset's published mean/std; for imagefolder the stats of the
    loaded split), False (pixels / 255), or an explicit ``(mean, std)``.
    ``img_size`` (imagefolder): resize the shorter side and center-crop to this size.
    ``url``/``md5`` (CIFAR with ``download=True``): override the official archive and checksum.
    """
    canon = canonical_name(name)
    if split not in ("train", "test"):
        raise LandscapeError(f"unknown split {split!r}; use 'train' or 'test'")
    if canon == "fashion-mnist":
        u8, labels = _fashion_mnist(split, root)
        num_classes, classes = 10, FASHION_MNIST_CLASSES
    elif canon in ("cifar10", "cifar100"):
        u8, labels, classes = _cifar(canon, split, root, download, url, md5, progress)
        num_classes = _SPECS[canon].num_classes
    else:
        if root is None:
            raise LandscapeError("imagefolder needs a root folder (--data-root PATH) laid out as "
                                 "PATH/<class>/<image>")
        u8, labels, classes = _image_folder(Path(root), split, img_size)
        num_classes = len(classes)
    if img_size is not None and canon != "imagefolder":
        native = (_SPECS[canon].img_size,) * 2
        if (tuple(img_size) if not isinstance(img_size, int) else (img_size,) * 2) != native:
            raise LandscapeError(f"{canon} images are {native[0]}x{native[1]}; img_size only "
                                 "resizes imagefolder data")
    chans = u8.shape[1]
    indices = subset_indices(labels, subset, seed, num_classes)

    if normalize is True:
        if canon == "imagefolder":
            mean, std = _channel_stats(u8)
        else:
            mean, std = _SPECS[canon].mean, _SPECS[canon].std
    elif normalize is False or normalize is None:
        mean, std = (0.0,) * chans, (1.0,) * chans
    else:
        try:
            mean = tuple(float(v) for v in normalize[0])
            std = tuple(float(v) for v in normalize[1])
        except (TypeError, ValueError, IndexError):
            raise LandscapeError("normalize must be True, False or (mean, std), "
                                 f"got {normalize!r}") from None
        if len(mean) == 1 and chans > 1:
            mean, std = mean * chans, std * chans
        if len(mean) != chans or len(std) != chans or min(std) <= 0:
            raise LandscapeError(f"normalize needs {chans} means and {chans} positive stds, "
                                 f"got mean={mean} std={std}")
    mean = tuple(float(v) for v in mean)
    std = tuple(float(v) for v in std)

    if indices is not None:
        u8, labels = u8[indices], labels[indices]
    images = to_float_tensor(u8, mean, std)
    return ImageData(images=images, labels=torch.from_numpy(labels.astype(np.int64)),
                     num_classes=int(num_classes), name=canon, split=split, mean=mean, std=std,
                     indices=indices, seed=int(seed), classes=tuple(classes))


def to_float_tensor(u8: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(u8 / 255 - mean) / std`` per channel as a float32 tensor (N, C, H, W)."""
    x = torch.from_numpy(np.asarray(u8).astype(np.float32))
    x.div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


def _channel_stats(u8: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = u8.mean(axis=(0, 2, 3), dtype=np.float64) / 255.0
    std = u8.std(axis=(0, 2, 3), dtype=np.float64) / 255.0
    std = np.where(std > 0, std, 1.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _parse_subset(subset: Union[None, int, float, str], n: int) -> Optional[int]:
    """The number of images a subset value asks for (None = all); see
    :func:`landscape.validate.subset_value` for the accepted forms."""
    value = subset_value(subset)
    if value is None:
        return None
    if isinstance(value, int):
        if value > n:
            warnings.warn(f"subset of {value} images asked for but the split has {n}; "
                          "using all of them", stacklevel=3)
            return None
        return None if value == n else value
    k = max(1, int(round(value * n)))
    return None if k >= n else k


def subset_indices(labels: np.ndarray, subset: Union[None, int, float, str], seed: int,
                   num_classes: Optional[int] = None) -> Optional[np.ndarray]:
    """Sorted indices of a seeded, class-stratified subset (None = the whole set).

    Each class gets its share of the requested size (largest-remainder rounding, so the
    total is exact), drawn without replacement with ``numpy.random.default_rng(seed)``.
    """
    labels = np.asarray(labels)
    n = int(labels.shape[0])
    k = _parse_subset(subset, n)
    if k is None:
        return None
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * (k / n)
    take = np.floor(quota).astype(np.int64)
    rest = k - int(take.sum())
    if rest > 0:
        order = np.argsort(-(quota - take), kind="stable")
        take[order[:rest]] += 1
    rng = np.random.default_rng(int(seed))
    chosen = []
    for c, t in zip(classes, take):
        if t > 0:
            members = np.flatnonzero(labels == c)
            chosen.append(rng.permutation(members)[:t])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def clear_cache() -> None:
    """Forget the decoded arrays kept in this process."""
    _decode_idx_pair.cache_clear()
    _decode_cifar.cache_clear()
    _decode_image_folder.cache_clear()


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


# ---------------------------------------------------------------------------------- IDX


_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: PathLike, ndim: Optional[int] = None) -> np.ndarray:
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


def _find_idx(folder: Path, stem: str) -> Optional[Path]:
    for cand in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz",
                 stem.replace("-idx", ".idx")):
        p = folder / cand
        if p.is_file():
            return p
    return None


def _candidate_dirs(root: Optional[PathLike], sub: Sequence[str],
                    default: Optional[Path]) -> list[Path]:
    """Folders to search: root (and root/<sub>), else $LANDSCAPE_DATA (and sub), then default."""
    if root is not None:
        base = [Path(root).expanduser()]
    else:
        env = os.environ.get(ENV_VAR)
        base = [Path(env).expanduser()] if env else []
    dirs = []
    for b in base:
        dirs.append(b)
        dirs.extend(b / s for s in sub)
    if root is None and default is not None:
        dirs.append(default)
    return dirs


def _fashion_mnist(split: str, root: Optional[PathLike]) -> tuple[np.ndarray, np.ndarray]:
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


# ---------------------------------------------------------------------------------- CIFAR


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


def _locate_cifar(canon: str, root: Optional[PathLike]) -> tuple[Optional[Path], list[Path]]:
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


def _cifar(canon: str, split: str, root: Optional[PathLike], download: bool, url: Optional[str],
           md5: Optional[str], progress: bool) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    c = _CIFAR[canon]
    found, looked = _locate_cifar(canon, root)
    if found is None:
        dest_dir = looked[0] if looked else default_cache_root()
        if not download:
            raise LandscapeError(
                f"{c['title']} not found (looked for {c['folder']}/ or {c['archive']} in "
                f"{', '.join(map(str, looked))}); pass download=True (--download) to fetch it "
                f"into {dest_dir}, or point --data-root / ${ENV_VAR} at the folder or archive")
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


# ---------------------------------------------------------------------------------- ImageFolder


def _image_folder(root: Path, split: str,
                  img_size: Union[None, int, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray,
                                                                       tuple[str, ...]]:
    if not root.is_dir():
        raise LandscapeError(f"image folder {root} does not exist (expected {root}/<class>/<image>)")
    if (root / split).is_dir():
        base = root / split
    elif (root / "train").is_dir() or (root / "test").is_dir():
        raise LandscapeError(f"image folder {root} has train/test sub-folders but no {split}/")
    else:
        base = root
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise LandscapeError(f"no class folders in {base} (expected {base}/<class>/<image>)")
    files: list[tuple[str, int, int]] = []
    labels = []
    for i, cls in enumerate(classes):
        found = sorted(p for p in (base / cls).iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            raise LandscapeError(f"class folder {base / cls} holds no images "
                                 f"({', '.join(IMAGE_EXTENSIONS)})")
        files.extend(_file_key(p) for p in found)
        labels.extend([i] * len(found))
    if isinstance(img_size, int):
        size: Optional[tuple[int, int]] = (img_size, img_size)
    elif img_size is None:
        size = None
    else:
        size = (int(img_size[0]), int(img_size[1]))
    if size is not None and min(size) < 1:
        raise LandscapeError(f"img_size must be positive, got {img_size!r}")
    u8 = _decode_image_folder(tuple(files), size)
    return u8, _frozen(np.asarray(labels, dtype=np.int64)), tuple(classes)


def _resize_center_crop(img: Any, size: tuple[int, int]) -> Any:
    from PIL import Image

    h, w = size
    if img.height == h and img.width == w:
        return img
    scale = max(h / img.height, w / img.width)
    nh, nw = max(h, round(img.height * scale)), max(w, round(img.width * scale))
    img = img.resize((nw, nh), Image.BILINEAR)
    top, left = (nh - h) // 2, (nw - w) // 2
    return img.crop((left, top, left + w, top + h))


@functools.lru_cache(maxsize=4)
def _decode_image_folder(files: tuple[tuple[str, int, int], ...],
                         size: Optional[tuple[int, int]]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    arrays = []
    for path, _, _ in files:
        try:
            # PIL warns above MAX_IMAGE_PIXELS and raises above twice that: refuse both
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    im.load()
                    gray = im.mode in ("1", "L", "LA", "I", "I;16", "F")
                    im = im.convert("L" if gray else "RGB")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise LandscapeError(f"refusing image {path}: {e}".replace(
                "could be decompression bomb DOS attack.",
                "a possible decompression bomb")) from None
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise LandscapeError(f"cannot decode image {path}: {e}") from None
        if size is not None:
            im = _resize_center_crop(im, size)
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    for (path, _, _), a in zip(files, arrays):
        if a.shape[1:] != arrays[0].shape[1:]:
            raise LandscapeError(f"images differ in size ({arrays[0].shape[2]}x{arrays[0].shape[1]}"
                                 f" in {files[0][0]}, {a.shape[2]}x{a.shape[1]} in {path}); pass "
                                 "img_size to resize and center-crop them")
    if any(a.shape[0] == 3 for a in arrays):
        arrays = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in arrays]
    return _frozen(np.stack(arrays))


# --------------------------------------------------------------------------------------------
# Augmentation


class Augment:
    """The paper's training augmentation on a normalized batch: random pad-and-crop, random flip.

    Padding is zero in pixel space, i.e. the normalized value ``-mean/std`` per channel when
    ``mean``/``std`` are given (pass ``data.mean, data.std``); without them the padding is 0
    in the normalized space (the mean pixel). ``mixup_alpha``/``cutmix_alpha`` are kept for
    ``Augment.mix``; ``__call__`` never mixes (mixing changes the targets).
    """

    def __init__(self, pad: int = 4, flip: bool = True, mixup_alpha: float = 0.0,
                 cutmix_alpha: float = 0.0, mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None) -> None:
        if int(pad) != pad or pad < 0:
            raise LandscapeError(f"pad must be a non-negative integer, got {pad!r}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise LandscapeError("mixup/cutmix alpha must be >= 0")
        self.pad, self.flip = int(pad), bool(flip)
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        if (mean is None) != (std is None):
            raise LandscapeError("give both mean and std for the padding value, or neither")
        self.mean = None if mean is None else tuple(float(v) for v in mean)
        self.std = None if std is None else tuple(float(v) for v in std)

    def __repr__(self) -> str:
        return (f"Augment(pad={self.pad}, flip={self.flip}, mixup_alpha={self.mixup_alpha}, "
                f"cutmix_alpha={self.cutmix_alpha}, mean={self.mean}, std={self.std})")

    def fill_value(self, channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The padding value per channel, shape (C,): ``-mean/std`` or zeros."""
        if self.mean is None:
            return torch.zeros(channels, device=device, dtype=dtype)
        m = torch.tensor(self.mean, dtype=torch.float64)
        s = torch.tensor(self.std, dtype=torch.float64)
        fill = (-m / s).to(device=device, dtype=dtype)
        return fill.expand(channels) if fill.numel() == 1 else fill

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Randomly shifted (by up to ``pad`` pixels, zero-filled) and flipped copy of ``x``."""
        if x.dim() != 4:
            raise LandscapeError(f"Augment expects a batch (N, C, H, W), got shape {tuple(x.shape)}")
        b, c, h, w = x.shape
        gdev = generator.device if generator is not None else torch.device("cpu")
        out = x
        if self.pad > 0:
            p = self.pad
            dy = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=gdev).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=gdev).to(x.device)
            fill = self.fill_value(c, x.device, x.dtype).view(1, c, 1, 1)
            padded = fill.expand(b, c, h + 2 * p, w + 2 * p).clone()
            padded[:, :, p:p + h, p:p + w] = x
            rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
            cols = dx[:, None] + torch.arange(w, device=x.device)  # (B, W)
            bi = torch.arange(b, device=x.device)[:, None, None]
            out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # (B,H,W,C)
            out = out.permute(0, 3, 1, 2).contiguous()
        if self.flip:
            flip = torch.rand(b, generator=generator, device=gdev).to(x.device) < 0.5
            out = torch.where(flip.view(b, 1, 1, 1), out.flip(-1), out)
        return out

    def mix(self, x: torch.Tensor, y: torch.Tensor, num_classes: int,
            generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``mix`` with this object's alphas."""
        return mix(x, y, num_classes, self.mixup_alpha, self.cutmix_alpha, generator)


def _beta(alpha: float, generator: Optional[torch.Generator]) -> float:
    """A Beta(alpha, alpha) draw from the generator (inverse CDF of a uniform draw)."""
    from scipy.special import betaincinv

    gdev = generator.device if generator is not None else torch.device("cpu")
    u = float(torch.rand((), generator=generator, device=gdev, dtype=torch.float64))
    return float(betaincinv(alpha, alpha, min(max(u, 1e-12), 1 - 1e-12)))


def mix(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0, generator: Optional[torch.Generator] = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix of a batch with a permutation of itself; returns (x, soft targets).

    One mixing ratio per batch, ``lam ~ Beta(alpha, alpha)``; with both alphas > 0 each batch
    uses one of the two with probability 1/2. CutMix pastes a box of area ``1 - lam`` (clipped
    to the image; ``lam`` is then the kept area). Targets are ``lam * onehot(y) + (1 - lam) *
    onehot(y[perm])`` (``y`` may already be soft, shape (B, K)). Alphas 0: (x, onehot(y)).
    """
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise LandscapeError("mixup/cutmix alpha must be >= 0")
    if y.dim() == 1:
        target = torch.nn.functional.one_hot(y.long(), num_classes).to(x.dtype)
    else:
        target = y.to(x.dtype)
    if mixup_alpha == 0 and cutmix_alpha == 0:
        return x, target
    gdev = generator.device if generator is not None else torch.device("cpu")
    b = x.shape[0]
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cutmix = bool(torch.rand((), generator=generator, device=gdev) < 0.5)
    else:
        use_cutmix = cutmix_alpha > 0
    lam = _beta(cutmix_alpha if use_cutmix else mixup_alpha, generator)
    perm = torch.randperm(b, generator=generator, device=gdev).to(x.device)
    if use_cutmix:
        h, w = x.shape[-2:]
        r = math.sqrt(1.0 - lam)
        ch, cw = int(h * r), int(w * r)
        cy = int(torch.randint(0, h, (), generator=generator, device=gdev))
        cx = int(torch.randint(0, w, (), generator=generator, device=gdev))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        out = x.clone()
        out[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
    else:
        out = lam * x + (1.0 - lam) * x[perm]
    return out, lam * target + (1.0 - lam) * target[perm]
