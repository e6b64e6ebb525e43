"""L2 terms of the loss and their Hessians, as operators to add to a loss Hessian.

Two conventions:

- ``"half"``: ``wd * 0.5 * ||theta||^2`` (PyTorch's ``weight_decay``); Hessian ``wd * I``.
- ``"paper"``: ``wd * sum_p ||p||_2`` over the parameter tensors p, the term the paper's code
  adds to the NLL (xxxnell/how-do-vits-work, ``ops/loss_landscapes.py``); its Hessian is block
  diagonal with blocks ``wd * (I / ||p|| - p p^T / ||p||^3)``.

``HessianOperator(..., wd=..., l2=...)`` is ``LossHessian + l2_hessian(...)``; the sum is a
:class:`~landscape.curvature.operators.SumOperator`.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from ..errors import LandscapeError
from .operators import LinearOperator, ScaledIdentity

L2_KINDS = ("half", "paper")


def l2_penalty(params: Sequence[torch.Tensor], wd: float, kind: str = "half") -> torch.Tensor:
    """The L2 term's value: ``wd/2 * sum ||p||^2`` ("half") or ``wd * sum ||p||_2`` ("paper")."""
    _check_kind(kind)
    if kind == "half":
        return 0.5 * wd * sum((p * p).sum() for p in params)
    return wd * sum(p.norm() for p in params)


class PaperL2Hessian(LinearOperator):
    """Hessian of ``wd * sum_p ||p||_2`` at the given tensors (values copied at construction)."""

    def __init__(self, params: Sequence[torch.Tensor], wd: float):
        self.wd = float(wd)
        self.flat = [p.detach().reshape(-1).clone() for p in params]
        self.numels = [t.numel() for t in self.flat]
        n = sum(self.numels)
        self.shape = (n, n)
        self.dtype = self.flat[0].dtype
        self.device = self.flat[0].device
        self.n_products = 0
        self.norms = [float(t.norm()) for t in self.flat]
        if any(r == 0.0 for r in self.norms):
            warnings.warn("l2='paper': a parameter tensor is zero; its L2 Hessian is undefined, "
                          "using 0", stacklevel=2)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        V = V.to(self.device, self.dtype)
        parts = []
        for p, r, v in zip(self.flat, self.norms, torch.split(V, self.numels, dim=0), strict=False):
            if r == 0.0:
                parts.append(torch.zeros_like(v))
                continue
            parts.append(v / r - p[:, None] * (p @ v)[None, :] / r ** 3)
        return self.wd * torch.cat(parts, dim=0)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.matmat(v[:, None])[:, 0]


def l2_hessian(params: Sequence[torch.Tensor], wd: float, kind: str = "half") -> LinearOperator:
    """The Hessian of the L2 term (see module doc) as an operator on the flat parameter vector."""
    _check_kind(kind)
    n = sum(p.numel() for p in params)
    if kind == "half":
        return ScaledIdentity(n, wd, params[0].dtype, params[0].device)
    return PaperL2Hessian(params, wd)


def _check_kind(kind: str) -> None:
    if kind not in L2_KINDS:
        raise LandscapeError(f"l2 must be one of {L2_KINDS}, got {kind!r}")
