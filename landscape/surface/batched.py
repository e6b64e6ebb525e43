"""Several grid points at once: vmap over stacked parameters, one-thread CPU worker pools, and
the L2 terms of a batch of points."""
from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def _one_thread() -> None:
    """Thread-pool initializer: one intra-op thread for this thread. ATen sets a thread's
    OpenMP/MKL thread count lazily from the process default at its first parallel op: trigger
    that first, then set this thread's own count (the caller restores the process default)."""
    torch.get_num_threads()
    torch.set_num_threads(1)


def start_pool(w: int) -> ThreadPoolExecutor:
    """``w`` threads with one intra-op thread each, all started; the caller's count unchanged."""
    before = torch.get_num_threads()
    pool = ThreadPoolExecutor(w, thread_name_prefix="surface", initializer=_one_thread)
    barrier = threading.Barrier(w, timeout=60)
    list(pool.map(lambda _: barrier.wait(), range(w)))  # all w threads up
    torch.set_num_threads(before)  # the process default and this thread: as before
    return pool


def vmap_sums(model: nn.Module, stacked: dict[str, torch.Tensor], fixed: dict[str, torch.Tensor],
              batches: Iterable[tuple[torch.Tensor, torch.Tensor]], K: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL and correct counts (float64, (K,)) of ``model`` at the K parameter sets
    ``stacked`` (leading dim K; ``fixed`` shared) over ``batches``, by ``torch.func.vmap``."""
    from torch.func import functional_call, vmap

    def f(params: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (params, fixed), (xb,))

    fv = vmap(f, in_dims=(0, None))
    dev = next(iter(stacked.values())).device
    loss = torch.zeros(K, dtype=torch.float64, device=dev)
    correct = torch.zeros(K, dtype=torch.float64, device=dev)
    for xb, yb in batches:
        logits = fv(stacked, xb)  # (K, B, C)
        B = logits.shape[1]
        flat = logits.reshape(K * B, -1)
        ce = F.cross_entropy(flat.float() if flat.dtype in (torch.float16, torch.bfloat16)
                             else flat, yb.repeat(K, *[1] * (yb.dim() - 1)), reduction="none")
        loss += ce.view(K, B).double().sum(1)  # yb: labels (B,) or soft targets (B, C)
        correct += (logits.argmax(2) == (yb.argmax(1) if yb.dim() == 2 else yb)).sum(1)
    return loss, correct


def l2_terms(moving: list[torch.Tensor], fixed: list[torch.Tensor], K: int, on: bool,
             device: torch.device) -> torch.Tensor:
    """(K, 2): ``sum_p ||p||`` and ``0.5 ||theta||^2`` from the per-tensor norms ((K,) each) of
    the moving tensors and the fixed tensors themselves; NaN (no work) when not ``on``."""
    if not on:
        return torch.full((K, 2), float("nan"), dtype=torch.float64, device=device)
    fn = torch.stack([t.double().norm() for t in fixed]) if fixed \
        else torch.zeros(1, dtype=torch.float64, device=device)
    mov = torch.stack(moving, 1) if moving else torch.zeros(K, 1, dtype=torch.float64,
                                                            device=device)
    return torch.stack([mov.sum(1) + fn.sum(), 0.5 * ((mov ** 2).sum(1) + (fn ** 2).sum())], 1)


def stacked_points(theta0: dict[str, torch.Tensor], dirs: list[dict[str, torch.Tensor]],
                   names: list[str], pts: np.ndarray) -> dict[str, torch.Tensor]:
    """``theta0 + x*d1 + y*d2`` for every point (K, 2), stacked along a leading dim K."""
    stacked = {}
    for n in names:
        t0 = theta0[n]
        buf = torch.empty((len(pts), *t0.shape), dtype=t0.dtype, device=t0.device)
        for i, (x, y) in enumerate(pts):
            torch.add(t0, dirs[0][n], alpha=float(x), out=buf[i])
            if len(dirs) > 1:
                buf[i].add_(dirs[1][n], alpha=float(y))
        stacked[n] = buf
    return stacked
