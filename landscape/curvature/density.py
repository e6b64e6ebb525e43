"""Spectral density by stochastic Lanczos quadrature (SLQ).

Each probe runs its own Lanczos recurrence (full reorthogonalization, float64). ``block`` probes
advance together, their products in one ``matmat`` call (``"auto"``: the rule of
:func:`~landscape.curvature.block_size.probe_block_size`, one probe at a time on the CPU); the
recurrences are the same either way, so the nodes agree to rounding.

On a diagonal matrix with eigenvalues 1, 2, 3, 4, Lanczos run to the dimension recovers them
exactly, and the quadrature's weights of one probe sum to 1:

>>> import numpy as np, torch
>>> from landscape.curvature import DenseOperator
>>> A = DenseOperator(torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)))
>>> d = slq_density(A, n_probes=2, steps=4, seed=0)
>>> np.round(np.sort(d.nodes[0]), 8).tolist(), round(float(d.weights[0].sum()), 12)
([1.0, 2.0, 3.0, 4.0], 1.0)
>>> round(d.moment(1), 10), d.n_products   # tr(A)/n = 2.5 (Rademacher probes: exact here)
(2.5, 8)
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..settings import CurvatureSettings
from .block_size import probe_block_size
from .lanczos import lanczos_quadrature, tridiag_eigh
from .operators import LinearOperator, as_operator
from .random_vectors import generator, rademacher, randn
from .results import DensityResult


def lanczos_quadrature_block(op: LinearOperator, Z: torch.Tensor, steps: int,
                             seeds: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Gauss quadrature nodes and weights for each column of ``Z`` (n, b): b Lanczos recurrences
    advanced together, one ``matmat`` of b vectors per step; column j restarts after a breakdown
    with the seeded Gaussian that :func:`~landscape.curvature.lanczos.lanczos_quadrature` would
    use for ``seeds[j]``."""
    n, b = Z.shape
    steps = min(steps, n)
    dev = op.device
    Q = torch.empty((steps + 1, n, b), dtype=torch.float64, device=dev)
    Z = Z.to(dev, torch.float64)
    Q[0] = Z / Z.norm(dim=0, keepdim=True)
    gens = [generator(s + 7919) for s in seeds]
    alpha = np.zeros((b, steps))
    beta = np.zeros((b, steps))
    scale = np.zeros(b)  # per column: the largest |alpha|, beta so far (see Lanczos.step)
    for j in range(steps):
        W = op.matmat(Q[j].to(op.dtype)).to(dev, torch.float64)
        a = (Q[j] * W).sum(0)
        alpha[:, j] = a.cpu().numpy()
        W = W - a * Q[j]
        if j > 0:
            W = W - torch.as_tensor(beta[:, j - 1], device=dev) * Q[j - 1]
        for _ in range(2):  # full reorthogonalization, column by column against its own basis
            Qj = Q[: j + 1]
            W = W - torch.einsum("knb,kb->nb", Qj, torch.einsum("knb,nb->kb", Qj, W))
        bn = W.norm(dim=0)
        if j + 1 >= steps:
            beta[:, j] = bn.cpu().numpy()
            break
        for c in range(b):
            bc = float(bn[c])
            scale[c] = max(scale[c], abs(alpha[c, j]), bc if math.isfinite(bc) else 0.0,
                           beta[c, j - 1] if j > 0 else 0.0, 1e-300)
            if bc <= 1e-12 * scale[c] or not math.isfinite(bc):  # invariant subspace: restart
                beta[c, j] = 0.0
                r = randn(n, gens[c]).to(dev)
                for _ in range(2):
                    r = r - Q[: j + 1, :, c].T @ (Q[: j + 1, :, c] @ r)
                Q[j + 1, :, c] = r / r.norm()
            else:
                beta[c, j] = bc
                Q[j + 1, :, c] = W[:, c] / bc
    out = []
    for c in range(b):
        theta, S = tridiag_eigh(alpha[c], beta[c])
        out.append((theta, S[0, :] ** 2))
    return out


def slq_density(op: Any, n_probes: int = CurvatureSettings.density_probes,
                steps: int = CurvatureSettings.density_steps, *,
                seed: int = CurvatureSettings.seed,
                sigma: float | None = CurvatureSettings.sigma, n_grid: int = 1000,
                block: int | str = "auto") -> DensityResult:
    """Spectral density by stochastic Lanczos quadrature.

    ``n_probes`` Rademacher probes, ``steps`` Lanczos steps each (full reorthogonalization;
    defaults: :class:`~landscape.settings.CurvatureSettings`'). The
    density is ``mean_probes sum_i w_i N(t; theta_i, sigma^2)`` on a grid spanning the Ritz values
    +- 5 sigma, renormalized to integrate to 1 on the grid. ``sigma`` defaults to 1% of the Ritz
    range (stated in the result). ``block``: probes advanced together (module doc)."""
    op = as_operator(op)
    n = op.shape[0]
    steps = min(steps, n)
    block = probe_block_size(op, block)
    start = op.n_products
    gen = generator(seed)
    Z = rademacher(n, gen, n_probes) if n_probes else torch.zeros(n, 0, dtype=torch.float64)
    nodes, weights = [], []
    for s in range(0, n_probes, block):
        cols = list(range(s, min(s + block, n_probes)))
        if len(cols) == 1:
            pairs = [lanczos_quadrature(op, Z[:, cols[0]], steps, seed=seed + 1000 + cols[0])]
        else:
            pairs = lanczos_quadrature_block(op, Z[:, cols], steps,
                                             [seed + 1000 + p for p in cols])
        for th, w in pairs:
            pad = steps - len(th)
            nodes.append(np.pad(th, (0, pad)))
            weights.append(np.pad(w, (0, pad)))
    nodes_a, weights_a = np.array(nodes), np.array(weights)
    lo, hi = float(nodes_a.min()), float(nodes_a.max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    if sigma is None:
        sigma = 0.01 * span
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, n_grid)
    dens = np.zeros_like(grid)
    for th, w in zip(nodes_a, weights_a, strict=False):
        dens += (w[None, :] * np.exp(-0.5 * ((grid[:, None] - th[None, :]) / sigma) ** 2)).sum(1)
    dens /= n_probes * sigma * math.sqrt(2 * math.pi)
    area = np.trapezoid(dens, grid) if hasattr(np, "trapezoid") else np.trapz(dens, grid)
    dens = dens / area
    return DensityResult(grid, dens, nodes_a, weights_a, float(sigma), op.n_products - start,
                         seed, steps, block)
