"""Cost before work: a timed probe per model, an estimate per analysis, and the quick budget's
adaptation to large models.

:func:`probe` times, on the run's own images, one forward pass (seconds per image, eval mode, no
gradients) and one Hessian-vector product (seconds per image, double backward of the NLL under
the MATH attention kernel, as every curvature product is computed). :func:`estimate` turns them
into seconds per analysis by counting what each runner of ``analyze`` does with ``cfg``:

* hessian: ``spectrum_batches`` mini-batches × :data:`PRODUCTS_PER_BATCH` products of
  ``spectrum_batch_size`` images, plus the curvature operator's products (Hutch++ trace, SLQ
  probes × steps, a top-k Lanczos of :data:`PRODUCTS_PER_BATCH`) over ``curvature_samples``;
* surface: planes × grid points forward passes over ``surface_samples`` training images;
* fourier, variance, cka: one pass over ``samples``; robustness: one per noise frequency;
  lesion: one per residual block plus the intact baseline over the lesion images.

:func:`adapt_quick` shrinks the Hessian and surface work of the ``quick`` budget, for every model
of the run alike (the comparison stays like with like), until the most expensive model's
estimate fits :data:`QUICK_TARGET_S`; what changed is recorded in the summary's settings and
stated in the report. Settings the user set explicitly are never changed.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

#: Hessian-vector products per Lanczos solve (top-k and bottom eigenvalue of one mini-batch at
#: the default tolerance): the demo checkpoints took 18-23 (resnet_tiny, vit_tiny and
#: alternet_tiny seed 2, two mini-batches each, ``n_products``); the estimate uses 21 for every
#: model.
PRODUCTS_PER_BATCH = 21
#: The quick budget's target per model, seconds (Hessian + surface; the feature analyses are
#: small): "a few minutes per model on 2 cores".
QUICK_TARGET_S = 180.0
#: The settings :func:`adapt_quick` may halve, in this order, and their floors (below them
#: the verdicts lose their units: 4 spectrum mini-batches are the fewest a per-batch statistic
#: is judged on).
FLOORS = {"spectrum_batches": 4, "curvature_samples": 32, "surface_samples": 128,
          "spectrum_batch_size": 8, "surface_planes": 1}
ADAPTABLE = tuple(FLOORS)


@dataclasses.dataclass(frozen=True)
class Probe:
    """Measured unit costs of one model on this machine."""

    forward_s: float  # seconds per image: eval forward without gradients
    hvp_s: float      # seconds per image: one Hessian-vector product


def _timed(fn: Any, repeats: int = 2) -> float:
    fn()  # warm-up (allocations, lazy modules)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def probe(net: nn.Module, images: torch.Tensor, labels: torch.Tensor,
          forward_images: int = 32, hvp_images: int = 16) -> Probe:
    """Time a forward pass on ``forward_images`` and one Hessian-vector product of the mean NLL
    on ``hvp_images`` of ``images``/``labels`` (the model's train/eval flags are restored)."""
    from .curvature.hessian_operator import math_attention
    from .device import eval_mode
    params = [p for p in net.parameters() if p.requires_grad]
    # standard (row-major) layout: a one-channel batch from an image folder can arrive with
    # channels-last strides, on which CPU double backward through a strided 1x1 conv crashes
    xf = images[:forward_images].clone(memory_format=torch.contiguous_format)
    xh = images[:hvp_images].clone(memory_format=torch.contiguous_format)
    yh = labels[:hvp_images]
    g = torch.Generator().manual_seed(0)
    v = [torch.randn(p.shape, generator=g).to(p) for p in params]

    def forward() -> None:
        with torch.no_grad():
            net(xf)

    def hvp() -> None:
        with math_attention():
            loss = F.cross_entropy(net(xh), yh)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            dot = sum((gr * vv).sum() for gr, vv in zip(grads, v, strict=True))
            torch.autograd.grad(dot, params)

    with eval_mode(net):
        f = _timed(forward) / len(xf)
        h = _timed(hvp, repeats=1) / len(xh)
    return Probe(f, h)


def _points(grid: str, ygrid: str | None) -> int:
    from .surface import parse_grid
    return len(parse_grid(grid)) * (len(parse_grid(ygrid)) if ygrid else 1)


def estimate(p: Probe, cfg: Any, todo: Sequence[str], n_pool: int, n_feat: int, n_lesion: int,
             n_residual: int) -> dict[str, float]:
    """Seconds per analysis in ``todo`` for a model with unit costs ``p`` under ``cfg`` (an
    :class:`~landscape.analyze_config.AnalyzeConfig`); ``n_pool`` training images for the
    Hessian, ``n_feat``/``n_lesion`` test images, ``n_residual`` residual blocks."""
    out: dict[str, float] = {}
    if "hessian" in todo:
        batches = cfg.spectrum_batches or max(1, math.ceil(0.1 * n_pool / cfg.spectrum_batch_size))
        spectrum = batches * PRODUCTS_PER_BATCH * cfg.spectrum_batch_size * p.hvp_s
        products = (cfg.trace_products + cfg.density_probes * cfg.density_steps
                    + (PRODUCTS_PER_BATCH if cfg.top_k else 0))
        out["hessian"] = spectrum + products * cfg.curvature_samples * p.hvp_s
    if "surface" in todo:
        out["surface"] = (max(1, cfg.surface_planes) * _points(cfg.surface_grid, cfg.surface_ygrid)
                          * cfg.surface_samples * p.forward_s)
    passes = {"fourier": 1, "variance": 1, "cka": 1, "robustness": max(1, cfg.robustness_freqs)}
    for a, k in passes.items():
        if a in todo:
            out[a] = k * n_feat * p.forward_s
    if "lesion" in todo:
        out["lesion"] = (n_residual + 1) * n_lesion * p.forward_s
    return out


def heavy_seconds(est: dict[str, float]) -> float:
    """The part of an estimate the quick budget adapts (Hessian and surface)."""
    return est.get("hessian", 0.0) + est.get("surface", 0.0)


def adapt_quick(cfg: Any, cost: Any, fixed: set[str], target: float = QUICK_TARGET_S
                ) -> tuple[Any, dict[str, list[Any]]]:
    """(``cfg`` with smaller Hessian/surface work, ``{setting: [old, new]}``) so that
    ``heavy_seconds(cost(cfg)) <= target``: the :data:`ADAPTABLE` settings are halved in turn
    (round robin, down to :data:`FLOORS`) until the estimate fits or all are at their floors;
    settings in ``fixed`` (set by the user) are left alone. ``cost(cfg)`` is the estimate of the
    most expensive model."""
    changed: dict[str, list[Any]] = {}
    new = cfg
    while heavy_seconds(cost(new)) > target:
        moved = False
        for name in ADAPTABLE:
            old = getattr(new, name)
            if name in fixed or not old or old <= FLOORS[name]:
                continue
            value = max(FLOORS[name], old // 2)
            changed.setdefault(name, [getattr(cfg, name), value])[1] = value
            new = dataclasses.replace(new, **{name: value})
            moved = True
            if heavy_seconds(cost(new)) <= target:
                break
        if not moved:  # everything at its floor
            break
    return new, changed


def format_estimate(label: str, est: dict[str, float]) -> str:
    """One line: the model's estimate per analysis and in total."""
    parts = ", ".join(f"{a} {_dur(s)}" for a, s in est.items())
    return f"{label}: about {_dur(sum(est.values()))} ({parts})"


def _dur(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"
