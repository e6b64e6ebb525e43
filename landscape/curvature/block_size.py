"""How many probe vectors go through one product call: one rule for Hutchinson, Hutch++ and SLQ.

A block of b vectors is one batched backward pass (``is_grads_batched``/``vmap``) instead of b
passes. Whether that pays depends on the device, not on the estimator:

- CPU: a loop of single products. Measured (issue 25, vit_tiny at batch 128, Hutch++ with 99
  products, one thread): 44.6 s with blocks of 8 against 36.8 s with single products; on the CPU
  the batched pass does the same arithmetic without the parallel width that would pay for its
  extra memory traffic;
- CUDA and other accelerators: blocks of :data:`ACCELERATOR_BLOCK` (a batched pass fills the
  device; not measured in this project, no GPU was lent: ``benchmarks/gpu.py`` prints both).

``block="auto"`` applies the rule; an integer is used as given. Every estimator reports the
block it used and the products it computed (``n_products``).

>>> import torch
>>> from landscape.curvature import DenseOperator
>>> probe_block_size(DenseOperator(torch.eye(3)))
1
>>> probe_block_size(DenseOperator(torch.eye(3)), 4)
4
"""
from __future__ import annotations

from typing import Any

from ..errors import LandscapeError

ACCELERATOR_BLOCK = 8


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
    device = getattr(op, "device", None)
    return 1 if device is None or getattr(device, "type", "cpu") == "cpu" else ACCELERATOR_BLOCK
