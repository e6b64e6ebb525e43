"""The pyhessian package as a backend (for cross-checks and the benchmark).

pyhessian (Yao et al. 2020) computes the top eigenvalues by power iteration with deflation and the
trace by Hutchinson. It is run on the same model, batches and loss (the L2 term of a
:class:`~landscape.curvature.hessian_operator.HessianOperator` is added to its criterion), in eval
mode with the MATH attention kernel. Its products are counted with tensor hooks on the selected
parameters (every Hessian-vector product is one backward pass that reaches them), so nothing in
pyhessian's modules is replaced. Its convergence is judged as ours is: a returned eigenpair counts
as converged when ``||H v - lambda v|| <= residual_tol * |lambda|``.
"""
from __future__ import annotations

import contextlib
import math
import time
import warnings
from typing import Any

import numpy as np
import torch

from ..errors import LandscapeError
from .base import check_curvature_options
from .hessian_operator import curvature_term_of, eval_mode, flatten, loss_hessian_of, math_attention
from .l2 import l2_penalty
from .results import EigenResult, TraceResult


@contextlib.contextmanager
def pyhessian_session(op: Any, seed: int):
    """pyhessian's ``hessian`` object on op's batches and a function returning the products it
    has taken: eval mode, MATH attention, only the selected parameters requiring grad, default
    dtype = the model's, a seeded RNG; afterwards ``.grad`` is cleared and everything restored."""
    term = curvature_term_of(op)
    if term is not None:  # the GGN or empirical Fisher: refused in one line
        check_curvature_options(term.curvature, backend="pyhessian")
    lh = loss_hessian_of(op)
    if lh is None or (op is not lh and len(op.terms) > 1 and not hasattr(op, "wd")):
        raise LandscapeError("backend='pyhessian' needs a HessianOperator (model + data)")
    try:
        from pyhessian import hessian as PyHessian
    except ImportError:
        raise LandscapeError("backend='pyhessian' needs the optional pyhessian package: "
                             "pip install 'landscape[pyhessian]'") from None

    wd, l2 = float(getattr(op, "wd", 0.0)), getattr(op, "l2", "half")
    model, params = lh.model, lh.params
    selected = set(lh.names)
    req = {n: p.requires_grad for n, p in model.named_parameters()}
    old_dtype = torch.get_default_dtype()

    def criterion(out, y):
        loss = lh.loss_fn(out, y)
        return loss + l2_penalty(params, wd, l2) if wd else loss

    batches = [lh._batch(i) for i in range(len(lh.batches))]
    fired = [0] * len(params)
    handles = []
    try:
        with warnings.catch_warnings(), eval_mode(model), math_attention(), torch.random.fork_rng(
                devices=[lh.device] if lh.device.type == "cuda" else []):
            warnings.filterwarnings("ignore", message=".*create_graph=True.*")
            torch.manual_seed(seed)
            for n, p in model.named_parameters():
                p.requires_grad_(n in selected)
            if lh.dtype in (torch.float64, torch.float32):
                torch.set_default_dtype(lh.dtype)
            cuda = lh.device.type == "cuda"
            if len(batches) == 1:
                h = PyHessian(model, criterion, data=batches[0], cuda=cuda)
                per_product = 1  # the gradient graph is built once, above; one pass per product
            else:
                h = PyHessian(model, criterion, dataloader=batches, cuda=cuda)
                per_product = 2 * len(batches)  # a gradient and a product pass per batch

            def hook(j):
                def count(_grad):
                    fired[j] += 1
                return count

            handles = [p.register_hook(hook(j)) for j, p in enumerate(params)]
            yield h, (lambda: max(fired) // per_product)
    finally:
        for hd in handles:
            hd.remove()
        torch.set_default_dtype(old_dtype)
        for n, p in model.named_parameters():
            p.requires_grad_(req[n])
            p.grad = None


def pyhessian_top(op: Any, k: int, which: str, tol: float, max_iter: Any, seed: int,
                  return_eigenvectors: bool, residual_tol: float = 1e-3) -> EigenResult:
    """pyhessian's ``eigenvalues(maxIter, tol, top_n=k)``; residuals from one extra matmat (not
    counted in ``n_products``); ``converged`` by the residual rule in the module doc."""
    if which != "LM":
        raise LandscapeError("backend='pyhessian' only computes largest-magnitude eigenvalues "
                             "(power iteration): use which='LM'")
    t0 = time.perf_counter()
    with pyhessian_session(op, seed) as (h, products):
        cap = max_iter if max_iter is not None else op.shape[0]
        vals, vecs = h.eigenvalues(maxIter=cap, tol=tol, top_n=k)
        n_prod = products()
        V = torch.stack([flatten([t.detach() for t in v]) for v in vecs], 1)
    wall = time.perf_counter() - t0
    vals = np.asarray(vals, dtype=np.float64)
    before = op.n_products
    HV = op.matmat(V.to(op.dtype))
    op.n_products = before + n_prod
    lam = torch.as_tensor(vals, dtype=V.dtype, device=V.device)
    res = (HV - V * lam).norm(dim=0).cpu().numpy().astype(np.float64)
    converged = bool(np.all(res <= residual_tol * np.abs(vals)))
    return EigenResult(vals, res, n_prod, converged, seed, "LM", tol, "pyhessian-power",
                       V if return_eigenvectors else None, n_prod, wall)


def pyhessian_trace(op: Any, n_probes: int, tol: float, seed: int) -> TraceResult:
    """pyhessian's Hutchinson ``trace(maxIter=n_probes, tol=tol)`` with its samples."""
    with pyhessian_session(op, seed) as (h, products):
        samples = np.asarray(h.trace(maxIter=n_probes, tol=tol), dtype=np.float64)
        n_prod = products()
    op.n_products += n_prod
    se = float(samples.std(ddof=1) / math.sqrt(len(samples))) if len(samples) > 1 else float("nan")
    return TraceResult(float(samples.mean()), se, n_prod, seed, "pyhessian-hutchinson", samples)


def pyhessian_density(*_args: Any, **_kw: Any):
    """Not available: pyhessian's ``density()`` calls ``torch.eig``, removed from PyTorch (2.x)."""
    raise LandscapeError("pyhessian's density() cannot run on this PyTorch: it calls torch.eig, "
                         "which PyTorch removed; use landscape.curvature.slq_density instead")
