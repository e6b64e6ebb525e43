"""Feature-map variance per block (Fig. 9): spatial variance per channel and image, averaged.

Matches the paper's ``featuremap_variance.ipynb`` (xxxnell/how-do-vits-work:
``latent.var(dim=[-1, -2]).mean(dim=[0, 1])`` on every block output, class token dropped, tokens
reshaped to a square grid), streamed over many images instead of the notebook's one test batch.

For a block output mapped to a grid ``z`` of shape (B, C, H, W) (tokens reshaped, class token
dropped), the variance over the H*W spatial positions is taken for every image and channel,
then averaged over channels and images (the paper's ``latent.var(dim=[-1, -2]).mean()``; with
torch's default, i.e. the unbiased ``ddof=1`` estimator, unless ``ddof=0`` is asked for).
Streamed with running sums (float64); the standard error is over images of the per-image
channel-averaged variance. The per-image channel-averaged variances are kept (``per_image``,
rounded to 6 significant digits) for the bootstrap in :mod:`landscape.claims`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..errors import LandscapeError
from ..store.provenance import JsonResult
from .fourier import _spatial, changes_from_previous
from .streaming import data_description, kept_rows, stream_block_outputs


def spatial_variance(x: torch.Tensor, ddof: int = 1) -> torch.Tensor:
    """Variance over the spatial axes of (B, C, H, W): a (B, C) tensor (float64)."""
    if x.dim() != 4:
        raise LandscapeError(f"expected (B, C, H, W), got shape {tuple(x.shape)}")
    n = x.shape[-1] * x.shape[-2]
    if n - ddof <= 0:
        raise LandscapeError(f"{n} spatial positions are too few for ddof={ddof}")
    return x.to(torch.float64).flatten(2).var(dim=-1, correction=ddof)


class VarianceAccumulator:
    """Running mean (and standard error over images) of the channel-averaged spatial variance."""

    def __init__(self, ddof: int = 1):
        self.ddof = ddof
        self.s1 = 0.0  # sum over images of the per-image channel mean variance
        self.s2 = 0.0
        self.images = 0
        self.per_image: list[float] = []

    def update(self, x: torch.Tensor) -> None:
        v = spatial_variance(x, self.ddof).mean(dim=1)  # (B,)
        self.per_image.extend(float(f"{a:.6g}") for a in v.tolist())
        self.s1 += float(v.sum())
        self.s2 += float((v * v).sum())
        self.images += x.shape[0]

    @property
    def mean(self) -> float:
        return self.s1 / self.images if self.images else float("nan")

    @property
    def stderr(self) -> float:
        n = self.images
        if n < 2:
            return float("nan")
        var = max(self.s2 / n - self.mean ** 2, 0.0) * n / (n - 1)
        return float(np.sqrt(var / n))


@dataclass
class VarianceResult(JsonResult):
    """Mean spatial feature-map variance per entry ([input] + spatial blocks)."""

    KIND = "variance"

    names: list[str]
    kinds: list[str]
    stages: list[int]
    depth: list[float]
    variance: list[float]
    stderr: list[float]
    n_images: int
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    grid: list[int] = field(default_factory=list)  # spatial side (H) of each entry
    per_image: list[list[float]] = field(default_factory=list)  # per entry, per image

    def changes(self) -> list[dict[str, Any]]:
        """Per entry after the first: change of the variance from the previous entry (and the
        log ratio in ``log_ratio``); ``same_grid`` False where the resolution changed."""
        out = changes_from_previous(self.names, self.kinds, self.variance,
                                    self.grid or [0] * len(self.names))
        for c, i in zip(out, range(1, len(self.names)), strict=True):
            c["log_ratio"] = float(np.log(self.variance[i] / self.variance[i - 1]))
        return out


def variance_analysis(model: nn.Module, data: Any, block_list: Sequence | None = None,
                      samples: int | None = None, batch_size: int = 128,
                      device: torch.device | None = None, ddof: int = 1,
                      include_input: bool = True, progress: bool = False) -> VarianceResult:
    """Mean spatial variance of every spatial block output (and the input) over the images.

    Non-spatial outputs (pooled features, logits) are skipped and listed in ``skipped``.
    """
    import landscape_models as models
    bl = models.blocks(model) if block_list is None else list(block_list)
    accs = {b.name: VarianceAccumulator(ddof) for b in bl}
    inp = VarianceAccumulator(ddof)
    skipped: set[str] = set()
    grids: dict[str, int] = {}
    n = 0
    for x, _y, outs in stream_block_outputs(model, data, bl, samples, batch_size, device,
                                            progress, desc="variance"):
        n += x.shape[0]
        if include_input:
            inp.update(x)
            grids["input"] = int(x.shape[-2])
        for b in bl:
            if b.name in skipped:
                continue
            if b.refused is not None:  # stream not observable: never read at the branch
                skipped.add(b.name)
                continue
            g = _spatial(outs[b.name], b.tokens)
            if g is None or g.shape[-1] * g.shape[-2] <= ddof:
                skipped.add(b.name)
                continue
            accs[b.name].update(g)
            grids[b.name] = int(g.shape[-2])
    rows = kept_rows(bl, skipped, include_input)
    src = {**accs, "input": inp}
    names, kinds, stages, dep = ([r[j] for r in rows] for j in range(4))
    var = [src[name].mean for name in names]
    se = [src[name].stderr for name in names]
    per = [src[name].per_image for name in names]
    from ..store.provenance import run_metadata
    cfg = {"analysis": "variance", "ddof": ddof, "samples": samples, "batch_size": batch_size,
           "include_input": include_input, "data": data_description(data),
           "quantity": "mean over images and channels of the spatial variance of the grid"}
    return VarianceResult(names, kinds, stages, dep, var, se, n, cfg, None, run_metadata(),
                          [b.name for b in bl if b.name in skipped], [grids[k] for k in names], per)
