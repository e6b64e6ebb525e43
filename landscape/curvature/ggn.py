"""The generalized Gauss-Newton matrix of a model's loss, as a linear operator.

For a loss ``L(theta) = loss_fn(f(x; theta), y)`` the Hessian is ``J^T H_out J`` plus a residual
term (the output's second derivative weighted by the loss gradient); the GGN keeps the first part,
``G = J^T H_out J``, with ``J = d f / d theta`` (the Jacobian of the model's outputs) and ``H_out``
the Hessian of the loss with respect to those outputs. For cross-entropy, ``H_out`` is positive
semi-definite, so G is too, and G equals the Fisher information of the model's predictive
distribution. Over several batches, G is their sample-weighted mean (as for the Hessian).

Products take no forward pass: per batch the outputs' graph is kept (with ``retain_graph``, the
default for one batch) together with ``J^T u`` for a dummy ``u`` built with ``create_graph``, so
``J v`` is one backward pass through that graph (the double-vjp trick), ``H_out (J v)`` a product
on the small loss-only graph, and ``J^T w`` one backward pass through the outputs' graph.

The data loop (batches, parameter selection, augmentation, eval mode, torchrun sharding,
``n_products``) is :class:`~landscape.curvature.base.CurvatureOperator`'s, shared with its sibling
:class:`~landscape.curvature.hessian_operator.LossHessian`, so Lanczos, Hutchinson, Hutch++ and
SLQ take it as they take the Hessian, and ``H - G`` is the Hessian's residual term.

>>> import torch
>>> lin = torch.nn.Linear(2, 3).double()   # a linear model: the GGN is the Hessian
>>> x = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
>>> y = torch.tensor([0, 2])
>>> from landscape.curvature import HessianOperator
>>> G, H = GGNOperator(lin, (x, y)).dense(), HessianOperator(lin, (x, y)).dense()
>>> bool(torch.allclose(G, H, atol=1e-12)), tuple(G.shape)
(True, (9, 9))
>>> bool(torch.linalg.eigvalsh(G).min() > -1e-12)   # positive semi-definite
True
"""
from __future__ import annotations

import torch

from ..device import eval_mode
from ..errors import NonFiniteLossError
from .base import math_attention
from .jacobian_operator import JacobianGraphOperator


class GGNOperator(JacobianGraphOperator):
    """``G = J^T H_out J`` of ``loss_fn(model(x), y)`` (see module doc). Arguments as for
    :class:`~landscape.curvature.base.CurvatureOperator` (one way of computing products: no
    ``mode`` to choose; a mode other than "auto" is refused)."""

    curvature = "ggn"

    def _build(self, i: int) -> tuple[tuple, torch.Tensor, list[torch.Tensor]]:
        """Batch i's outputs (with their graph), the output leaf and the loss gradient at it
        (with graph); the dummy u; ``J^T u``."""
        x, y = self._batch(i)
        with torch.enable_grad():
            with eval_mode(self.model), math_attention():
                out = self.model(x)
            o = out.detach().requires_grad_(True)
            loss = self.loss_fn(o, y)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"non-finite loss {loss.item()} on batch {i}")
            (gl,) = torch.autograd.grad(loss, o, create_graph=True)
            u = torch.zeros_like(out, requires_grad=True)
            ju = torch.autograd.grad(out, self.params, grad_outputs=u, create_graph=True,
                                     allow_unused=True)
        return (out, o, gl), u, list(ju)

    def _product(self, state: tuple, jv: torch.Tensor,
                 batched: bool) -> tuple[torch.Tensor | None, ...]:
        out, o, gl = state
        hjv = None
        if gl.requires_grad:
            (hjv,) = torch.autograd.grad(gl, o, grad_outputs=jv, retain_graph=True,
                                         allow_unused=True, is_grads_batched=batched)
        if hjv is None:  # a loss linear in the outputs: H_out = 0
            hjv = torch.zeros_like(jv)
        return torch.autograd.grad(out, self.params, grad_outputs=hjv, retain_graph=True,
                                   allow_unused=True, is_grads_batched=batched)

