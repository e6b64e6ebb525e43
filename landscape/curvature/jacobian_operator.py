"""The part the GGN and the empirical Fisher share: a
:class:`~landscape.curvature.base.CurvatureOperator` whose products go through a per-batch graph
of ``J^T u`` (``J`` the Jacobian of some per-batch outputs, ``u`` a dummy leaf, built with
``create_graph``), so ``J v`` is one backward pass (the double-vjp trick) and ``J^T w`` one more.
Subclasses build the graph (:meth:`_build`) and turn ``J v`` into the product (:meth:`_product`);
the data loop (batches, weighted mean, sharding, graph store kept when ``retain_graph``, the
default for one batch, dropped by ``release_graphs``) is the base's. There is one way of
computing the product, so there is no product mode: a ``mode`` other than "auto" is refused
(:func:`~landscape.curvature.base.check_curvature_options`), and ``mode`` reads the kind's name.
"""
from __future__ import annotations

from typing import Any

import torch

from ..settings import SpectrumSettings
from .base import CurvatureOperator, check_curvature_options, math_attention


class JacobianGraphOperator(CurvatureOperator):
    """Base of :class:`~landscape.curvature.ggn.GGNOperator` and
    :class:`~landscape.curvature.fisher.EmpiricalFisherOperator` (see module doc)."""

    def __init__(self, model: Any, data: Any, *, mode: str = SpectrumSettings.mode, **kw: Any):
        check_curvature_options(self.curvature, mode=mode)
        super().__init__(model, data, **kw)

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

    def batch_product(self, i: int, vs: list[torch.Tensor], batched: bool) -> list[torch.Tensor]:
        """Batch i's curvature times ``vs``: ``J v`` by one backward pass through the graph of
        ``J^T u``, then the kind's :meth:`_product`."""
        state, u, ju, keep = self._graph(i)
        if not ju:
            return [torch.zeros_like(v) for v in vs]
        with torch.enable_grad(), math_attention():
            (jv,) = torch.autograd.grad(ju, u, grad_outputs=[vs[j] for j in keep],
                                        retain_graph=True, is_grads_batched=batched)
            cv = self._product(state, jv, batched)
        return [torch.zeros_like(v) if h is None else h for h, v in zip(cv, vs, strict=True)]
