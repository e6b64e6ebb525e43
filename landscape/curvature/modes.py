"""Choosing a Hessian-vector product mode by measurement, once, without global state.

``mode="auto"`` on a :class:`~landscape.curvature.hessian_operator.LossHessian` resolves at its
first product through :func:`choose_mode`: a warm-up product and two timed products of each mode,
forward-over-reverse first (it keeps nothing), then double backward (its retained gradient graph
is kept only when that mode wins, else freed), so the probe never holds both modes' graphs. The
choice is stored on the operator (a :class:`ModeChoice`), not in a module-level cache; callers
that build many operators on one model (the spectrum) resolve once and pass the mode on.

Measured by benchmarks/hessian.py (batch 16, ms per product, double backward vs
forward-over-reverse): H100 resnet_tiny 8.6 vs 30.4, vit_tiny 27.3 vs 68.1; two quiet CPU cores
resnet_tiny 23 vs 44, vit_tiny 31 vs 66; so double backward is the default where nothing is
measured, but on a loaded shared CPU single timings flipped, hence the measurement.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

DEFAULT_MODE = "double_backward"
MODES = ("auto", "double_backward", "forward_over_reverse")


@dataclass(frozen=True)
class ModeChoice:
    """The product mode chosen, the best seconds per product of each mode measured, and how long
    the measurement took (zero when the mode was given)."""

    mode: str
    seconds_per_product: dict[str, float] = field(default_factory=dict)
    measure_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "seconds_per_product": dict(self.seconds_per_product),
                "measure_s": self.measure_s}


def choose_mode(op: Any, i: int, vs: list[torch.Tensor], batched: bool) -> ModeChoice:
    """Time products of both modes on batch ``i`` of ``op`` (see module doc) and return the faster;
    a mode other than the default that fails on this model is skipped with a warning."""
    t_start = time.perf_counter()
    sync = torch.cuda.synchronize if op.device.type == "cuda" else (lambda: None)
    order = ("forward_over_reverse", "double_backward")
    times: dict[str, float] = {}
    for mode in order:
        fn = op.product_function(mode)
        try:
            fn(i, vs, batched)  # warm-up (builds the retained graph, first-call costs)
        except Exception as e:  # noqa: BLE001 - e.g. a model torch.func cannot trace
            if mode == DEFAULT_MODE:
                raise
            warnings.warn(f"{mode} products unavailable for this model ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:100]}); using {DEFAULT_MODE}", stacklevel=3)
            continue
        best = float("inf")
        for _ in range(2):
            sync()
            t0 = time.perf_counter()
            fn(i, vs, batched)
            sync()
            best = min(best, time.perf_counter() - t0)
        times[mode] = best
    chosen = min(times, key=times.get) if len(times) > 1 else DEFAULT_MODE
    if chosen != "double_backward":
        op.release_graphs()
    return ModeChoice(chosen, times, time.perf_counter() - t_start)
