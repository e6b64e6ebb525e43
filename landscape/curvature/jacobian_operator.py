"""The part the GGN and the empirical Fisher share: a :class:`LossHessian` whose products go
through a per-batch graph of ``J^T u`` (``J`` the Jacobian of some per-batch outputs, ``u`` a
dummy leaf, built with ``create_graph``), so ``J v`` is one backward pass (the double-vjp trick)
and ``J^T w`` one more. Subclasses build the graph (:meth:`_build`) and turn ``J v`` into the
product (:meth:`_product`). The rest is :class:`LossHessian`'s: its ``_apply`` calls
:meth:`product_function` (here always the double-vjp product), the graphs live in its per-batch
graph store (kept when ``retain_graph``, the default for one batch; dropped by
``release_graphs``; the Hessian's own gradient graphs never enter it, as they are built only in
the modes "auto" and "double_backward"), and the mode is the curvature's name, so nothing is
probed."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .hessian_operator import LossHessian, math_attention


class JacobianGraphOperator(LossHessian):
    """Base of :class:`~landscape.curvature.ggn.GGNOperator` and
    :class:`~landscape.curvature.fisher.EmpiricalFisherOperator` (see module doc)."""

    curvature = ""

    def __init__(self, model: Any, data: Any, **kw: Any):
        kw.pop("mode", None)
        super().__init__(model, data, mode="double_backward", **kw)
        self.mode, self.mode_choice = self.curvature, None

    def _build(self, i: int) -> tuple[tuple, torch.Tensor, list[torch.Tensor]]:
        """Batch i's subclass state, the dummy leaf ``u`` and ``J^T u`` per parameter (None
        where a parameter does not reach the outputs)."""
        raise NotImplementedError

    def _product(self, state: tuple, jv: torch.Tensor,
                 batched: bool) -> tuple[torch.Tensor | None, ...]:
        """The curvature product per parameter, given ``J v`` (with graphs kept)."""
        raise NotImplementedError

    def _graph(self, i: int) -> tuple:
        if i in self._graphs:
            return self._graphs[i]
        state, u, ju = self._build(i)
        keep = [j for j, g in enumerate(ju) if g is not None and g.requires_grad]
        entry = (state, u, [ju[j] for j in keep], keep)
        if self.retain_graph:
            self._graphs[i] = entry
        return entry

    def _batch_product(self, i: int, vs: list[torch.Tensor], batched: bool) -> list[torch.Tensor]:
        state, u, ju, keep = self._graph(i)
        if not ju:
            return [torch.zeros_like(v) for v in vs]
        with torch.enable_grad(), math_attention():
            (jv,) = torch.autograd.grad(ju, u, grad_outputs=[vs[j] for j in keep],
                                        retain_graph=True, is_grads_batched=batched)
            cv = self._product(state, jv, batched)
        return [torch.zeros_like(v) if h is None else h for h, v in zip(cv, vs, strict=True)]

    def product_function(self, mode: str) -> Callable[[int, list[torch.Tensor], bool], list]:
        """The per-batch product: one for every mode (there is no choice to make)."""
        return self._batch_product
