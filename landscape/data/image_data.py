"""The in-memory dataset type :class:`ImageData` and its mini-batch iterator."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import LandscapeError
from .specs import DatasetSpec


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
    indices: np.ndarray | None = None
    seed: int = 0
    classes: tuple[str, ...] | None = None

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

    def _replace(self, **kw: Any) -> ImageData:
        fields = dict(images=self.images, labels=self.labels, num_classes=self.num_classes,
                      name=self.name, split=self.split, mean=self.mean, std=self.std,
                      indices=self.indices, seed=self.seed, classes=self.classes)
        fields.update(kw)
        return ImageData(**fields)

    def to(self, device: torch.device | str) -> ImageData:
        """The same data with images and labels on ``device``."""
        device = torch.device(device)
        return self._replace(images=self.images.to(device), labels=self.labels.to(device))

    def take(self, n: int) -> ImageData:
        """The first ``n`` images (all of them when ``n >= len``); indices recorded."""
        n = int(n)
        if n < 0:
            raise LandscapeError(f"cannot take a negative number of images ({n})")
        n = min(n, len(self))
        base = self.indices if self.indices is not None else np.arange(len(self), dtype=np.int64)
        return self._replace(images=self.images[:n], labels=self.labels[:n],
                             indices=base[:n].copy())

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Batches:
        """Iterator of ``(x, y)`` mini-batches; with ``shuffle`` the order is a seeded
        permutation."""
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
        self.order: torch.Tensor | None = None
        if shuffle:
            gen = torch.Generator().manual_seed(int(seed))
            self.order = torch.randperm(n, generator=gen).to(images.device)
        self.stops = n - n % self.batch_size if drop_last else n
        self.pos = 0

    def __len__(self) -> int:
        return math.ceil(self.stops / self.batch_size)

    def __iter__(self) -> Batches:
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
