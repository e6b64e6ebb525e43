"""Representational similarity: mini-batch linear CKA between all block outputs (Fig. 10).

Linear kernel ``K = X Xᵀ`` on a block's output flattened per image (all elements, class token
included). Two HSIC estimators on a batch of n images:

* ``"unbiased"`` (Song et al. 2012; used by Nguyen et al. 2021 for mini-batch CKA), n >= 4::

      HSIC_1(K, L) = [tr(K̃L̃) + 1ᵀK̃1 · 1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2) · 1ᵀK̃L̃1] / (n(n-3))

  with K̃, L̃ the Gram matrices with their diagonals set to zero;
* ``"biased"``: ``HSIC_0(K, L) = tr(KHLH) / (n-1)²`` (H the centring matrix), n >= 2.

Mini-batch CKA (Nguyen et al. 2021, eq. 3) averages HSIC over the k batches before the ratio::

      CKA(K, L) = mean_i HSIC(K_i, L_i) / sqrt(mean_i HSIC(K_i, K_i) · mean_i HSIC(L_i, L_i))

For a single batch the biased variant equals the usual full-batch linear CKA
(:func:`linear_cka`); the unbiased one equals debiased CKA. Only sums of HSIC values (an L×L
matrix) are kept between batches, plus each batch's HSIC matrix (``hsic_batches``, 7 significant
digits) so :mod:`landscape.claims` can bootstrap over batches. A batch too small for the
estimator is skipped with a warning. (The paper has no CKA notebook; Fig. 10's representational
similarity follows Nguyen et al. 2021, as here.)
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..errors import LandscapeError
from ..settings import CKASettings
from ..store.provenance import JsonResult
from .streaming import data_description, normalized_depths, stream_block_outputs

ESTIMATORS = ("unbiased", "biased")


def gram_linear(x: torch.Tensor) -> torch.Tensor:
    """Linear-kernel Gram matrix ``X Xᵀ`` of (n, ...) features flattened per row (float64)."""
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    return x @ x.T


def hsic_matrix(grams: Sequence[torch.Tensor] | torch.Tensor,
                estimator: str = CKASettings.estimator) -> torch.Tensor:
    """HSIC between every pair of (n, n) Gram matrices: a (L, L) float64 matrix."""
    g = torch.stack(list(grams)) if not isinstance(grams, torch.Tensor) else grams
    g = g.to(torch.float64)
    n = g.shape[-1]
    if estimator == "unbiased":
        if n < 4:
            raise LandscapeError(f"the unbiased HSIC needs at least 4 samples, got {n}")
        gt = g.clone()
        gt.diagonal(dim1=-2, dim2=-1).zero_()
        flat = gt.reshape(gt.shape[0], -1)
        tr = flat @ flat.T  # tr(K̃ L̃) for symmetric Gram matrices
        s = gt.sum(dim=(-2, -1))
        r = gt.sum(dim=-1)  # row sums, (L, n)
        return (tr + torch.outer(s, s) / ((n - 1) * (n - 2))
                - 2.0 / (n - 2) * (r @ r.T)) / (n * (n - 3))
    if estimator == "biased":
        if n < 2:
            raise LandscapeError(f"the biased HSIC needs at least 2 samples, got {n}")
        gc = g - g.mean(dim=-1, keepdim=True)
        gc = gc - gc.mean(dim=-2, keepdim=True)  # H K H
        flat = gc.reshape(gc.shape[0], -1)
        return (flat @ flat.T) / (n - 1) ** 2
    raise LandscapeError(f"estimator must be one of {ESTIMATORS}, not {estimator!r}")


def hsic(k: torch.Tensor, l: torch.Tensor,  # noqa: E741 (the paper's K, L; public keyword)
         estimator: str = CKASettings.estimator) -> float:
    """HSIC of two Gram matrices."""
    return float(hsic_matrix([k, l], estimator)[0, 1])


def cka_from_hsic(h: torch.Tensor | np.ndarray) -> np.ndarray:
    """CKA matrix from an (L, L) matrix of (summed or averaged) HSIC values."""
    h = np.asarray(h, dtype=np.float64)
    d = np.sqrt(np.clip(np.diag(h), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        return h / np.outer(d, d)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Full-batch linear CKA (Kornblith et al. 2019), feature-space form:
    ``||Yᵀ X||_F² / (||Xᵀ X||_F ||Yᵀ Y||_F)`` on column-centred X, Y."""
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    y = y.reshape(y.shape[0], -1).to(torch.float64)
    x = x - x.mean(0)
    y = y - y.mean(0)
    num = (y.T @ x).pow(2).sum()
    return float(num / ((x.T @ x).norm() * (y.T @ y).norm()))


class MinibatchCKA:
    """Streaming mini-batch CKA between L representations (sums of HSIC over batches)."""

    def __init__(self, n_features: int, estimator: str = CKASettings.estimator):
        if estimator not in ESTIMATORS:
            raise LandscapeError(f"estimator must be one of {ESTIMATORS}, not {estimator!r}")
        self.estimator = estimator
        self.sum = torch.zeros(n_features, n_features, dtype=torch.float64)
        self.batches = 0
        self.images = 0
        self.skipped_images = 0
        self.per_batch: list[np.ndarray] = []

    def update(self, features: Sequence[torch.Tensor]) -> None:
        """Add one batch: the L representations of the same n images."""
        n = features[0].shape[0]
        if n < (4 if self.estimator == "unbiased" else 2):
            warnings.warn(f"skipping a batch of {n} images: too small for the "
                          f"{self.estimator} HSIC estimator", stacklevel=2)
            self.skipped_images += n
            return
        h = hsic_matrix([gram_linear(f) for f in features], self.estimator).cpu()
        self.sum += h
        self.per_batch.append(h.numpy().copy())
        self.batches += 1
        self.images += n

    def value(self) -> np.ndarray:
        """(L, L) CKA matrix."""
        if self.batches == 0:
            raise LandscapeError("no batch accumulated")
        return cka_from_hsic(self.sum / self.batches)


@dataclass
class CKAResult(JsonResult):
    """Mini-batch linear CKA between all pairs of block outputs."""

    KIND = "cka"

    names: list[str]
    kinds: list[str]
    stages: list[int]
    depth: list[float]
    cka: list[list[float]]
    estimator: str
    n_images: int
    n_batches: int
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    hsic_batches: list[list[list[float]]] = field(default_factory=list)  # (batch, L, L)

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.cka, dtype=np.float64)


def cka_analysis(model: nn.Module, data: Any, block_list: Sequence | None = None,
                 samples: int | None = None, batch_size: int = CKASettings.batch_size,
                 device: torch.device | None = None, estimator: str = CKASettings.estimator,
                 progress: bool = False) -> CKAResult:
    """Mini-batch linear CKA between every pair of block outputs (flattened per image);
    defaults: :class:`~landscape.settings.CKASettings`' (as ``landscape cka`` and ``analyze``)."""
    import landscape_models as models
    full = models.blocks(model) if block_list is None else list(block_list)
    depths = normalized_depths(len(full))[1:]
    depths = [d for d, b in zip(depths, full, strict=True) if b.refused is None]
    bl = models.readable(full)  # blocks whose stream cannot be observed are not compared
    acc = MinibatchCKA(len(bl), estimator)
    for _x, _y, outs in stream_block_outputs(model, data, bl, samples, batch_size, device,
                                             progress, desc="cka"):
        acc.update([outs[b.name] for b in bl])
    from ..store.provenance import run_metadata
    cfg = {"analysis": "cka", "estimator": estimator, "samples": samples,
           "batch_size": batch_size, "data": data_description(data),
           "kernel": "linear on each block output flattened per image",
           "skipped_images": acc.skipped_images}
    return CKAResult([b.name for b in bl], [b.kind for b in bl], [int(b.stage) for b in bl],
                     [float(d) for d in depths], acc.value().tolist(), estimator,
                     acc.images, acc.batches, cfg, None, run_metadata(),
                     [[[float(f"{v:.7g}") for v in row] for row in h.tolist()]
                      for h in acc.per_batch])
