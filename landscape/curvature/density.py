"""Spectral density by stochastic Lanczos quadrature (SLQ)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .lanczos import lanczos_quadrature
from .operators import as_operator
from .random_vectors import generator, rademacher
from .results import DensityResult


def slq_density(op: Any, n_probes: int = 4, steps: int = 80, *, seed: int = 0,
                sigma: float | None = None, n_grid: int = 1000) -> DensityResult:
    """Spectral density by stochastic Lanczos quadrature.

    ``n_probes`` Rademacher probes, ``steps`` Lanczos steps each (full reorthogonalization). The
    density is ``mean_probes sum_i w_i N(t; theta_i, sigma^2)`` on a grid spanning the Ritz values
    +- 5 sigma, renormalized to integrate to 1 on the grid. ``sigma`` defaults to 1% of the Ritz
    range (stated in the result)."""
    op = as_operator(op)
    n = op.shape[0]
    steps = min(steps, n)
    start = op.n_products
    gen = generator(seed)
    nodes, weights = [], []
    for p in range(n_probes):
        z = rademacher(n, gen)
        th, w = lanczos_quadrature(op, z, steps, seed=seed + 1000 + p)
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
                         seed, steps)

