"""Stochastic trace estimators: Hutchinson and Hutch++ (with standard errors).

Probe vectors go through the operator ``block`` at a time (``"auto"``: the cached choice for
the operator's setting, else measured on the first real probes, else the rule; see
:mod:`~landscape.curvature.block_size`); the result states the block used and ``n_products``,
every product computed.

On a diagonal matrix with trace 10 (Hutchinson with Rademacher probes is exact on a diagonal
matrix; Hutch++ is exact once its sketch spans the space):

>>> import torch
>>> from landscape.curvature import DenseOperator
>>> A = DenseOperator(torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)))
>>> r = hutchinson_trace(A, 10, seed=0)
>>> r.trace, r.stderr, r.n_products, r.block
(10.0, 0.0, 10, 1)
>>> r = hutchpp_trace(A, 12, seed=0)
>>> round(r.trace, 10), r.n_products
(10.0, 12)
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import LandscapeError
from ..settings import CurvatureSettings, SpectrumSettings
from .block_size import BlockedProducts
from .operators import as_operator
from .random_vectors import generator, rademacher
from .results import TraceResult


def hutchinson_trace(op: Any, n_probes: int = CurvatureSettings.trace_products, *,
                     seed: int = CurvatureSettings.seed, block: int | str = "auto",
                     backend: str = SpectrumSettings.backend,
                     tol: float = SpectrumSettings.tol) -> TraceResult:
    """Hutchinson's estimate ``mean_i z_i^T H z_i`` with seeded Rademacher probes z_i; stderr is
    the sample standard deviation / sqrt(n_probes). Default ``n_probes``: the settings' trace
    budget (``landscape hessian --probes``). ``block`` probes go through one matmat
    (``"auto"``: :func:`~landscape.curvature.block_size.probe_block_size`).
    ``backend="pyhessian"``: pyhessian's ``trace(maxIter=n_probes, tol=tol)`` (it stops early once
    the running mean changes by less than ``tol``)."""
    if backend == "pyhessian":
        from .pyhessian_backend import pyhessian_trace
        return pyhessian_trace(op, n_probes, tol, seed)
    op = as_operator(op)
    if n_probes < 2:
        raise LandscapeError("hutchinson_trace needs at least 2 probes for a standard error")
    apply = BlockedProducts(op, block)
    start = op.n_products
    n = op.shape[0]
    gen = generator(seed)
    Z = rademacher(n, gen, n_probes)
    HZ = apply(Z)
    samples = (Z * HZ).sum(0).numpy()
    return TraceResult(float(samples.mean()), float(samples.std(ddof=1) / math.sqrt(n_probes)),
                       op.n_products - start, seed, "hutchinson", samples, apply.block)


def hutchpp_trace(op: Any, n_products: int = CurvatureSettings.trace_products, *,
                  seed: int = CurvatureSettings.seed, block: int | str = "auto") -> TraceResult:
    """Hutch++ (Meyer et al. 2021) with a budget of ``n_products`` (default: the settings'
    ``trace_products``, as ``landscape hessian --trace`` and ``analyze``): a third sketches the top
    subspace Q = orth(H S), a third computes tr(Q^T H Q) exactly, a third runs Hutchinson on the
    deflated remainder (I - QQ^T) H (I - QQ^T); stderr is that remainder's Hutchinson stderr.
    ``block``: as for :func:`hutchinson_trace`."""
    op = as_operator(op)
    apply = BlockedProducts(op, block)
    n = op.shape[0]
    m = max(1, n_products // 3)
    if m < 2:
        raise LandscapeError("hutchpp_trace needs n_products >= 6")
    start = op.n_products
    gen = generator(seed)
    S = rademacher(n, gen, m)
    G = rademacher(n, gen, m)
    Q, _ = torch.linalg.qr(apply(S))
    HQ = apply(Q)
    t_top = float((Q * HQ).sum())
    G = G - Q @ (Q.T @ G)
    HG = apply(G)
    samples = (G * HG).sum(0).numpy()
    est = t_top + float(samples.mean())
    return TraceResult(est, float(samples.std(ddof=1) / math.sqrt(m)), op.n_products - start,
                       seed, "hutch++", samples, apply.block)

