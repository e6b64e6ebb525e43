"""The empirical Fisher of a model's loss, as a linear operator.

``F = (1/N) sum_n g_n g_n^T`` with ``g_n`` the gradient of sample n's own loss (the per-sample
loss, unscaled; for cross-entropy ``F.cross_entropy(out, y, reduction="none")``), over the N
samples of a batch; over several batches, the sample-weighted mean (so F is the mean of
``g_n g_n^T`` over every sample, the convention of curvlinops' ``EFLinearOperator`` for a mean
loss). F is positive semi-definite and its rank is at most N.

Products take no forward pass: per batch the per-sample losses' graph is kept (with
``retain_graph``, the default for one batch) with ``J^T u`` for a dummy ``u`` (``J`` the Jacobian
of the per-sample losses), so ``J v`` is one backward pass through it (double-vjp trick) and
``J^T (J v) / N`` one more. The data loop is
:class:`~landscape.curvature.base.CurvatureOperator`'s (a sibling of the Hessian's), so Lanczos,
Hutchinson, Hutch++ and SLQ take it as they take the Hessian.

>>> import torch
>>> lin = torch.nn.Linear(2, 2, bias=False).double()
>>> x = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
>>> y = torch.tensor([0, 1])
>>> F = EmpiricalFisherOperator(lin, (x, y)).dense()
>>> per_sample = [torch.autograd.grad(torch.nn.functional.cross_entropy(lin(x[n:n + 1]),
...               y[n:n + 1]), lin.weight)[0].reshape(-1) for n in range(2)]
>>> ref = sum(torch.outer(g, g) for g in per_sample) / 2
>>> bool(torch.allclose(F, ref, atol=1e-14)), int(torch.linalg.matrix_rank(F))
(True, 2)
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..device import eval_mode
from ..errors import NonFiniteLossError
from .base import math_attention
from .jacobian_operator import JacobianGraphOperator


def per_sample_losses(loss_fn: Callable | None,
                      per_sample_loss: Callable | None) -> Callable[[Any, Any], torch.Tensor]:
    """``f(out, y) -> (N,)`` losses: the given per-sample function; cross-entropy without
    reduction when neither is given; else ``loss_fn`` on each sample alone."""
    if per_sample_loss is not None:
        return per_sample_loss
    if loss_fn is None:
        return lambda out, y: F.cross_entropy(out, y, reduction="none")
    return lambda out, y: torch.stack([loss_fn(out[n:n + 1], y[n:n + 1])
                                       for n in range(out.shape[0])])


class EmpiricalFisherOperator(JacobianGraphOperator):
    """``(1/N) sum_n g_n g_n^T`` (see module doc). Arguments as for
    :class:`~landscape.curvature.base.CurvatureOperator` (no ``mode``), plus
    ``per_sample_loss(out, y) -> (N,)`` (default: cross-entropy without reduction, or
    ``loss_fn`` applied to each sample alone when a ``loss_fn`` is given)."""

    curvature = "ef"

    def __init__(self, model: Any, data: Any, *, per_sample_loss: Callable | None = None,
                 **kw: Any):
        self.per_sample_loss = per_sample_losses(kw.get("loss_fn"), per_sample_loss)
        super().__init__(model, data, **kw)

    def _build(self, i: int) -> tuple[tuple, torch.Tensor, list[torch.Tensor]]:
        x, y = self._batch(i)
        with torch.enable_grad():
            with eval_mode(self.model), math_attention():
                losses = self.per_sample_loss(self.model(x), y).reshape(-1)
            if not torch.isfinite(losses).all():
                raise NonFiniteLossError(f"non-finite per-sample loss on batch {i}")
            u = torch.zeros_like(losses, requires_grad=True)
            ju = torch.autograd.grad(losses, self.params, grad_outputs=u, create_graph=True,
                                     allow_unused=True)
        return (losses,), u, list(ju)

    def _product(self, state: tuple, jv: torch.Tensor,
                 batched: bool) -> tuple[torch.Tensor | None, ...]:
        (losses,) = state
        return torch.autograd.grad(losses, self.params, grad_outputs=jv / losses.shape[0],
                                   retain_graph=True, allow_unused=True,
                                   is_grads_batched=batched)

