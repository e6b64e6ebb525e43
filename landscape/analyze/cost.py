"""Cost before work: a timed probe per model, an estimate per analysis, and the quick budget's
adaptation to large models.

:func:`probe` times, on the run's own images, one forward pass (seconds per image, eval mode, no
gradients) and one Hessian-vector product (seconds per image, double backward of the NLL under
the MATH attention kernel, as every curvature product is computed). :func:`estimate` turns them
into seconds per analysis by counting what each runner of ``analyze`` does with ``cfg``:

* hessian: ``spectrum_batches`` Lanczos runs of :data:`PRODUCTS_PER_BATCH` steps on
  ``spectrum_batch_size`` images, plus the curvature operator's work over ``curvature_samples``
  (Hutch++ products, SLQ probes × steps, the top and the bottom Lanczos of
  :data:`PRODUCTS_PER_BATCH` and :data:`PRODUCTS_BOTTOM` steps); a product's cost is fixed +
  per image, and a Lanczos step also reads its float64 basis (:class:`Probe`);
* surface: planes × grid points forward passes over ``surface_samples`` training images;
* fourier, variance, cka: one pass over ``samples``; robustness: one per noise frequency;
  lesion: one per residual block plus the intact baseline over the lesion images;
  evaluation: test and training accuracy on ``eval_samples`` images each.

:func:`adapt_quick` shrinks the work of the ``quick`` budget, for every model
of the run alike (the comparison stays like with like), until the most expensive model's
estimate fits :data:`QUICK_TARGET_S`; what changed is recorded in the summary's settings and
stated in the report. Settings the user set explicitly are never changed.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

#: Hessian-vector products per Lanczos solve of the top-k (with the most negative eigenvalue of
#: one mini-batch) at the default tolerance: the demo checkpoints took 18-23 per spectrum batch
#: (``n_products``) and 14-25 for the curvature's top-5, a torchvision-style ResNet-18 on
#: Fashion-MNIST 19-32 per batch and 21; the estimate uses 21 for every model.
PRODUCTS_PER_BATCH = 21
#: Products of the curvature's bottom-5 (smallest algebraic) solve, which converges slower: the
#: 27 demo checkpoints took 31-64 (median 44), the ResNet-18 61; the estimate uses 50.
PRODUCTS_BOTTOM = 50
#: The quick budget's target per model, seconds (every analysis and the accuracy evaluations):
#: "a few minutes per model on 2 cores".
QUICK_TARGET_S = 180.0
#: The settings :func:`adapt_quick` may halve, in this order (round robin), and their floors
#: (below them the verdicts lose their units: 4 spectrum mini-batches are the fewest a
#: per-batch statistic is judged on; Hutch++ needs 6 products; 250 images keep 10 per claims
#: group of the 25).
FLOORS = {"spectrum_batches": 4, "curvature_samples": 32, "surface_samples": 128,
          "spectrum_batch_size": 8, "surface_planes": 1, "trace_products": 6,
          "density_steps": 15, "lesion_samples": 250, "eval_samples": 500}
ADAPTABLE = tuple(FLOORS)


@dataclasses.dataclass(frozen=True)
class Probe:
    """Measured unit costs of one model on this machine. A Hessian-vector product on a batch of
    ``b`` images takes ``hvp_fixed_s + b * hvp_s`` (a fixed part, the parameter-sized work, and
    a part per image, from two timed batch sizes); a Lanczos step also reads its basis, each
    basis vector (float64, every parameter) costing ``row_s``."""

    forward_s: float  # seconds per image: eval forward without gradients
    hvp_s: float      # seconds per image of one Hessian-vector product
    hvp_fixed_s: float = 0.0  # seconds per product, whatever the batch size
    row_s: float = 0.0  # seconds to read one float64 basis vector of the model's size

    def product(self, images: int) -> float:
        """Seconds of one Hessian-vector product on a batch of ``images``."""
        return self.hvp_fixed_s + images * self.hvp_s

    def lanczos(self, steps: int, images: int) -> float:
        """Seconds of ``steps`` Lanczos steps on a batch of ``images``: the products plus the
        full reorthogonalization (step j reads j basis vectors twice, sum ~ steps^2)."""
        return steps * self.product(images) + steps * steps * self.row_s


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
    """Time a forward pass on ``forward_images``; one product of the curvature operator the
    Hessian analyses use (:class:`~landscape.curvature.HessianOperator` of the mean NLL plus the
    paper's L2 term, a float64 vector in and out as Lanczos applies it) on ``hvp_images`` and on
    a quarter of them (the fixed and per-image parts, see :class:`Probe`); and a read of a
    float64 basis of 4 parameter-sized vectors. The model's train/eval flags are restored."""
    from ..curvature import HessianOperator
    from ..device import eval_mode
    # standard (row-major) layout: a one-channel batch from an image folder can arrive with
    # channels-last strides, on which CPU double backward through a strided 1x1 conv crashes
    xf = images[:forward_images].clone(memory_format=torch.contiguous_format)
    big = min(hvp_images, len(images))
    small = max(1, big // 4)

    def forward() -> None:
        with torch.no_grad():
            net(xf)

    def product(n: int) -> Any:
        batch = (images[:n].clone(memory_format=torch.contiguous_format), labels[:n])
        op = HessianOperator(net, batch, wd=1e-4, l2="paper", mode="double_backward")
        v = torch.randn(op.shape[0], generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)

        def run() -> None:
            op.matvec(v.to(op.dtype)).to(torch.float64)
        return run, op

    n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    basis = torch.zeros((4, n_params), dtype=torch.float64)
    w = torch.ones(n_params, dtype=torch.float64)

    def orth() -> None:
        basis.T @ (basis @ w)

    with eval_mode(net), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. the paper L2 of a zero tensor: timing only
        f = _timed(forward) / len(xf)
        times = []
        for n in (big, small) if small < big else (big,):
            run, op = product(n)
            times.append(_timed(run, repeats=2))
            op.free()
    row = _timed(orth, repeats=1) / (2 * len(basis))
    per_image = (times[0] - times[1]) / (big - small) if len(times) == 2 else 0.0
    if not per_image > 0:  # timing noise (or one size only): all of it per image
        per_image = times[0] / big
    fixed = max(times[0] - big * per_image, 0.0)
    return Probe(f, per_image, fixed, row)


def _points(grid: str, ygrid: str | None) -> int:
    from ..surface import parse_grid
    return len(parse_grid(grid)) * (len(parse_grid(ygrid)) if ygrid else 1)


def estimate(p: Probe, cfg: Any, todo: Sequence[str], n_pool: int, n_feat: int, n_lesion: int,
             n_residual: int, n_eval: int | None = None) -> dict[str, float]:
    """Seconds per analysis in ``todo`` for a model with unit costs ``p`` under ``cfg`` (an
    :class:`~landscape.analyze.config.AnalyzeConfig`); ``n_pool`` training images for the
    Hessian, ``n_feat``/``n_lesion`` test images, ``n_residual`` residual blocks. With
    ``n_eval``, also ``evaluation``: test and training accuracy/NLL on ``n_eval`` images each
    (``eval_samples``; 0: the whole split)."""
    out: dict[str, float] = {}
    if n_eval is not None:
        out["evaluation"] = 2 * (cfg.eval_samples or n_eval) * p.forward_s
    if "hessian" in todo:
        b = cfg.spectrum_batch_size
        batches = cfg.spectrum_batches or max(1, math.ceil(0.1 * n_pool / b))
        spectrum = batches * p.lanczos(PRODUCTS_PER_BATCH, b)
        n = cfg.curvature_samples
        curvature = (cfg.trace_products * p.product(n)
                     + cfg.density_probes * p.lanczos(cfg.density_steps, n)
                     + (p.lanczos(PRODUCTS_PER_BATCH, n) + p.lanczos(PRODUCTS_BOTTOM, n)
                        if cfg.top_k else 0.0))
        out["hessian"] = spectrum + curvature
    if "surface" in todo:
        out["surface"] = (max(1, cfg.surface_planes) * _points(cfg.surface_grid, cfg.surface_ygrid)
                          * cfg.surface_samples * p.forward_s)
    passes = {"fourier": 1, "variance": 1, "cka": 1, "robustness": max(1, cfg.robustness_freqs)}
    for a, k in passes.items():
        if a in todo:
            out[a] = k * n_feat * p.forward_s
    if "lesion" in todo:
        n = min(n_lesion, cfg.lesion_samples or n_lesion)
        out["lesion"] = (n_residual + 1) * n * p.forward_s
    return out


def total_seconds(est: dict[str, float]) -> float:
    """What the quick budget adapts: the whole estimate of one model."""
    return float(sum(est.values()))


def adapt_quick(cfg: Any, cost: Any, fixed: set[str], target: float = QUICK_TARGET_S
                ) -> tuple[Any, dict[str, list[Any]]]:
    """(``cfg`` with less work, ``{setting: [old, new]}``) so that
    ``total_seconds(cost(cfg)) <= target``: the :data:`ADAPTABLE` settings are halved in turn
    (round robin, down to :data:`FLOORS`) until the estimate fits or all are at their floors;
    a halving that does not lower the estimate is not made (nor recorded); settings in
    ``fixed`` (set by the user) are left alone. ``cost(cfg)`` is the estimate of the
    most expensive model."""
    changed: dict[str, list[Any]] = {}
    new = cfg
    while total_seconds(cost(new)) > target:
        moved = False
        for name in ADAPTABLE:
            old = getattr(new, name)
            if name in fixed or not old or old <= FLOORS[name]:
                continue
            value = max(FLOORS[name], old // 2)
            trial = dataclasses.replace(new, **{name: value})
            if not total_seconds(cost(trial)) < total_seconds(cost(new)):
                continue  # a setting of an analysis this run does not do, or one that is free
            changed.setdefault(name, [getattr(cfg, name), value])[1] = value
            new = trial
            moved = True
            if total_seconds(cost(new)) <= target:
                break
        if not moved:  # everything that costs is at its floor
            break
    return new, changed


def format_estimate(label: str, est: dict[str, float]) -> str:
    """One line: the model's estimate per analysis and in total."""
    parts = ", ".join(f"{a} {_dur(s)}" for a, s in est.items())
    return f"{label}: about {_dur(sum(est.values()))} ({parts})"


def _dur(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"
