"""``load_dataset``: a split as normalized tensors, optionally a seeded stratified subset."""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import LandscapeError
from ..validate import subset_value
from .cifar import _cifar, _decode_cifar
from .fashion_mnist import FASHION_MNIST_CLASSES, _decode_idx_pair, _fashion_mnist
from .files import PathLike
from .image_data import ImageData
from .image_folder import _decode_image_folder, _image_folder
from .specs import _SPECS, canonical_name


def load_dataset(name: str, split: str = "train", root: PathLike | None = None,
                 subset: None | int | float | str = None, seed: int = 0,
                 normalize: bool | tuple[Sequence[float], Sequence[float]] = True,
                 download: bool = False, *, img_size: None | int | tuple[int, int] = None,
                 url: str | None = None, md5: str | None = None,
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
    if download and canon not in ("cifar10", "cifar100"):
        raise LandscapeError(f"--download fetches the CIFAR archives only, not {canon} (install "
                             "the IDX files, e.g. Debian's dataset-fashion-mnist, or point "
                             "--data-root at them)" if canon == "fashion-mnist" else
                             f"--download fetches the CIFAR archives only, not {canon}")
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


def _parse_subset(subset: None | int | float | str, n: int) -> int | None:
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


def subset_indices(labels: np.ndarray, subset: None | int | float | str, seed: int,
                   num_classes: int | None = None) -> np.ndarray | None:
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
    for c, t in zip(classes, take, strict=True):
        if t > 0:
            members = np.flatnonzero(labels == c)
            chosen.append(rng.permutation(members)[:t])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def stratified_subset(data: ImageData, n: int, seed: int) -> ImageData:
    """A seeded, class-stratified subset of ``n`` images of ``data`` (the one
    ``load_dataset(subset=n, seed=seed)`` draws from the whole split; :func:`subset_indices`);
    ``data`` itself when ``n`` is 0 or at least its size. Indices are recorded relative to the
    full split."""
    if not n or n >= len(data):
        return data
    idx = subset_indices(np.asarray(data.labels.cpu()), int(n), seed, data.num_classes)
    base = data.indices if data.indices is not None else np.arange(len(data), dtype=np.int64)
    ii = torch.as_tensor(idx, device=data.images.device)
    return data._replace(images=data.images[ii], labels=data.labels[ii], indices=base[idx],
                         seed=int(seed))


def clear_cache() -> None:
    """Forget the decoded arrays kept in this process."""
    _decode_idx_pair.cache_clear()
    _decode_cifar.cache_clear()
    _decode_image_folder.cache_clear()
