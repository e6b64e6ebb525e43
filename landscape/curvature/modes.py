"""Choosing a Hessian-vector product mode by measurement, without a probe tax.

``mode="auto"`` on a :class:`~landscape.curvature.hessian_operator.LossHessian` is resolved at its
first product:

1. **cache**: a choice recorded for the same setting (model class, parameter count, dtype,
   device and threads, batch shapes, torch version; :mod:`landscape.curvature.mode_cache`) is
   used at once: nothing is measured, nothing is spent;
2. **measured rule** (:data:`RULES`): on the CPU, double backward. Every CPU measurement of
   this project found it faster, by 1.7x to 2.6x per product (table below; one thread on a
   loaded machine, resnet_tiny batch 16: 68 vs 175 ms), and the probe's first
   forward-over-reverse product pays torch.func's one-time set-up (about 2 s in a fresh
   process, more than a whole top-5 solve);
3. **probe inside the work** (other devices, no cached choice): the operator's first
   :data:`PROBE_SCHEDULE` products alternate the two modes and are timed (double backward's
   gradient graph is built before its timing, as it is needed anyway). Every one of them is a
   real product of the vector the caller asked for, so Lanczos, Hutchinson or SLQ use it as one
   of its steps: the measurement costs only the difference between the slower and the faster
   mode on two products, never extra products. The faster mode is then kept for the operator's
   life and written to the cache.

Every product, probes included, is counted in ``n_products``. The choice is a
:class:`ModeChoice` on the operator (``source`` "given", "cache", "rule" or "probe";
``probe_products``; ``overhead_s``: the seconds the probe products took beyond what the chosen
mode would have taken).

Measured by benchmarks/hessian.py (ms per product, double backward vs forward-over-reverse):
H100 batch 16 resnet_tiny 8.6 vs 30.4, vit_tiny 27.3 vs 68.1; two quiet CPU cores, batch 16
resnet_tiny 23 vs 44, vit_tiny 31 vs 66; two CPU threads (2026-12-01) batch 16 resnet_tiny 14 vs
36, vit_tiny 33 vs 69, batch 128 resnet_tiny 61 vs 106, vit_tiny 178 vs 325. Single timings on a
loaded shared CPU once flipped the order, which a rule does not risk; on accelerators the gap is
as large but unmeasured on other models and cards, so there the probe decides.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

DEFAULT_MODE = "double_backward"
MODES = ("auto", "double_backward", "forward_over_reverse")
# the products of an unresolved "auto" operator, in order: each is a real, used product
PROBE_SCHEDULE = ("double_backward", "forward_over_reverse", "double_backward",
                  "forward_over_reverse")
@dataclass(frozen=True)
class ModeChoice:
    """The product mode chosen and how: ``source`` "given", "cache" (recorded earlier for the
    same setting), "rule" (:data:`RULES`) or "probe" (measured on this operator's first
    products); the best seconds per
    product of each mode measured; ``measure_s`` the wall time of the probe products (they are
    real products); ``overhead_s`` the part of it the chosen mode would not have spent;
    ``probe_products`` products taken while measuring (all counted and used)."""

    mode: str
    seconds_per_product: dict[str, float] = field(default_factory=dict)
    measure_s: float = 0.0
    source: str = "given"
    probe_products: int = 0
    overhead_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "seconds_per_product": dict(self.seconds_per_product),
                "measure_s": self.measure_s, "source": self.source,
                "probe_products": self.probe_products, "overhead_s": self.overhead_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str | None = None) -> ModeChoice:
        return cls(d["mode"], dict(d.get("seconds_per_product", {})),
                   float(d.get("measure_s", 0.0)), source or d.get("source", "given"),
                   int(d.get("probe_products", 0)), float(d.get("overhead_s", 0.0)))


# device type -> the mode chosen without measuring (module doc); tests clear it to probe on CPU
RULES: dict[str, str] = {"cpu": "double_backward"}


def rule_for(device: torch.device) -> ModeChoice | None:
    """The measured rule's choice for ``device`` (None: no rule, measure)."""
    mode = RULES.get(torch.device(device).type)
    return ModeChoice(mode, source="rule") if mode else None



class ModeProbe:
    """The state of an "auto" operator's measurement (see module doc): which mode the next
    product uses, the timings so far, and the choice once :attr:`done`."""

    def __init__(self) -> None:
        self.i = 0
        self.samples: list[tuple[str, float, int]] = []  # (mode, seconds, vectors)
        self.failed: set[str] = set()

    @property
    def done(self) -> bool:
        return self.i >= len(PROBE_SCHEDULE)

    def next_mode(self) -> str:
        return PROBE_SCHEDULE[self.i] if not self.done else DEFAULT_MODE

    def record(self, mode: str, seconds: float, n_vectors: int) -> None:
        self.samples.append((mode, seconds, n_vectors))
        self.i += 1

    def fail(self, mode: str, e: Exception, stacklevel: int = 4) -> None:
        """A mode other than the default raised: warn, stop measuring (the default is chosen)."""
        if mode == DEFAULT_MODE:
            raise e
        warnings.warn(f"{mode} products unavailable for this model ({type(e).__name__}: "
                      f"{str(e).splitlines()[0][:100]}); using {DEFAULT_MODE}",
                      stacklevel=stacklevel)
        self.failed.add(mode)
        self.i = len(PROBE_SCHEDULE)

    def choice(self) -> ModeChoice:
        best: dict[str, float] = {}
        for mode, s, nv in self.samples:
            best[mode] = min(best.get(mode, float("inf")), s / max(nv, 1))
        ok = {m: t for m, t in best.items() if m not in self.failed}
        chosen = min(ok, key=ok.get) if len(ok) > 1 else DEFAULT_MODE
        total = sum(s for _, s, _ in self.samples)
        ref = best.get(chosen, 0.0)
        overhead = sum(max(0.0, s - ref * nv) for _, s, nv in self.samples)
        return ModeChoice(chosen, best, total, "probe", sum(nv for _, _, nv in self.samples),
                          overhead)


def timed_call(device: torch.device, fn: Any) -> tuple[Any, float]:
    """``fn()`` and its wall seconds (CUDA synchronized around it)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t0


def choose_mode(op: Any, i: int, vs: list[torch.Tensor], batched: bool) -> ModeChoice:
    """Measure both modes on batch ``i`` of ``op`` outside any estimator (the probe schedule on
    the vectors ``vs``; their products are discarded). Kept for callers that need the mode before
    any work; each product taken is added to ``op.n_products``. Prefer letting an "auto"
    operator measure inside its first products (module doc)."""
    probe = ModeProbe()
    n_vec = vs[0].shape[0] if batched else 1
    while not probe.done:
        mode = probe.next_mode()
        fn = op.product_function(mode)
        if mode == DEFAULT_MODE and op.retain_graph:
            op._grad_graph(i)
        try:
            _, dt = timed_call(op.device, lambda fn=fn: fn(i, vs, batched))
        except Exception as e:  # noqa: BLE001 - e.g. a model torch.func cannot trace
            probe.fail(mode, e)
            continue
        op.n_products += n_vec
        probe.record(mode, dt, n_vec)
    c = probe.choice()
    if c.mode != "double_backward":
        op.release_graphs()
    return c
