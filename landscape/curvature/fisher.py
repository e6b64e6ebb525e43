"""The empirical Fisher of a model's loss, as a linear operator.

``F = (1/N) sum_n g_n g_n^T`` with ``g_n`` the gradient of sample n's own loss (the per-sample
loss, unscaled; for cross-entropy ``F.cross_entropy(out, y, reduction="none")``), over the N
samples of a batch; over several batches, the sample-weighted mean (so F is the mean of
``g_n g_n^T`` over every sample, the convention of curvlinops' ``EFLinearOperator`` for a mean
loss). F is positive semi-definite and its rank is at most N.

Products take no forward pass: per batch the per-sample losses' graph is kept (with
``retain_graph``, the default for one batch) with ``J^T u`` for a dummy ``u`` (``J`` the Jacobian
of the per-sample losses), so ``J v`` is one backward pass through it (double-vjp trick) and
``J^T (J v) / N`` one more. Shares everything else with
:class:`~landscape.curvature.hessian_operator.LossHessian`, so Lanczos, Hutchinson, Hutch++ and
SLQ take it as they take the Hessian.

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
from .hessian_operator import CURVATURE_CLASSES, LossHessian, math_attention


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


class EmpiricalFisherOperator(LossHessian):
    """``(1/N) sum_n g_n g_n^T`` (see module doc). Arguments as for
    :class:`~landscape.curvature.hessian_operator.LossHessian` without ``mode``, plus
    ``per_sample_loss(out, y) -> (N,)`` (default: cross-entropy without reduction, or
    ``loss_fn`` applied to each sample alone when a ``loss_fn`` is given)."""

    curvature = "ef"

    def __init__(self, model: Any, data: Any, *, per_sample_loss: Callable | None = None,
                 **kw: Any):
        kw.pop("mode", None)
        user_loss = kw.get("loss_fn")
        super().__init__(model, data, mode="double_backward", **kw)
        self.mode, self.mode_choice = "ef", None
        self.per_sample_loss = per_sample_losses(user_loss, per_sample_loss)
        self._ef: dict[int, tuple] = {}

    def _ef_graph(self, i: int) -> tuple:
        if i in self._ef:
            return self._ef[i]
        x, y = self._batch(i)
        with torch.enable_grad():
            with eval_mode(self.model), math_attention():
                losses = self.per_sample_loss(self.model(x), y).reshape(-1)
            if not torch.isfinite(losses).all():
                raise NonFiniteLossError(f"non-finite per-sample loss on batch {i}")
            u = torch.zeros_like(losses, requires_grad=True)
            ju = torch.autograd.grad(losses, self.params, grad_outputs=u, create_graph=True,
                                     allow_unused=True)
        keep = [j for j, g in enumerate(ju) if g is not None and g.requires_grad]
        entry = (losses, u, [ju[j] for j in keep], keep)
        if self.retain_graph:
            self._ef[i] = entry
        return entry

    def _ef_product(self, i: int, vs: list[torch.Tensor], batched: bool) -> list[torch.Tensor]:
        losses, u, ju, keep = self._ef_graph(i)
        if not ju:
            return [torch.zeros_like(v) for v in vs]
        with torch.enable_grad(), math_attention():
            (jv,) = torch.autograd.grad(ju, u, grad_outputs=[vs[j] for j in keep],
                                        retain_graph=True, is_grads_batched=batched)
            fv = torch.autograd.grad(losses, self.params, grad_outputs=jv / losses.shape[0],
                                     retain_graph=True, allow_unused=True,
                                     is_grads_batched=batched)
        return [torch.zeros_like(v) if h is None else h for h, v in zip(fv, vs, strict=True)]

    def _apply(self, V: torch.Tensor, batched: bool) -> torch.Tensor:
        V = V.to(self.device, self.dtype)
        vs = self.split(V.T.contiguous() if batched else V)
        out = self._batch_mean(lambda i: self._ef_product(i, vs, batched),
                               (V.shape[1],) if batched else ())
        return out.T if batched else out

    def resolved_mode(self) -> str:
        return self.mode

    def release_graphs(self) -> None:
        super().release_graphs()
        self._ef.clear()


CURVATURE_CLASSES["ef"] = EmpiricalFisherOperator
