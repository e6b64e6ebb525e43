"""Extreme eigenpairs by Rayleigh-Ritz on a growing subspace, started from a block of vectors.

Used to warm-start a sequence of related operators (the Hessians of consecutive mini-batches):
the subspace starts from the previous operator's Ritz vectors plus the usual start vector
(unit loss gradient + unit seeded Gaussian), and grows by the residuals ``H y - theta y`` of the
wanted Ritz pairs that have not converged yet (a block Krylov step restricted to the unconverged
pairs: the residuals lie in span(W, H W)). Products go through ``matmat`` in blocks. Because
``H W`` is kept, every residual is computed exactly from the products taken (not from a
recurrence), and the stopping rule is the one of
:func:`~landscape.curvature.lanczos.top_eigenvalues`: ``||H y - theta y|| <= tol * |theta|`` for
every wanted pair.

Several targets are solved in one subspace, e.g. ``{"LM": 5, "SA": 1}``: the paper's five
largest-magnitude eigenvalues and the most negative one.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import LandscapeError
from .lanczos import WHICH, order_by
from .operators import as_operator
from .random_vectors import generator, randn
from .results import EigenResult


def _orthonormal_new(W: torch.Tensor | None, X: torch.Tensor, drop: float = 1e-10) -> torch.Tensor:
    """Columns of X made orthogonal to W and to each other (Gram-Schmidt twice); columns that
    vanish (relative norm below ``drop``) are dropped."""
    out: list[torch.Tensor] = []
    for j in range(X.shape[1]):
        x = X[:, j].clone()
        x0 = float(x.norm())
        if x0 == 0.0:
            continue
        for _ in range(2):
            if W is not None and W.shape[1]:
                x = x - W @ (W.T @ x)
            for q in out:
                x = x - q * (q @ x)
        nx = float(x.norm())
        if nx > drop * x0:
            out.append(x / nx)
    return torch.stack(out, 1) if out else X[:, :0]


def _select(theta: np.ndarray, targets: Mapping[str, int]) -> dict[str, np.ndarray]:
    return {w: order_by(theta, w)[:c] for w, c in targets.items()}


def subspace_eigenpairs(op: Any, targets: Mapping[str, int], basis: torch.Tensor, *,
                        tol: float = 1e-3, max_products: int | None = None,
                        seed: int = 0) -> dict[str, EigenResult]:
    """Eigenpairs of a symmetric operator for each target ``which -> count`` (see module doc),
    starting from the columns of ``basis`` (n, b). Returns one :class:`EigenResult` per target
    with eigenvectors; ``n_products`` and ``wall_s`` are those of the whole solve (shared)."""
    op = as_operator(op)
    n = op.shape[0]
    for w, c in targets.items():
        if w not in WHICH or not 1 <= c <= n:
            raise LandscapeError(f"bad target {w}: {c} (which in {WHICH}, 1 <= count <= {n})")
    t0 = time.perf_counter()
    start = op.n_products
    need = sum(targets.values())
    max_products = min(n, max_products or max(20 * need, 100))
    dev = op.device
    W = _orthonormal_new(None, basis.to(dev, torch.float64))
    if W.shape[1] < need:  # pad with seeded Gaussians so every target has enough Ritz pairs
        extra = randn(n, generator(seed + 7919), need - W.shape[1] + 1).to(dev)
        W = torch.cat([W, _orthonormal_new(W, extra)], 1)
    HW = op.matmat(W.to(op.dtype)).to(dev, torch.float64)
    gen = generator(seed + 104729)
    while True:
        T = W.T @ HW
        theta_t, S_t = torch.linalg.eigh(0.5 * (T + T.T))
        theta, S = theta_t.cpu().numpy(), S_t
        sel = _select(theta, targets)
        idx = np.unique(np.concatenate(list(sel.values())))
        Si = S[:, torch.as_tensor(idx, device=dev)]
        Y = W @ Si
        R = HW @ Si - Y * theta_t[torch.as_tensor(idx, device=dev)]
        res = R.norm(dim=0).cpu().numpy()
        ok = res <= tol * np.abs(theta[idx])
        used = op.n_products - start
        if ok.all() or used >= max_products or W.shape[1] >= n:
            break
        grow = R[:, torch.as_tensor(np.flatnonzero(~ok), device=dev)]
        grow = grow[:, : max(1, max_products - used)]
        new = _orthonormal_new(W, grow)
        if new.shape[1] == 0:  # residuals inside the subspace (rounding): add a random direction
            new = _orthonormal_new(W, randn(n, gen, 1).to(dev))
            if new.shape[1] == 0:
                break
        HN = op.matmat(new.to(op.dtype)).to(dev, torch.float64)
        W, HW = torch.cat([W, new], 1), torch.cat([HW, HN], 1)
    wall = time.perf_counter() - t0
    n_prod = op.n_products - start
    pos = {int(j): p for p, j in enumerate(idx)}
    out = {}
    for w, s in sel.items():
        cols = [pos[int(j)] for j in s]
        r = res[cols]
        conv = bool(np.all(r <= tol * np.abs(theta[s])))
        out[w] = EigenResult(theta[s].copy(), r.copy(), n_prod, conv, seed, w, tol, "subspace",
                             Y[:, cols].to(op.dtype), W.shape[1], wall, "block")
    return out
