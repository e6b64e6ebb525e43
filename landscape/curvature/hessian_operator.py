"""The Hessian of a model's loss on data, as a linear operator.

:class:`LossHessian` is the Hessian of ``loss_fn(model(x), y)`` (mean cross-entropy by default)
with respect to the model's parameters (or a named subset), on one batch or averaged over a list
of batches (weighted by batch size). :class:`HessianOperator` is the same plus an optional L2 term
composed as a second operator (``LossHessian + l2_hessian``, see ``landscape.curvature.l2``).

Conventions: the model is put in eval mode for every forward pass (BN uses, never updates, its
running statistics; dropout off) and its modes are restored afterwards; every forward runs under
``sdpa_kernel(SDPBackend.MATH)`` (the fused attention kernels have no double backward); products
use ``torch.autograd.grad`` so nothing is ever written to ``.grad``.

Product modes (``mode=``): ``"double_backward"`` computes the gradient with ``create_graph=True``
once per batch, keeps that graph, and differentiates ``g . v`` per product (several vectors per
pass with ``is_grads_batched``); ``"forward_over_reverse"`` is ``torch.func.jvp`` of
``torch.func.grad`` (``vmap`` for several vectors); ``"auto"`` takes the choice recorded for the
same setting or measures inside the operator's first products, which are used as real products
(``curvature.modes``). ``n_products`` counts every product computed, measurement included.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn

from ..device import eval_mode
from ..errors import LandscapeError, NonFiniteLossError
from ..settings import SpectrumSettings
from . import mode_cache
from .base import (
    CURVATURES,
    Batch,
    CurvatureOperator,
    ParamSelector,
    check_curvature_options,
    cross_entropy,
    flatten,
    math_attention,
    select_names,
)
from .fisher import EmpiricalFisherOperator
from .ggn import GGNOperator
from .l2 import L2_KINDS, l2_hessian
from .modes import MODES, ModeChoice, ModeProbe, choose_mode, rule_for, timed_call
from .operators import SumOperator

__all__ = ["CURVATURES", "Batch", "CurvatureOperator", "HessianOperator", "LossHessian",
           "ParamSelector", "cross_entropy", "curvature_term_of", "data_term", "dense_hessian",
           "eval_mode", "flatten", "loss_hessian_of", "math_attention", "select_names"]


class LossHessian(CurvatureOperator):
    """Hessian of the loss w.r.t. the selected parameters, on one batch or averaged over batches.

    Arguments as for :class:`~landscape.curvature.base.CurvatureOperator` (model, data, loss_fn,
    params, augment, augment_seed, retain_graph, distributed, device), plus ``mode``: "auto" |
    "double_backward" | "forward_over_reverse" (module doc). With "double_backward" the retained
    graph of a batch is its gradient's (``create_graph=True``)."""

    curvature = "hessian"

    def __init__(self, model: nn.Module, data: Batch | Sequence[Batch], *,
                 mode: str = SpectrumSettings.mode, **kw: Any):
        if mode not in MODES:
            raise LandscapeError(f"mode must be one of {MODES}, got {mode!r}")
        super().__init__(model, data, **kw)
        self.mode = mode  # "auto" is resolved at the first product (cache or measurement)
        self.mode_choice = ModeChoice(mode) if mode != "auto" else None
        self._probe: ModeProbe | None = None

    @property
    def mode_timings(self) -> dict[str, float]:
        """Seconds per product of each mode measured by "auto" (empty when none was measured)."""
        return dict(self.mode_choice.seconds_per_product) if self.mode_choice else {}

    def _grad_graph(self, i: int) -> tuple[list[torch.Tensor], list[int]]:
        if i in self._graphs:
            return self._graphs[i]
        x, y = self._batch(i)
        with torch.enable_grad():
            loss = self._loss(x, y)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"non-finite loss {loss.item()} on batch {i}")
            gs = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        keep = [j for j, g in enumerate(gs) if g is not None and g.requires_grad]
        out = ([gs[j] for j in keep], keep)
        if self.retain_graph:
            self._graphs[i] = out
        return out

    def _hvp_double_backward(self, i: int, vs: list[torch.Tensor],
                             batched: bool) -> list[torch.Tensor]:
        gs, keep = self._grad_graph(i)
        if not gs:
            return [torch.zeros_like(v) for v in vs]
        with torch.enable_grad(), math_attention():
            hv = torch.autograd.grad(gs, self.params, grad_outputs=[vs[j] for j in keep],
                                     retain_graph=self.retain_graph, allow_unused=True,
                                     is_grads_batched=batched)
        return [torch.zeros_like(v) if h is None else h for h, v in zip(hv, vs, strict=False)]

    def _hvp_forward_over_reverse(self, i: int, vs: list[torch.Tensor],
                                  batched: bool) -> list[torch.Tensor]:
        return forward_over_reverse(self, i, vs, batched)

    def product_function(self, mode: str) -> Callable[[int, list[torch.Tensor], bool], list]:
        """The per-batch product of one mode: ``f(batch_index, per_tensor_vectors, batched)``."""
        return getattr(self, f"_hvp_{mode}")

    def batch_product(self, i: int, vs: list[torch.Tensor], batched: bool) -> list[torch.Tensor]:
        """Batch i's Hessian times ``vs`` in the resolved mode (see :meth:`_apply` for "auto")."""
        return self.product_function(self.mode)(i, vs, batched)

    def _apply(self, V: torch.Tensor, batched: bool) -> torch.Tensor:
        V = V.to(self.device, self.dtype)
        vs = self.split(V.T.contiguous() if batched else V)
        lead = (V.shape[1],) if batched else ()
        if self.mode == "auto":
            self._mode_from_cache()
        if self.mode == "auto":
            out = self._apply_probing(vs, batched, lead)
        else:
            out = self._batch_mean(lambda i: self.batch_product(i, vs, batched), lead)
        return out.T if batched else out

    def _mode_from_cache(self) -> None:
        """Take the recorded choice for this setting (rank 0's under torchrun), else the measured
        rule's for this device, else start measuring (once)."""
        if self._probe is not None:
            return
        hit = mode_cache.lookup(self.mode_cache_key())
        if self.distributed:
            from .. import distributed as D
            hit = D.broadcast_object(hit)
        if hit is not None:
            self.mode_choice = ModeChoice.from_dict(hit, source="cache")
        else:
            self.mode_choice = rule_for(self.device)
        if self.mode_choice is not None:
            self.mode = self.mode_choice.mode
        else:
            self._probe = ModeProbe()

    def _apply_probing(self, vs: list[torch.Tensor], batched: bool,
                       lead: tuple) -> torch.Tensor:
        """One real product while "auto" is measuring: the mode the probe schedule names, timed;
        after the last probe product the faster mode is kept and recorded (module doc)."""
        probe = self._probe
        assert probe is not None
        n_vec = lead[0] if lead else 1
        out = None
        while out is None:
            mode = probe.next_mode()
            fn = self.product_function(mode)
            if mode == "double_backward" and self.retain_graph:
                for b in self._local_indices():  # the graph is needed anyway: not timed
                    self._grad_graph(b)
            try:
                out, dt = timed_call(self.device, lambda fn=fn: self._batch_mean(
                    lambda i: fn(i, vs, batched), lead))
            except Exception as e:  # noqa: BLE001 - e.g. a model torch.func cannot trace
                if probe.done:
                    raise
                probe.fail(mode, e, stacklevel=6)
                continue
            if not probe.done:
                probe.record(mode, dt, n_vec)
        if probe.done:
            choice = probe.choice()
            if self.distributed:
                from .. import distributed as D
                choice = D.broadcast_object(choice)
            self.mode_choice, self.mode, self._probe = choice, choice.mode, None
            if choice.mode != "double_backward":
                self.release_graphs()
            if not probe.failed:
                mode_cache.store(self.mode_cache_key(), choice.to_dict())
        return out

    def resolved_mode(self) -> str:
        """The product mode, resolving "auto" now (the cache, else the probe schedule on a seeded
        vector: those products are discarded but counted in ``n_products``)."""
        if self.mode == "auto":
            self._mode_from_cache()
        if self.mode == "auto":
            local = self._local_indices()
            g = torch.Generator(device="cpu").manual_seed(0)
            v = torch.randn(self.shape[0], generator=g, dtype=torch.float64)
            self.mode_choice = choose_mode(self, local[0] if local else 0,
                                           self.split(v.to(self.device, self.dtype)), False)
            self.mode, self._probe = self.mode_choice.mode, None
            if not self.distributed:
                mode_cache.store(self.mode_cache_key(), self.mode_choice.to_dict())
        return self.mode

    def _batch_gradient(self, i: int) -> list[torch.Tensor | None]:
        """Batch i's gradient, from its retained gradient graph when double backward keeps one."""
        if self.mode in ("auto", "double_backward") and self.retain_graph:
            gs, keep = self._grad_graph(i)
            full: list[torch.Tensor | None] = [None] * len(self.params)
            for j, g in zip(keep, gs, strict=False):
                full[j] = g
            return full
        return super()._batch_gradient(i)


def forward_over_reverse(op: LossHessian, i: int, vs: list[torch.Tensor],
                         batched: bool) -> list[torch.Tensor]:
    """Products with batch i's Hessian by ``torch.func.jvp`` of ``torch.func.grad`` (``vmap``
    over the vectors when ``batched``)."""
    from torch.func import functional_call, grad, jvp, vmap
    x, y = op._batch(i)
    primals = tuple(p.detach() for p in op.params)

    def loss_of(ps):
        params = dict(zip(op.names, ps, strict=True))
        return op.loss_fn(functional_call(op.model, params, (x,), strict=False), y)

    g = grad(loss_of)

    def hvp(t):
        return jvp(g, (primals,), (t,))[1]

    with torch.enable_grad(), eval_mode(op.model), math_attention():
        return list(vmap(hvp)(tuple(vs))) if batched else list(hvp(tuple(vs)))


#: The curvature kinds' operator classes (siblings on :class:`CurvatureOperator`).
CURVATURE_CLASSES: dict[str, type[CurvatureOperator]] = {
    "hessian": LossHessian, "ggn": GGNOperator, "ef": EmpiricalFisherOperator}


def data_term(model: nn.Module, data: Batch | Sequence[Batch], curvature: str = "hessian",
              **kw: Any) -> CurvatureOperator:
    """The loss's curvature operator of kind ``curvature``: "hessian" (:class:`LossHessian`),
    "ggn" (:class:`~landscape.curvature.ggn.GGNOperator`) or "ef"
    (:class:`~landscape.curvature.fisher.EmpiricalFisherOperator`). ``mode`` is the Hessian's
    only: another kind given a mode other than "auto" is refused
    (:func:`~landscape.curvature.base.check_curvature_options`)."""
    check_curvature_options(curvature, mode=kw.get("mode", "auto"))
    if curvature != "hessian":
        kw.pop("mode", None)
    return CURVATURE_CLASSES[curvature](model, data, **kw)


class HessianOperator(SumOperator):
    """``LossHessian(model, data, **kw)`` plus, when ``wd`` is non-zero, the Hessian of the L2
    term ``l2`` ("half": ``+ wd I``; "paper": of ``wd * sum_p ||p||_2``), composed as a sum of
    operators. Attributes of the loss Hessian (``model``, ``gradient``, ``free``...) are exposed.
    ``curvature="ggn"`` or ``"ef"`` puts the GGN or the empirical Fisher of the loss in place of
    its Hessian (a ``mode`` other than "auto" is then refused); the L2 term is added the same
    way."""

    def __init__(self, model: nn.Module, data: Batch | Sequence[Batch], *,
                 wd: float = SpectrumSettings.wd, l2: str = SpectrumSettings.l2,
                 curvature: str = SpectrumSettings.curvature, **kw: Any):
        if l2 not in L2_KINDS:
            raise LandscapeError(f"l2 must be one of {L2_KINDS}, got {l2!r}")
        loss = data_term(model, data, curvature, **kw)
        self.wd, self.l2 = float(wd), l2
        terms = [loss] + ([l2_hessian(loss.params, self.wd, l2)] if self.wd else [])
        self.terms = terms
        self.shape, self.dtype, self.device = loss.shape, loss.dtype, loss.device

    @property
    def loss(self) -> CurvatureOperator:
        """The data term (the Hessian, GGN or empirical Fisher of the loss)."""
        return self.terms[0]  # type: ignore[return-value]

    def config(self) -> dict[str, Any]:
        """Settings that define this operator (for result files)."""
        return self.loss.config() | {"wd": self.wd, "l2": self.l2}


def curvature_term_of(op: Any) -> CurvatureOperator | None:
    """The :class:`CurvatureOperator` inside ``op`` (itself or a sum's first term), else None."""
    if isinstance(op, CurvatureOperator):
        return op
    if isinstance(op, SumOperator) and isinstance(op.terms[0], CurvatureOperator):
        return op.terms[0]
    return None


def loss_hessian_of(op: Any) -> LossHessian | None:
    """The :class:`LossHessian` inside ``op`` (itself or a sum's first term), else None (also
    for the GGN and the empirical Fisher, which are not Hessians)."""
    term = curvature_term_of(op)
    return term if isinstance(term, LossHessian) else None


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                  loss_fn: Callable | None = None, params: ParamSelector = None,
                  method: str = "func") -> torch.Tensor:
    """Reference: the full Hessian of the loss by ``torch.func.hessian`` of ``functional_call``
    (``method="func"``) or ``torch.autograd.functional.hessian`` ("autograd"); tiny models only.

    Known torch 2.13 defect: torch.func.hessian of F.layer_norm is wrong and asymmetric; use
    models without nn.LayerNorm as references, or method="autograd"."""
    from torch.func import functional_call, hessian
    loss_fn = loss_fn or cross_entropy
    names = select_names(model, params)
    pdict = dict(model.named_parameters())
    primals = tuple(pdict[n].detach() for n in names)
    numels = [p.numel() for p in primals]

    def f(ps):
        params = dict(zip(names, ps, strict=True))
        return loss_fn(functional_call(model, params, (x,), strict=False), y)

    with eval_mode(model), math_attention():
        if method == "autograd":
            blocks = torch.autograd.functional.hessian(lambda *ps: f(ps), primals)
        else:
            blocks = hessian(f)(primals)
    rows = [torch.cat([blocks[i][j].reshape(numels[i], numels[j]) for j in range(len(primals))], 1)
            for i in range(len(primals))]
    return torch.cat(rows, 0).detach()
