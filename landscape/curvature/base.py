"""What every curvature kind of a model's loss shares: the data loop.

:class:`CurvatureOperator` is a symmetric ``n x n`` matrix of the loss ``loss_fn(model(x), y)``
with respect to the model's parameters (or a named subset), on one batch or as the sample-weighted
mean over a list of batches. It owns the batches (device, dtype, seeded augmentation, cached),
the parameter selection, eval mode and the MATH attention kernel, the per-batch graph store,
the weighted mean over batches (sharded and all-reduced under torchrun), ``n_products`` and the
gradient. A kind only says how one batch's product is computed (:meth:`batch_product`):

- :class:`~landscape.curvature.hessian_operator.LossHessian`: the Hessian (``"hessian"``), with
  a choice of product mode (double backward or forward-over-reverse, "auto" measured);
- :class:`~landscape.curvature.ggn.GGNOperator`: the generalized Gauss-Newton matrix (``"ggn"``);
- :class:`~landscape.curvature.fisher.EmpiricalFisherOperator`: the empirical Fisher (``"ef"``).

The three are siblings (curvlinops' layout: ``HessianLinearOperator``, ``GGNLinearOperator``,
``EFLinearOperator`` on one ``CurvatureLinearOperator``), so no kind inherits another's products.
An option or backend that only one kind can serve is refused for the others by
:func:`check_curvature_options` (one line, :class:`~landscape.errors.LandscapeError`).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..device import eval_mode
from ..errors import LandscapeError
from . import mode_cache
from .operators import LinearOperator

Batch = tuple[torch.Tensor, torch.Tensor]
ParamSelector = None | str | Sequence[str] | Callable[[str], bool]

#: The curvature kinds: the Hessian, the generalized Gauss-Newton matrix, the empirical Fisher.
CURVATURES = ("hessian", "ggn", "ef")


def check_curvature_options(curvature: str, *, backend: str = "landscape",
                            mode: str | None = "auto") -> None:
    """Refuse, in one line, a curvature kind that is unknown or that ``backend``/``mode`` cannot
    serve: pyhessian's power iteration multiplies by the Hessian only, and the product mode is a
    choice between two ways of computing Hessian-vector products (the GGN and the empirical
    Fisher have one way, the double-vjp product)."""
    if curvature not in CURVATURES:
        raise LandscapeError(f"curvature must be one of {CURVATURES}, got {curvature!r}")
    if curvature == "hessian":
        return
    if backend != "landscape":
        raise LandscapeError(f"backend {backend} computes the Hessian only (its power iteration "
                             f"uses Hessian-vector products); the {curvature} curvature needs "
                             "backend landscape")
    if mode not in (None, "auto"):
        raise LandscapeError(f"mode {mode} chooses how Hessian-vector products are computed; "
                             f"the {curvature} curvature has one product (double-vjp): leave "
                             "mode at auto")


def math_attention():
    """Context forcing scaled_dot_product_attention onto the MATH kernel (double-differentiable)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel(SDPBackend.MATH)


def select_names(model: nn.Module, params: ParamSelector) -> list[str]:
    """Names of the selected parameters (see :class:`CurvatureOperator`)."""
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


class CurvatureOperator(LinearOperator):
    """The data loop of a curvature kind of the loss (see module doc).

    Args:
        model: any ``nn.Module``; its parameters are used in place (not copied).
        data: one batch ``(x, y)`` or a sequence of batches; the operator for several batches is
            ``sum_b n_b C_b / sum_b n_b`` (the curvature of the mean loss over all samples).
        loss_fn: ``loss_fn(output, y)``, mean over the batch; default cross-entropy (NLL).
        params: ``None`` (all parameters requiring grad), a name or module prefix or a list of
            them (e.g. ``"blocks.0"``), or a predicate on parameter names.
        augment: ``augment(x, generator) -> x`` applied once per batch with the generator seeded
            by ``augment_seed + batch_index``; the augmented batch is cached.
        retain_graph: keep each batch's graph between products; default True for one batch,
            False for several (memory).
        distributed: shard the batches over ``landscape.distributed`` ranks and all-reduce the
            products (every rank must pass the same full list of batches).
        device: where the batches go; default the parameters' device.
    """

    curvature = ""  # "hessian", "ggn" or "ef" in the kinds

    def __init__(self, model: nn.Module, data: Batch | Sequence[Batch], *,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 params: ParamSelector = None,
                 augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                 augment_seed: int = 0, retain_graph: bool | None = None,
                 distributed: bool = False, device: torch.device | None = None):
        self.model = model
        if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
            batches = [tuple(data)]
        else:
            batches = [tuple(b) for b in data]
        if not batches:
            raise LandscapeError(f"no batches given to the {self.curvature or 'curvature'} "
                                 "operator")
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
        # the product mode: the kind's name for a kind with one way of computing products;
        # LossHessian replaces it with its chosen mode
        self.mode = self.curvature
        self.mode_choice: Any = None
        self.retain_graph = (len(batches) == 1) if retain_graph is None else bool(retain_graph)
        self.distributed = bool(distributed)
        self.n_products = 0
        self.n_samples = sum(int(b[0].shape[0]) for b in batches)
        self._graphs: dict[int, Any] = {}
        self._xcache: dict[int, Batch] = {}

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
        """The key of this operator's measured choices (product mode, probe block) in the
        persistent cache (:mod:`landscape.curvature.mode_cache`); kinds other than the Hessian
        are named in it (their products cost differently)."""
        shapes = sorted({tuple(int(d) for d in b[0].shape) for b in self.batches})
        loss = getattr(self.loss_fn, "__qualname__", type(self.loss_fn).__qualname__)
        extra = (f"loss={loss};batches={len(self.batches)};retain={self.retain_graph};"
                 f"augment={self.augment is not None};distributed={self.distributed}")
        if self.curvature != "hessian":
            extra += f";curvature={self.curvature}"
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

    def batch_product(self, i: int, vs: list[torch.Tensor], batched: bool) -> list[torch.Tensor]:
        """Batch i's curvature times ``vs`` (per-parameter tensors; a leading dimension of
        vectors when ``batched``): the one thing a kind defines."""
        raise NotImplementedError

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
        out = self._batch_mean(lambda i: self.batch_product(i, vs, batched), lead)
        return out.T if batched else out

    def _batch_gradient(self, i: int) -> list[torch.Tensor | None]:
        x, y = self._batch(i)
        with torch.enable_grad():
            return list(torch.autograd.grad(self._loss(x, y), self.params, allow_unused=True))

    def gradient(self) -> torch.Tensor:
        """The flat gradient of the loss at the current parameters: the sample-weighted mean over
        the batches, all-reduced when distributed."""
        def grads(i: int) -> list[torch.Tensor]:
            return [torch.zeros_like(p) if g is None else g
                    for g, p in zip(self._batch_gradient(i), self.params, strict=True)]

        return self._batch_mean(grads, ())

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``C @ v`` for a flat vector v of length n (torch in, torch out)."""
        if v.ndim != 1 or v.shape[0] != self.shape[0]:
            raise LandscapeError(f"expected a vector of length {self.shape[0]}, "
                                 f"got {tuple(v.shape)}")
        self.n_products += 1
        return self._apply(v, batched=False)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``C @ V`` for V of shape (n, m): all m vectors in one pass where the kind allows."""
        if V.ndim != 2 or V.shape[0] != self.shape[0]:
            raise LandscapeError(f"expected shape ({self.shape[0]}, m), got {tuple(V.shape)}")
        self.n_products += V.shape[1]
        if V.shape[1] == 1:
            return self._apply(V[:, 0], batched=False)[:, None]
        try:
            return self._apply(V, batched=True)
        except RuntimeError as e:  # an op without a batching rule: fall back to a loop
            warnings.warn(f"batched {self.curvature} products unavailable "
                          f"({str(e).splitlines()[0][:120]}); looping over vectors", stacklevel=2)
            return torch.stack([self._apply(V[:, j], batched=False) for j in range(V.shape[1])], 1)

    def release_graphs(self) -> None:
        """Drop the retained per-batch graphs (keep the cached batches)."""
        self._graphs.clear()

    def free(self) -> None:
        """Drop the retained graphs and cached batches."""
        self.release_graphs()
        self._xcache.clear()
