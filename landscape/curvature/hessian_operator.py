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

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..device import eval_mode
from ..errors import LandscapeError, NonFiniteLossError
from . import mode_cache
from .l2 import L2_KINDS, l2_hessian
from .modes import MODES, ModeChoice, ModeProbe, choose_mode, rule_for, timed_call
from .operators import LinearOperator, SumOperator

Batch = tuple[torch.Tensor, torch.Tensor]
ParamSelector = None | str | Sequence[str] | Callable[[str], bool]


def math_attention():
    """Context forcing scaled_dot_product_attention onto the MATH kernel (double-differentiable)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel(SDPBackend.MATH)


def select_names(model: nn.Module, params: ParamSelector) -> list[str]:
    """Names of the selected parameters (see :class:`LossHessian`)."""
    named = list(model.named_parameters())
    if params is None:
        names = [n for n, p in named if p.requires_grad]
    elif callable(params) and not isinstance(params, str):
        names = [n for n, p in named if params(n)]
    else:
        wanted = [params] if isinstance(params, str) else list(params)
        names = [n for n, _ in named
                 if any(n == w or n.startswith(w + ".") or w == "" for w in wanted)]
        unknown = [w for w in wanted if not any(n == w or n.startswith(w + ".") for n, _ in named)]
        if unknown:
            raise LandscapeError(f"no parameters named or under {unknown} in the model")
    if not names:
        raise LandscapeError("the parameter selection is empty")
    return names


def cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (the NLL of the softmax outputs)."""
    return F.cross_entropy(out, y)


def flatten(ts: Sequence[torch.Tensor], lead: int = 0) -> torch.Tensor:
    """Per-tensor pieces -> one flat vector (keeping ``lead`` leading dimensions)."""
    return torch.cat([t.reshape(*t.shape[:lead], -1) for t in ts], dim=-1)


class LossHessian(LinearOperator):
    """Hessian of the loss w.r.t. the selected parameters, on one batch or averaged over batches.

    Args:
        model: any ``nn.Module``; its parameters are used in place (not copied).
        data: one batch ``(x, y)`` or a sequence of batches; the operator for several batches is
            ``sum_b n_b H_b / sum_b n_b`` (the Hessian of the mean loss over all samples).
        loss_fn: ``loss_fn(output, y)``, mean over the batch; default cross-entropy (NLL).
        params: ``None`` (all parameters requiring grad), a name or module prefix or a list of
            them (e.g. ``"blocks.0"``), or a predicate on parameter names.
        augment: ``augment(x, generator) -> x`` applied once per batch with the generator seeded
            by ``augment_seed + batch_index``; the augmented batch is cached.
        mode: "auto" | "double_backward" | "forward_over_reverse".
        retain_graph: keep each batch's gradient graph between products (double backward); default
            True for one batch, False for several (memory).
        distributed: shard the batches over ``landscape.distributed`` ranks and all-reduce the
            products (every rank must pass the same full list of batches).
        device: where the batches go; default the parameters' device.
    """

    curvature = "hessian"  # the GGN and empirical-Fisher subclasses say "ggn" / "ef"

    def __init__(self, model: nn.Module, data: Batch | Sequence[Batch], *,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 params: ParamSelector = None,
                 augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                 augment_seed: int = 0, mode: str = "auto",
                 retain_graph: bool | None = None, distributed: bool = False,
                 device: torch.device | None = None):
        if mode not in MODES:
            raise LandscapeError(f"mode must be one of {MODES}, got {mode!r}")
        self.model = model
        if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
            batches = [tuple(data)]
        else:
            batches = [tuple(b) for b in data]
        if not batches:
            raise LandscapeError("no batches given to the Hessian operator")
        self.batches: list[Batch] = batches  # type: ignore[assignment]
        self.loss_fn = loss_fn or cross_entropy
        self.names = select_names(model, params)
        pdict = dict(model.named_parameters())
        self.params = [pdict[n] for n in self.names]
        self.shapes = [p.shape for p in self.params]
        self.numels = [p.numel() for p in self.params]
        n = sum(self.numels)
        self.shape = (n, n)
        self.dtype = self.params[0].dtype
        self.device = torch.device(device) if device is not None else self.params[0].device
        self.augment = augment
        self.augment_seed = int(augment_seed)
        self.mode = mode  # "auto" is resolved at the first product (cache or measurement)
        self.mode_choice = ModeChoice(mode) if mode != "auto" else None
        self._probe: ModeProbe | None = None
        self.retain_graph = (len(batches) == 1) if retain_graph is None else bool(retain_graph)
        self.distributed = bool(distributed)
        self.n_products = 0
        self.n_samples = sum(int(b[0].shape[0]) for b in batches)
        self._graphs: dict[int, tuple[list[torch.Tensor], list[int]]] = {}
        self._xcache: dict[int, Batch] = {}

    @property
    def mode_timings(self) -> dict[str, float]:
        """Seconds per product of each mode measured by "auto" (empty when none was measured)."""
        return dict(self.mode_choice.seconds_per_product) if self.mode_choice else {}

    def config(self) -> dict[str, Any]:
        """Settings that define this operator (for result files)."""
        return {"curvature": self.curvature, "n_params": self.shape[0],
                "n_batches": len(self.batches),
                "n_samples": self.n_samples, "params": self.names if len(self.names) < 50 else
                f"{len(self.names)} tensors",
                "augment": repr(self.augment) if self.augment is not None else None,
                "augment_seed": self.augment_seed, "mode": self.mode,
                "mode_choice": self.mode_choice.to_dict() if self.mode_choice else None,
                "dtype": str(self.dtype), "distributed": self.distributed}

    def mode_cache_key(self) -> dict[str, Any]:
        """The key of this operator's product-mode choice in the persistent cache
        (:mod:`landscape.curvature.mode_cache`)."""
        shapes = sorted({tuple(int(d) for d in b[0].shape) for b in self.batches})
        loss = getattr(self.loss_fn, "__qualname__", type(self.loss_fn).__qualname__)
        extra = (f"loss={loss};batches={len(self.batches)};retain={self.retain_graph};"
                 f"augment={self.augment is not None};distributed={self.distributed}")
        return mode_cache.mode_key(self.model, self.shape[0], self.dtype, self.device, shapes,
                                   extra)

    def split(self, v: torch.Tensor) -> list[torch.Tensor]:
        """Flat (n,) or (m, n) -> per-parameter tensors (with the leading m kept)."""
        lead = v.shape[:-1]
        return [c.reshape(*lead, *s)
                for c, s in zip(torch.split(v, self.numels, dim=-1), self.shapes, strict=False)]

    flatten = staticmethod(flatten)

    def param_vector(self) -> torch.Tensor:
        """The selected parameters as one flat vector (detached copy)."""
        return flatten([p.detach() for p in self.params])

    def _local_indices(self) -> list[int]:
        idx = list(range(len(self.batches)))
        if self.distributed:
            from .. import distributed as D
            return D.shard(idx)
        return idx

    def _batch(self, i: int) -> Batch:
        if i in self._xcache:
            return self._xcache[i]
        x, y = self.batches[i]
        x = x.to(self.device, self.dtype if x.is_floating_point() else x.dtype)
        y = y.to(self.device)
        if self.augment is not None:
            g = torch.Generator(device="cpu").manual_seed(self.augment_seed + i)
            with torch.no_grad():
                x = self.augment(x, g)
        self._xcache[i] = (x, y)
        return x, y

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with eval_mode(self.model), math_attention():
            return self.loss_fn(self.model(x), y)

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

    def _batch_mean(self, per_batch: Callable[[int], list[torch.Tensor]],
                    lead_shape: tuple) -> torch.Tensor:
        """``sum_b n_b f(b) / sum_b n_b`` over this rank's batches, flattened to
        ``(*lead_shape, n)``, all-reduced when distributed; one local batch is taken as is."""
        acc: list[torch.Tensor] | None = None
        single = len(self.batches) == 1 and not self.distributed
        for i in self._local_indices():
            parts = [t.detach() for t in per_batch(i)]
            n_b = self.batches[i][0].shape[0]
            if single:
                acc = parts
            elif acc is None:
                acc = [t * n_b for t in parts]
            else:
                for a, t in zip(acc, parts, strict=False):
                    a.add_(t, alpha=n_b)
        out = flatten(acc, len(lead_shape)) if acc is not None else \
            torch.zeros((*lead_shape, self.shape[0]), dtype=self.dtype, device=self.device)
        if single:
            return out
        if self.distributed:
            from .. import distributed as D
            D.all_reduce_sum(out)
        return out / self.n_samples

    def _apply(self, V: torch.Tensor, batched: bool) -> torch.Tensor:
        V = V.to(self.device, self.dtype)
        vs = self.split(V.T.contiguous() if batched else V)
        lead = (V.shape[1],) if batched else ()
        if self.mode == "auto":
            self._mode_from_cache()
        if self.mode == "auto":
            out = self._apply_probing(vs, batched, lead)
        else:
            hvp = self.product_function(self.mode)
            out = self._batch_mean(lambda i: hvp(i, vs, batched), lead)
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

    def gradient(self) -> torch.Tensor:
        """The flat gradient of the loss at the current parameters: the sample-weighted mean over
        the batches, all-reduced when distributed; reuses a retained graph when there is one."""
        def grads(i: int) -> list[torch.Tensor]:
            if self.mode in ("auto", "double_backward") and self.retain_graph:
                gs, keep = self._grad_graph(i)
                full: list[torch.Tensor | None] = [None] * len(self.params)
                for j, g in zip(keep, gs, strict=False):
                    full[j] = g
            else:
                x, y = self._batch(i)
                with torch.enable_grad():
                    full = list(torch.autograd.grad(self._loss(x, y), self.params,
                                                    allow_unused=True))
            return [torch.zeros_like(p) if g is None else g
                    for g, p in zip(full, self.params, strict=True)]

        return self._batch_mean(grads, ())

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H @ v`` for a flat vector v of length n (torch in, torch out)."""
        if v.ndim != 1 or v.shape[0] != self.shape[0]:
            raise LandscapeError(f"expected a vector of length {self.shape[0]}, "
                                 f"got {tuple(v.shape)}")
        self.n_products += 1
        return self._apply(v, batched=False)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``H @ V`` for V of shape (n, m): all m vectors in one backward (or vmapped jvp) pass."""
        if V.ndim != 2 or V.shape[0] != self.shape[0]:
            raise LandscapeError(f"expected shape ({self.shape[0]}, m), got {tuple(V.shape)}")
        self.n_products += V.shape[1]
        if V.shape[1] == 1:
            return self._apply(V[:, 0], batched=False)[:, None]
        try:
            return self._apply(V, batched=True)
        except RuntimeError as e:  # an op without a batching rule: fall back to a loop
            warnings.warn(f"batched Hessian products unavailable ({str(e).splitlines()[0][:120]}); "
                          "looping over vectors", stacklevel=2)
            return torch.stack([self._apply(V[:, j], batched=False) for j in range(V.shape[1])], 1)

    def release_graphs(self) -> None:
        """Drop the retained gradient graphs (keep the cached batches)."""
        self._graphs.clear()

    def free(self) -> None:
        """Drop the retained graphs and cached batches."""
        self.release_graphs()
        self._xcache.clear()


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


CURVATURES = ("hessian", "ggn", "ef")
#: The curvature kinds' operator classes; ``ggn.py`` and ``fisher.py`` add theirs when imported
#: (``landscape.curvature`` imports both), so this module imports neither (no import circle).
CURVATURE_CLASSES: dict[str, type] = {}


def data_term(model: nn.Module, data: Batch | Sequence[Batch], curvature: str = "hessian",
              **kw: Any) -> LossHessian:
    """The loss's curvature operator of kind ``curvature``: "hessian" (:class:`LossHessian`),
    "ggn" (:class:`~landscape.curvature.ggn.GGNOperator`) or "ef"
    (:class:`~landscape.curvature.fisher.EmpiricalFisherOperator`)."""
    cls = {"hessian": LossHessian, **CURVATURE_CLASSES}.get(curvature)
    if cls is not None:
        return cls(model, data, **kw)
    raise LandscapeError(f"curvature must be one of {CURVATURES}, got {curvature!r}")


class HessianOperator(SumOperator):
    """``LossHessian(model, data, **kw)`` plus, when ``wd`` is non-zero, the Hessian of the L2
    term ``l2`` ("half": ``+ wd I``; "paper": of ``wd * sum_p ||p||_2``), composed as a sum of
    operators. Attributes of the loss Hessian (``model``, ``gradient``, ``free``...) are exposed.
    ``curvature="ggn"`` or ``"ef"`` puts the GGN or the empirical Fisher of the loss in place of
    its Hessian (``mode`` is then ignored); the L2 term is added the same way."""

    def __init__(self, model: nn.Module, data: Batch | Sequence[Batch], *, wd: float = 0.0,
                 l2: str = "half", curvature: str = "hessian", **kw: Any):
        if l2 not in L2_KINDS:
            raise LandscapeError(f"l2 must be one of {L2_KINDS}, got {l2!r}")
        loss = data_term(model, data, curvature, **kw)
        self.wd, self.l2 = float(wd), l2
        terms = [loss] + ([l2_hessian(loss.params, self.wd, l2)] if self.wd else [])
        self.terms = terms
        self.shape, self.dtype, self.device = loss.shape, loss.dtype, loss.device

    @property
    def loss(self) -> LossHessian:
        """The data term."""
        return self.terms[0]  # type: ignore[return-value]

    def config(self) -> dict[str, Any]:
        """Settings that define this operator (for result files)."""
        return self.loss.config() | {"wd": self.wd, "l2": self.l2}


def loss_hessian_of(op: Any) -> LossHessian | None:
    """The :class:`LossHessian` inside ``op`` (itself or a sum's first term), else None."""
    if isinstance(op, LossHessian):
        return op
    if isinstance(op, SumOperator) and isinstance(op.terms[0], LossHessian):
        return op.terms[0]
    return None


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
