"""The part the GGN and the empirical Fisher share: a :class:`LossHessian` whose products go
through a per-batch graph of ``J^T u`` (``J`` the Jacobian of some per-batch outputs, ``u`` a
dummy leaf, built with ``create_graph``), so ``J v`` is one backward pass (the double-vjp trick)
and ``J^T w`` one more. Subclasses build the graph (:meth:`_build`) and turn ``J v`` into the
product (:meth:`_product`); graphs are kept per batch when ``retain_graph`` (the default for one
batch) and dropped by :meth:`release_graphs`."""
from __future__ import annotations

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
        self._graphs: dict[int, tuple] = {}

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

    def _apply(self, V: torch.Tensor, batched: bool) -> torch.Tensor:
        V = V.to(self.device, self.dtype)
        vs = self.split(V.T.contiguous() if batched else V)
        out = self._batch_mean(lambda i: self._batch_product(i, vs, batched),
                               (V.shape[1],) if batched else ())
        return out.T if batched else out

    def resolved_mode(self) -> str:
        return self.mode

    def release_graphs(self) -> None:
        super().release_graphs()
        self._graphs.clear()
