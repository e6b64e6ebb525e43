"""How many probe vectors go through one product call: one rule for Hutchinson, Hutch++ and SLQ.

A block of b vectors is one batched backward pass (``is_grads_batched``/``vmap``) instead of b
passes. Whether that pays depends on the model, the batch and the device, not on the estimator,
so ``block="auto"`` decides by, in order:

1. the choice recorded for the operator's setting in the persistent cache (the key of the
   product-mode cache, :mod:`landscape.curvature.mode_cache`, plus ``what=probe_block``);
2. a measurement inside the work (:class:`BlockedProducts`, used by Hutchinson and Hutch++):
   two single products and one block of :data:`CANDIDATE` probes are timed, all of them real
   probes of the estimate, the faster way is kept for the rest and recorded in the cache;
3. the rule when neither applies (SLQ on a new setting, operators without a cache key): a loop
   of single products on the CPU (measured in issue 25, vit_tiny at batch 128, Hutch++ with 99
   products, one thread: 44.6 s in blocks of 8 against 36.8 s one by one), blocks of
   :data:`ACCELERATOR_BLOCK` on an accelerator.

An integer is used as given. Every estimator reports the block it used and the products it
computed (``n_products``).

>>> import torch
>>> from landscape.curvature import DenseOperator
>>> probe_block_size(DenseOperator(torch.eye(3)))
1
>>> probe_block_size(DenseOperator(torch.eye(3)), 4)
4
"""
from __future__ import annotations

import time
from typing import Any

import torch

from ..errors import LandscapeError
from . import mode_cache

ACCELERATOR_BLOCK = 8
CANDIDATE = 8  # the block measured against single products


def _cache_key(op: Any) -> dict[str, Any] | None:
    key_fn = getattr(op, "mode_cache_key", None)
    if not callable(key_fn):
        return None
    try:
        return {**key_fn(), "what": "probe_block"}
    except AttributeError:
        return None


def cached_block(op: Any) -> int | None:
    """The probe block recorded for ``op``'s setting, or None."""
    key = _cache_key(op)
    hit = mode_cache.lookup(key) if key is not None else None
    return int(hit["block"]) if hit else None


def rule_block(op: Any) -> int:
    """The rule: 1 on the CPU, :data:`ACCELERATOR_BLOCK` on an accelerator."""
    device = getattr(op, "device", None)
    return 1 if device is None or getattr(device, "type", "cpu") == "cpu" else ACCELERATOR_BLOCK


def probe_block_size(op: Any, block: int | str = "auto") -> int:
    """The probe block size for ``op`` (module doc): ``block`` when it is an integer >= 1, else
    1 on the CPU and :data:`ACCELERATOR_BLOCK` on an accelerator."""
    if isinstance(block, bool):
        raise LandscapeError(f"block must be 'auto' or an integer >= 1, got {block!r}")
    if isinstance(block, int):
        if block < 1:
            raise LandscapeError(f"block must be >= 1, got {block}")
        return block
    if block != "auto":
        raise LandscapeError(f"block must be 'auto' or an integer >= 1, got {block!r}")
    cached = cached_block(op)
    return cached if cached is not None else rule_block(op)


class BlockedProducts:
    """``op @ V`` for probe matrices V, ``block`` columns per product call; with ``"auto"`` and
    no cached choice the first call measures (module doc) when it has enough columns
    (2 + :data:`CANDIDATE`). :attr:`block` is the block in use (after the measurement, the one
    chosen); :attr:`seconds` the timings measured."""

    def __init__(self, op: Any, block: int | str = "auto"):
        self.op = op
        self.measure = False
        self.seconds: dict[int, float] = {}
        if block == "auto":
            cached = cached_block(op)
            self.measure = cached is None and _cache_key(op) is not None
            self.block = cached if cached is not None else rule_block(op)
        else:
            self.block = probe_block_size(op, block)

    def _call(self, V: torch.Tensor) -> torch.Tensor:
        return self.op.matmat(V.to(self.op.device, self.op.dtype)).to("cpu", torch.float64)

    def _timed(self, V: torch.Tensor) -> tuple[torch.Tensor, float]:
        sync = torch.cuda.synchronize if self.op.device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        out = self._call(V)
        sync()
        return out, time.perf_counter() - t0

    def __call__(self, V: torch.Tensor) -> torch.Tensor:
        outs, s = [], 0
        if self.measure and V.shape[1] >= 2 + CANDIDATE:
            self.measure = False
            # settle the product mode first (an "auto" operator may still be measuring it)
            while getattr(self.op, "mode", None) == "auto" and s < V.shape[1]:
                outs.append(self._call(V[:, s:s + 1]))
                s += 1
            if V.shape[1] - s >= 2 + CANDIDATE:
                singles = []
                for _ in range(2):
                    out, dt = self._timed(V[:, s:s + 1])
                    outs.append(out)
                    singles.append(dt)
                    s += 1
                out, dt = self._timed(V[:, s:s + CANDIDATE])
                outs.append(out)
                s += CANDIDATE
                self.seconds = {1: min(singles), CANDIDATE: dt / CANDIDATE}
                self.block = min(self.seconds, key=self.seconds.get)
                key = _cache_key(self.op)
                if key is not None:
                    mode_cache.store(key, {"block": self.block, "seconds_per_product":
                                           {str(k): v for k, v in self.seconds.items()}})
        for t in range(s, V.shape[1], self.block):
            outs.append(self._call(V[:, t:t + self.block]))
        return torch.cat(outs, dim=1) if outs else V.new_zeros((V.shape[0], 0))
