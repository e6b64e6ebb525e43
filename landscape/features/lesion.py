"""Lesion study (Fig. 10): test accuracy with one residual block removed at a time.

A block is removed by :func:`models.lesioned`, which makes its residual branch output zeros, so
the block's output equals its skip input (the paper's Fig. 10 lesion study; its code is not in
xxxnell/how-do-vits-work). Only blocks with a residual branch are lesioned; the
depth of each is its position in ``[input] + block list`` divided by the number of blocks.
Per-image correctness (intact and per lesion, ``correct``) is kept for the bootstrap in
:mod:`landscape.claims`.
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
from .streaming import data_description, evaluate_images, normalized_depths


@dataclass
class LesionResult(JsonResult):
    """Accuracy and loss with each residual block removed, plus the intact baseline."""

    KIND = "lesion"
    DERIVED = ("drop",)

    names: list[str]
    kinds: list[str]
    stages: list[int]
    depth: list[float]
    accuracy: list[float]
    loss: list[float]
    baseline_accuracy: float
    baseline_loss: float
    n_images: int
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    not_residual: list[str] = field(default_factory=list)
    correct: list[list[int]] = field(default_factory=list)  # [intact] + per lesion, per image

    @property
    def drop(self) -> np.ndarray:
        """Accuracy drop (baseline - lesioned) per removed block."""
        return self.baseline_accuracy - np.asarray(self.accuracy)


def lesion_study(model: nn.Module, data: Any, block_list: Sequence | None = None,
                 samples: int | None = None, batch_size: int = 256,
                 device: torch.device | None = None, progress: bool = False) -> LesionResult:
    """Baseline accuracy, then accuracy with each residual block's branch zeroed in turn."""
    import landscape_models as models
    from tqdm import tqdm
    bl = models.blocks(model) if block_list is None else list(block_list)
    depths = normalized_depths(len(bl))
    base_acc, base_loss, n, base_hits = evaluate_images(model, data, samples, batch_size, device)
    res = [(i, b) for i, b in enumerate(bl) if b.branch is not None]
    if not res:
        raise LandscapeError("the block list has no residual block to lesion")
    acc, loss, hits = [], [], [base_hits]
    for _i, b in tqdm(res, desc="lesion", unit="block", disable=not progress):
        with models.lesioned(b):
            a, lo, _, h = evaluate_images(model, data, samples, batch_size, device)
        acc.append(a)
        loss.append(lo)
        hits.append(h)
    from ..store.provenance import run_metadata
    cfg = {"analysis": "lesion", "samples": samples, "batch_size": batch_size,
           "data": data_description(data),
           "lesion": "residual branch output replaced by zeros (models.lesioned)"}
    return LesionResult([b.name for _, b in res], [b.kind for _, b in res],
                        [int(b.stage) for _, b in res], [float(depths[i + 1]) for i, _ in res],
                        acc, loss, base_acc, base_loss, n, cfg, None, run_metadata(),
                        [b.name for b in bl if b.branch is None], hits)
