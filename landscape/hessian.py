"""The Hessian of a model's loss as a linear operator, and the estimators that use it.

Central object: :class:`HessianOperator`, the Hessian of ``loss(model(x), y)`` (mean
cross-entropy by default, optionally + an L2 term) with respect to the model's parameters (or a
named subset), on one batch or averaged over a list of batches (weighted by batch size). It offers
``matvec``, ``matmat``, ``@``, ``shape``, ``dtype``, ``device`` and :meth:`~HessianOperator.to_scipy`.
Every estimator here accepts it, or anything with ``matvec`` and ``shape`` (a dense matrix wrapped
by :class:`DenseOperator`, a scipy ``LinearOperator``, ...):

- :func:`top_eigenvalues`: k extreme eigenpairs (``which`` = "LM" largest magnitude, "LA" largest
  algebraic, "SA" smallest algebraic) by Lanczos with full reorthogonalization, stopped on Ritz
  residuals ``||H y - theta y|| <= tol * |theta|``; or scipy ``eigsh``; or the pyhessian package.
  For the top of the spectrum of a one-batch operator Lanczos starts from the loss gradient plus
  a seeded Gaussian (at a trained model the gradient lies mostly in the top eigenspace: measured
  on the demo CNN at batch 16, 10 products instead of 14 for the same top-5).
- :func:`hutchinson_trace`, :func:`hutchpp_trace`: trace with its standard error.
- :func:`slq_density`: spectral density by stochastic Lanczos quadrature.

Conventions: the model is put in eval mode for every forward pass (BN uses, never updates, its
running statistics; dropout off) and its modes are restored afterwards; every forward runs under
``sdpa_kernel(SDPBackend.MATH)`` (the fused attention kernels have no double backward); products use
``torch.autograd.grad`` so nothing is ever written to ``.grad``. L2 conventions: ``l2="half"``
adds ``wd * 0.5 * ||theta||^2`` to the loss, so ``wd * I`` to the Hessian; ``l2="paper"`` adds
``wd * sum_p ||p||_2`` (the paper's repository), whose Hessian is
``wd * (I / ||p|| - p p^T / ||p||^3)`` per tensor.

Product modes (``mode=``): ``"double_backward"`` computes the gradient with ``create_graph=True``
once per batch, keeps that graph, and differentiates ``g . v`` per product (several vectors per
pass with ``is_grads_batched``); ``"forward_over_reverse"`` is ``torch.func.jvp`` of
``torch.func.grad`` (``vmap`` for several vectors). ``"auto"`` (default) times one product of
each at the operator's first product and keeps the faster (cached per model and batch shape):
``benchmarks/hessian.py`` found no single winner on CPU (see the note at ``DEFAULT_MODE``).
"""
from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import LandscapeError

# mode="auto" measures: on the first product of an operator it times products of each mode
# (after a warm-up product each; interleaved, best of two) and keeps the faster, cached per
# (model, batch shape, dtype, device) in _MODE_CACHE. Measured by benchmarks/hessian.py (batch 16,
# ms per product, double backward vs forward-over-reverse): H100 resnet_tiny 8.6 vs 30.4, vit_tiny
# 27.3 vs 68.1; two quiet CPU cores resnet_tiny 23 vs 44, vit_tiny 31 vs 66; so double backward is
# the default, but on the loaded shared CPU single timings flipped (forward-over-reverse 3x faster
# once on vit_tiny), hence the measurement. DEFAULT_MODE is used where none is possible.
DEFAULT_MODE = "double_backward"
_MODE_CACHE: dict[tuple, tuple[str, dict[str, float]]] = {}
MODES = ("auto", "double_backward", "forward_over_reverse")
WHICH = ("LM", "LA", "SA")

Batch = tuple[torch.Tensor, torch.Tensor]
ParamSelector = Union[None, str, Sequence[str], Callable[[str], bool]]


# --------------------------------------------------------------------------------------------
# context helpers
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Put every submodule in eval mode; restore each module's own flag afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, t in modes:
            m.training = t


def math_attention():
    """Context forcing scaled_dot_product_attention onto the MATH kernel (double-differentiable)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        return sdpa_kernel(SDPBackend.MATH)
    except ImportError:  # pragma: no cover - older torch
        return torch.backends.cuda.sdp_kernel(enable_flash=False, enable_mem_efficient=False,
                                              enable_math=True)


def _select_names(model: nn.Module, params: ParamSelector) -> list[str]:
    named = [(n, p) for n, p in model.named_parameters()]
    if params is None:
        names = [n for n, p in named if p.requires_grad]
    elif callable(params) and not isinstance(params, str):
        names = [n for n, p in named if params(n)]
    else:
        wanted = [params] if isinstance(params, str) else list(params)
        names = []
        for n, _ in named:
            if any(n == w or n.startswith(w + ".") or w == "" for w in wanted):
                names.append(n)
        unknown = [w for w in wanted if not any(n == w or n.startswith(w + ".") for n, _ in named)]
        if unknown:
            raise LandscapeError(f"no parameters named or under {unknown} in the model")
    if not names:
        raise LandscapeError("the parameter selection is empty")
    return names


# --------------------------------------------------------------------------------------------
# operators
# --------------------------------------------------------------------------------------------
class _OperatorBase:
    """What estimators need: matvec/matmat on torch tensors (float vectors of length n)."""

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device
    n_products: int = 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``H @ V`` for V of shape (n, m); default: one matvec per column."""
        return torch.stack([self.matvec(V[:, j]) for j in range(V.shape[1])], dim=1)

    def __matmul__(self, v):
        if isinstance(v, np.ndarray):
            t = torch.as_tensor(v, dtype=self.dtype, device=self.device)
            return (self.matvec(t) if t.ndim == 1 else self.matmat(t)).cpu().numpy()
        return self.matvec(v) if v.ndim == 1 else self.matmat(v)

    def to_scipy(self):
        """A ``scipy.sparse.linalg.LinearOperator`` (float64 numpy in and out)."""
        from scipy.sparse.linalg import LinearOperator

        def mv(x):
            x = np.asarray(x).reshape(-1)
            t = torch.as_tensor(x, device=self.device).to(self.dtype)
            return self.matvec(t).detach().to("cpu", torch.float64).numpy()

        def mm(X):
            t = torch.as_tensor(np.asarray(X), device=self.device).to(self.dtype)
            return self.matmat(t).detach().to("cpu", torch.float64).numpy()

        return LinearOperator(self.shape, matvec=mv, matmat=mm, rmatvec=mv, dtype=np.float64)


class DenseOperator(_OperatorBase):
    """A symmetric matrix as an operator (for tests and small problems)."""

    def __init__(self, A: Union[torch.Tensor, np.ndarray]):
        A = torch.as_tensor(A)
        self.A = A
        self.shape = tuple(A.shape)  # type: ignore[assignment]
        self.dtype = A.dtype
        self.device = A.device
        self.n_products = 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.n_products += 1
        return self.A @ v.to(self.dtype)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        self.n_products += V.shape[1]
        return self.A @ V.to(self.dtype)


class _GenericOperator(_OperatorBase):
    """Wrap anything with ``matvec`` and ``shape`` (e.g. a scipy LinearOperator)."""

    def __init__(self, obj: Any):
        self.obj = obj
        self.shape = tuple(obj.shape)  # type: ignore[assignment]
        self.dtype = torch.float64
        self.device = torch.device("cpu")
        self.n_products = 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.n_products += 1
        out = self.obj.matvec(v.detach().cpu().double().numpy())
        return torch.as_tensor(np.asarray(out, dtype=np.float64).reshape(-1))


def as_operator(op: Any) -> _OperatorBase:
    """The object itself when it is one of ours, else a wrapper around its ``matvec``/``shape``;
    a dense tensor/array becomes a :class:`DenseOperator`."""
    if isinstance(op, _OperatorBase):
        return op
    if isinstance(op, (torch.Tensor, np.ndarray)):
        return DenseOperator(op)
    if hasattr(op, "matvec") and hasattr(op, "shape"):
        return _GenericOperator(op)
    raise TypeError(f"not a linear operator: {type(op).__name__}")


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y)


class HessianOperator(_OperatorBase):
    """Hessian of the loss w.r.t. the selected parameters, on one batch or averaged over batches.

    Args:
        model: any ``nn.Module``; its parameters are used in place (not copied).
        data: one batch ``(x, y)`` or a sequence of batches; the operator for several batches is
            ``sum_b n_b H_b / sum_b n_b`` (the Hessian of the mean loss over all samples).
        loss_fn: ``loss_fn(output, y)``, mean over the batch; default cross-entropy (NLL).
        params: ``None`` (all parameters requiring grad), a name or module prefix or a list of
            them (e.g. ``"blocks.0"``), or a predicate on parameter names.
        wd, l2: the L2 term, ``l2="half"`` (Hessian + ``wd * I``) or ``"paper"`` (see module doc).
        augment: ``augment(x, generator) -> x`` applied once per batch with the generator seeded
            by ``augment_seed + batch_index``; the augmented batch is cached so the operator is one
            fixed function.
        mode: "auto" | "double_backward" | "forward_over_reverse".
        retain_graph: keep each batch's gradient graph between products (double backward); default
            True for one batch, False for several (memory).
        distributed: shard the batches over ``landscape.distributed`` ranks and all-reduce the
            products (every rank must pass the same full list of batches).
        device: where the batches go; default the parameters' device.

    ``n_products`` counts Hessian-vector products (a matmat of m vectors counts m).
    """

    def __init__(self, model: nn.Module, data: Union[Batch, Sequence[Batch]], *,
                 loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
                 params: ParamSelector = None, wd: float = 0.0, l2: str = "half",
                 augment: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None,
                 augment_seed: int = 0, mode: str = "auto",
                 retain_graph: Optional[bool] = None, distributed: bool = False,
                 device: Optional[torch.device] = None):
        if mode not in MODES:
            raise LandscapeError(f"mode must be one of {MODES}, got {mode!r}")
        if l2 not in ("half", "paper"):
            raise LandscapeError(f"l2 must be 'half' or 'paper', got {l2!r}")
        self.model = model
        if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
            batches = [tuple(data)]
        else:
            batches = [tuple(b) for b in data]
        if not batches:
            raise LandscapeError("no batches given to the Hessian operator")
        self.batches: list[Batch] = batches  # type: ignore[assignment]
        self.loss_fn = loss_fn or _cross_entropy
        self.names = _select_names(model, params)
        pdict = dict(model.named_parameters())
        self.params = [pdict[n] for n in self.names]
        self.shapes = [p.shape for p in self.params]
        self.numels = [p.numel() for p in self.params]
        n = sum(self.numels)
        self.shape = (n, n)
        self.dtype = self.params[0].dtype
        self.device = torch.device(device) if device is not None else self.params[0].device
        self.wd = float(wd)
        self.l2 = l2
        self.augment = augment
        self.augment_seed = int(augment_seed)
        self.mode = mode  # "auto" is resolved by measurement at the first product
        self.mode_timings: dict[str, float] = {}
        self.retain_graph = (len(batches) == 1) if retain_graph is None else bool(retain_graph)
        self.distributed = bool(distributed)
        self.n_products = 0
        self.n_samples = sum(int(b[0].shape[0]) for b in batches)
        self._graphs: dict[int, tuple[list[torch.Tensor], list[int]]] = {}
        self._xcache: dict[int, Batch] = {}

    # ---- description ----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Settings that define this operator (for result files)."""
        return {"n_params": self.shape[0], "n_batches": len(self.batches),
                "n_samples": self.n_samples, "params": self.names if len(self.names) < 50 else
                f"{len(self.names)} tensors", "wd": self.wd, "l2": self.l2,
                "augment": repr(self.augment) if self.augment is not None else None,
                "augment_seed": self.augment_seed, "mode": self.mode,
                "dtype": str(self.dtype), "distributed": self.distributed}

    # ---- flat <-> per-tensor ----------------------------------------------------------------
    def split(self, v: torch.Tensor) -> list[torch.Tensor]:
        """Flat (n,) or (m, n) -> per-parameter tensors (with the leading m kept)."""
        lead = v.shape[:-1]
        return [c.reshape(*lead, *s) for c, s in zip(torch.split(v, self.numels, dim=-1), self.shapes)]

    @staticmethod
    def flatten(ts: Sequence[torch.Tensor], lead: int = 0) -> torch.Tensor:
        return torch.cat([t.reshape(*t.shape[:lead], -1) for t in ts], dim=-1)

    def param_vector(self) -> torch.Tensor:
        """The selected parameters as one flat vector (detached copy)."""
        return self.flatten([p.detach() for p in self.params])

    # ---- batches ----------------------------------------------------------------------------
    def _local_indices(self) -> list[int]:
        idx = list(range(len(self.batches)))
        if self.distributed:
            from . import distributed as D
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

    # ---- double backward ----------------------------------------------------------------------
    def _grad_graph(self, i: int) -> tuple[list[torch.Tensor], list[int]]:
        if i in self._graphs:
            return self._graphs[i]
        x, y = self._batch(i)
        with torch.enable_grad():
            loss = self._loss(x, y)
            if not torch.isfinite(loss):
                from .errors import NonFiniteLossError
                raise NonFiniteLossError(f"non-finite loss {loss.item()} on batch {i}")
            gs = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        keep = [j for j, g in enumerate(gs) if g is not None and g.requires_grad]
        out = ([gs[j] for j in keep], keep)
        if self.retain_graph:
            self._graphs[i] = out
        return out

    def _hvp_double_backward(self, i: int, vs: list[torch.Tensor], batched: bool) -> list[torch.Tensor]:
        gs, keep = self._grad_graph(i)
        if not gs:
            return [torch.zeros_like(v) for v in vs]
        with torch.enable_grad(), math_attention():
            hv = torch.autograd.grad(gs, self.params, grad_outputs=[vs[j] for j in keep],
                                     retain_graph=self.retain_graph, allow_unused=True,
                                     is_grads_batched=batched)
        return [torch.zeros_like(v) if h is None else h for h, v in zip(hv, vs)]

    # ---- forward over reverse -----------------------------------------------------------------
    def _hvp_forward_over_reverse(self, i: int, vs: list[torch.Tensor], batched: bool) -> list[torch.Tensor]:
        from torch.func import functional_call, grad, jvp, vmap
        x, y = self._batch(i)
        primals = tuple(p.detach() for p in self.params)
        names = self.names
        model = self.model

        def loss_of(ps):
            out = functional_call(model, dict(zip(names, ps)), (x,), strict=False)
            return self.loss_fn(out, y)

        g = grad(loss_of)

        def hvp(t):
            return jvp(g, (primals,), (t,))[1]

        with torch.enable_grad(), eval_mode(model), math_attention():
            if batched:
                return list(vmap(hvp)(tuple(vs)))
            return list(hvp(tuple(vs)))

    # ---- the products ---------------------------------------------------------------------------
    def _batch_mean(self, per_batch: Callable[[int], list[torch.Tensor]], lead_shape: tuple) -> torch.Tensor:
        """``sum_b n_b f(b) / sum_b n_b`` over the batches, flattened to ``(*lead_shape, n)``:
        this rank's batches, all-reduced when distributed (a rank without batches adds zeros);
        one batch without distribution is taken as is."""
        acc: Optional[list[torch.Tensor]] = None
        single = len(self.batches) == 1 and not self.distributed
        for i in self._local_indices():
            parts = [t.detach() for t in per_batch(i)]
            n_b = self.batches[i][0].shape[0]
            if single:
                acc = parts
            elif acc is None:
                acc = [t * n_b for t in parts]
            else:
                for a, t in zip(acc, parts):
                    a.add_(t, alpha=n_b)
        out = self.flatten(acc, len(lead_shape)) if acc is not None else \
            torch.zeros((*lead_shape, self.shape[0]), dtype=self.dtype, device=self.device)
        if single:
            return out
        if self.distributed:
            from . import distributed as D
            D.all_reduce_sum(out)
        return out / self.n_samples

    def _apply(self, V: torch.Tensor, batched: bool) -> torch.Tensor:
        V = V.to(self.device, self.dtype)
        vs = self.split(V.T.contiguous() if batched else V)
        local = self._local_indices()
        if self.mode == "auto" and local:
            self._choose_mode(local[0], vs, batched)
        hvp = self._hvp_double_backward if self.mode == "double_backward" else self._hvp_forward_over_reverse
        out = self._batch_mean(lambda i: hvp(i, vs, batched), (V.shape[1],) if batched else ())
        if batched:
            out = out.T
        if self.wd:
            out = out + self._l2_hvp(V)
        return out

    def _mode_key(self, i: int) -> tuple:
        x = self.batches[i][0]
        return (id(self.model), tuple(self.names) if len(self.names) < 8 else len(self.names),
                tuple(x.shape), str(self.dtype), str(self.device))

    def _choose_mode(self, i: int, vs: list[torch.Tensor], batched: bool) -> None:
        """Resolve mode="auto": after a warm-up product of each mode, time each (interleaved, best
        of two) and keep the faster; a mode that fails on this model is skipped with a warning."""
        key = self._mode_key(i)
        if key not in _MODE_CACHE:
            sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
            fns = {"double_backward": self._hvp_double_backward,
                   "forward_over_reverse": self._hvp_forward_over_reverse}
            failed = []
            for mode, fn in fns.items():  # warm-up (builds the retained graph, first-call costs)
                try:
                    fn(i, vs, batched)
                except Exception as e:  # noqa: BLE001 - e.g. a model torch.func cannot trace
                    if mode == DEFAULT_MODE:
                        raise
                    warnings.warn(f"{mode} products unavailable for this model ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:100]}); using {DEFAULT_MODE}")
                    failed.append(mode)
            fns = {m: f for m, f in fns.items() if m not in failed}
            times = {m: float("inf") for m in fns}
            for _ in range(2 if len(fns) > 1 else 0):  # interleaved, best of two: robust to load
                for mode, fn in fns.items():
                    sync()
                    t0 = time.perf_counter()
                    fn(i, vs, batched)
                    sync()
                    times[mode] = min(times[mode], time.perf_counter() - t0)
            _MODE_CACHE[key] = (min(times, key=times.get) if len(times) > 1 else DEFAULT_MODE, times)
        self.mode, self.mode_timings = _MODE_CACHE[key]
        if self.mode != "double_backward":
            self._graphs.clear()

    def resolved_mode(self) -> str:
        """The product mode (measuring now if it is still "auto")."""
        if self.mode == "auto":
            self._choose_mode(self._local_indices()[0] if self._local_indices() else 0,
                              self.split(torch.zeros(self.shape[0], dtype=self.dtype, device=self.device)),
                              False)
        return self.mode

    def _l2_hvp(self, V: torch.Tensor) -> torch.Tensor:
        if self.l2 == "half":
            return self.wd * V
        theta = self.param_vector()
        parts = []
        for p, v in zip(torch.split(theta, self.numels), torch.split(V, self.numels, dim=0)):
            r = p.norm()
            if r == 0:
                warnings.warn("l2='paper': a parameter tensor is zero; its L2 Hessian is undefined, using 0")
                parts.append(torch.zeros_like(v))
                continue
            pv = (p @ v) if v.ndim == 1 else (p @ v)[None, :]
            pc = p if v.ndim == 1 else p[:, None]
            parts.append(v / r - pc * pv / r ** 3)
        return self.wd * torch.cat(parts, dim=0)

    def gradient(self) -> torch.Tensor:
        """The flat gradient of the loss (without the L2 term) at the current parameters: the
        sample-weighted mean over the batches, all-reduced when distributed. With one batch and
        double-backward products it reuses the retained graph (no extra pass)."""
        def grads(i: int) -> list[torch.Tensor]:
            if self.mode in ("auto", "double_backward") and self.retain_graph:
                gs, keep = self._grad_graph(i)
                full: list[Optional[torch.Tensor]] = [None] * len(self.params)
                for j, g in zip(keep, gs):
                    full[j] = g
            else:
                x, y = self._batch(i)
                with torch.enable_grad():
                    full = list(torch.autograd.grad(self._loss(x, y), self.params, allow_unused=True))
            return [torch.zeros_like(p) if g is None else g for g, p in zip(full, self.params)]

        return self._batch_mean(grads, ())

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H @ v`` for a flat vector v of length n (torch in, torch out)."""
        if v.ndim != 1 or v.shape[0] != self.shape[0]:
            raise ValueError(f"expected a vector of length {self.shape[0]}, got {tuple(v.shape)}")
        self.n_products += 1
        return self._apply(v, batched=False)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``H @ V`` for V of shape (n, m): all m vectors in one backward (or vmapped jvp) pass."""
        if V.ndim != 2 or V.shape[0] != self.shape[0]:
            raise ValueError(f"expected shape ({self.shape[0]}, m), got {tuple(V.shape)}")
        self.n_products += V.shape[1]
        if V.shape[1] == 1:
            return self._apply(V[:, 0], batched=False)[:, None]
        try:
            return self._apply(V, batched=True)
        except RuntimeError as e:  # an op without a batching rule: fall back to a loop
            warnings.warn(f"batched Hessian products unavailable ({str(e).splitlines()[0][:120]}); "
                          "looping over vectors")
            return torch.stack([self._apply(V[:, j], batched=False) for j in range(V.shape[1])], 1)

    def free(self) -> None:
        """Drop the retained graphs and cached batches."""
        self._graphs.clear()
        self._xcache.clear()

    def dense(self) -> torch.Tensor:
        """The full matrix by n products (small problems only)."""
        n = self.shape[0]
        return self.matmat(torch.eye(n, dtype=self.dtype, device=self.device))


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                  loss_fn: Optional[Callable] = None, params: ParamSelector = None,
                  method: str = "func") -> torch.Tensor:
    """Reference: the full Hessian of the loss by ``torch.func.hessian`` of ``functional_call``
    (``method="func"``) or ``torch.autograd.functional.hessian`` (``"autograd"``); tiny models only."""
    from torch.func import functional_call, hessian
    loss_fn = loss_fn or _cross_entropy
    names = _select_names(model, params)
    pdict = dict(model.named_parameters())
    primals = tuple(pdict[n].detach() for n in names)
    numels = [p.numel() for p in primals]

    # Known torch 2.13 defect: torch.func.hessian (and jacrev(jacrev)) of F.layer_norm is wrong
    # and asymmetric (autograd double backward, jvp-of-grad and finite differences agree with each
    # other); use models without nn.LayerNorm as references, or method="autograd".
    # The MATH-kernel context encloses the whole transform.
    def f(ps):
        out = functional_call(model, dict(zip(names, ps)), (x,), strict=False)
        return loss_fn(out, y)

    with eval_mode(model), math_attention():
        if method == "autograd":
            blocks = torch.autograd.functional.hessian(lambda *ps: f(ps), primals)
        else:
            blocks = hessian(f)(primals)
    rows = [torch.cat([blocks[i][j].reshape(numels[i], numels[j]) for j in range(len(primals))], 1)
            for i in range(len(primals))]
    return torch.cat(rows, 0).detach()


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
@dataclass
class EigenResult:
    """k eigenpairs: values ordered by ``which``; residuals ||H y - λ y|| (estimated from the
    Lanczos recurrence, exact up to rounding with full reorthogonalization)."""

    eigenvalues: np.ndarray
    residuals: np.ndarray
    n_products: int
    converged: bool
    seed: int
    which: str
    tol: float
    method: str
    eigenvectors: Optional[torch.Tensor] = None  # (n, k)
    iterations: int = 0
    wall_s: float = 0.0
    start: str = "random"  # the Lanczos start vector: "random", "gradient" or "given"

    def to_dict(self) -> dict[str, Any]:
        return {"eigenvalues": self.eigenvalues.tolist(), "residuals": self.residuals.tolist(),
                "n_products": self.n_products, "converged": self.converged, "seed": self.seed,
                "which": self.which, "tol": self.tol, "method": self.method,
                "iterations": self.iterations, "wall_s": self.wall_s, "start": self.start}


@dataclass
class TraceResult:
    """A stochastic trace estimate with its standard error (samples kept)."""

    trace: float
    stderr: float
    n_products: int
    seed: int
    method: str
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_dict(self) -> dict[str, Any]:
        return {"trace": self.trace, "stderr": self.stderr, "n_products": self.n_products,
                "seed": self.seed, "method": self.method, "samples": self.samples.tolist()}


@dataclass
class DensityResult:
    """SLQ spectral density: ``density`` on ``grid`` (integrates to 1), Gaussian width ``sigma``;
    raw Ritz ``nodes`` and ``weights`` per probe (each probe's weights sum to 1)."""

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray  # (n_probes, steps)
    weights: np.ndarray  # (n_probes, steps)
    sigma: float
    n_products: int
    seed: int
    steps: int

    def moment(self, p: int) -> float:
        """Estimate of ``tr(H^p) / n`` from the quadrature (mean over probes)."""
        return float(np.mean(np.sum(self.weights * self.nodes ** p, axis=1)))

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}

    def save(self, path, **attrs: Any) -> None:
        """Write to HDF5 (datasets grid/density/nodes/weights; attrs sigma, seed, ... + ``attrs``)."""
        import json

        import h5py
        from .provenance import versions
        with h5py.File(path, "w") as f:
            for k in ("grid", "density", "nodes", "weights"):
                f.create_dataset(k, data=getattr(self, k))
            f.attrs["sigma"] = self.sigma
            f.attrs["n_products"] = self.n_products
            f.attrs["seed"] = self.seed
            f.attrs["steps"] = self.steps
            f.attrs["versions"] = json.dumps(versions())
            for k, v in attrs.items():
                f.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v, default=str)

    @classmethod
    def load(cls, path) -> "DensityResult":
        import h5py
        with h5py.File(path, "r") as f:
            return cls(grid=f["grid"][()], density=f["density"][()], nodes=f["nodes"][()],
                       weights=f["weights"][()], sigma=float(f.attrs["sigma"]),
                       n_products=int(f.attrs["n_products"]), seed=int(f.attrs["seed"]),
                       steps=int(f.attrs["steps"]))


# --------------------------------------------------------------------------------------------
# Lanczos
# --------------------------------------------------------------------------------------------
def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed))


def _randn(n: int, seed_or_gen, m: Optional[int] = None) -> torch.Tensor:
    g = seed_or_gen if isinstance(seed_or_gen, torch.Generator) else _generator(seed_or_gen)
    return torch.randn((n,) if m is None else (n, m), generator=g, dtype=torch.float64)


def _rademacher(n: int, gen: torch.Generator, m: Optional[int] = None) -> torch.Tensor:
    shape = (n,) if m is None else (n, m)
    return torch.randint(0, 2, shape, generator=gen, dtype=torch.int8).to(torch.float64) * 2 - 1


def _tridiag_eigh(alpha: Sequence[float], beta: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of the symmetric tridiagonal matrix (alpha diag, beta off-diag)."""
    from scipy.linalg import eigh_tridiagonal
    a = np.asarray(alpha, dtype=np.float64)
    if len(a) == 1:
        return a.copy(), np.ones((1, 1))
    return eigh_tridiagonal(a, np.asarray(beta[: len(a) - 1], dtype=np.float64))


def _order(theta: np.ndarray, which: str) -> np.ndarray:
    if which == "LM":
        return np.argsort(-np.abs(theta), kind="stable")
    if which == "LA":
        return np.argsort(-theta, kind="stable")
    return np.argsort(theta, kind="stable")


class _Lanczos:
    """Lanczos with full reorthogonalization (classical Gram-Schmidt twice), in float64. The
    basis grows in chunks (no up-front allocation of ``max_steps`` vectors)."""

    def __init__(self, op: _OperatorBase, v0: torch.Tensor, max_steps: int, seed: int):
        self.op = op
        self.n = op.shape[0]
        self.max_steps = min(max_steps, self.n)
        self.work_device = op.device
        self.Q = torch.empty((min(self.max_steps + 1, 32), self.n), dtype=torch.float64,
                             device=self.work_device)
        self.alpha: list[float] = []
        self.beta: list[float] = []  # beta[j] couples q_j and q_{j+1}
        self.gen = _generator(seed + 7919)
        q = v0.to(self.work_device, torch.float64)
        self.Q[0] = q / q.norm()
        self.m = 0  # number of Lanczos vectors whose product has been taken

    def _ensure(self, rows: int) -> None:
        if rows > self.Q.shape[0]:
            grown = torch.empty((min(self.max_steps + 1, max(rows, 2 * self.Q.shape[0])), self.n),
                                dtype=torch.float64, device=self.work_device)
            grown[: self.Q.shape[0]] = self.Q
            self.Q = grown

    def _orth(self, w: torch.Tensor, k: int) -> torch.Tensor:
        Qk = self.Q[:k]
        for _ in range(2):  # "twice is enough"
            w = w - Qk.T @ (Qk @ w)
        return w

    def step(self) -> bool:
        """One product; returns False when the Krylov space is exhausted (dimension reached)."""
        j = self.m
        q = self.Q[j]
        w = self.op.matvec(q.to(self.op.dtype)).to(self.work_device, torch.float64)
        a = float(q @ w)
        self.alpha.append(a)
        w = w - a * q
        if j > 0:
            w = w - self.beta[j - 1] * self.Q[j - 1]
        w = self._orth(w, j + 1)
        b = float(w.norm())
        self.m = j + 1
        scale = max(abs(a), (self.beta[j - 1] if j > 0 else 0.0), 1e-300)
        if self.m >= self.n:
            self.beta.append(b)
            return False
        self._ensure(j + 2)
        if b <= 1e-12 * scale or not math.isfinite(b):
            # invariant subspace: continue with a fresh random direction (beta = 0 couples nothing)
            self.beta.append(0.0)
            r = self._orth(_randn(self.n, self.gen).to(self.work_device), j + 1)
            self.Q[j + 1] = r / r.norm()
            self._breakdown = True
        else:
            self.beta.append(b)
            self.Q[j + 1] = w / b
        return True

    def ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values, the eigenvectors of T, and the residual norms |beta_m * s_{m,i}|."""
        theta, S = _tridiag_eigh(self.alpha, self.beta)
        res = np.abs(self.beta[self.m - 1] * S[-1, :]) if self.m < self.n else np.zeros_like(theta)
        return theta, S, res

    def vectors(self, S: np.ndarray) -> torch.Tensor:
        return self.Q[: self.m].T @ torch.as_tensor(S, dtype=torch.float64, device=self.work_device)


def top_eigenvalues(op: Any, k: int = 5, which: str = "LM", *, tol: float = 1e-3,
                    max_iter: Optional[int] = None, seed: int = 0, method: str = "lanczos",
                    backend: str = "landscape", return_eigenvectors: bool = True,
                    pyhessian_kwargs: Optional[dict[str, Any]] = None,
                    start: Union[str, torch.Tensor] = "auto") -> EigenResult:
    """The k extreme eigenpairs of a symmetric operator.

    ``which``: "LM" (largest magnitude: what power iteration finds), "LA" (largest algebraic) or
    "SA" (smallest algebraic, the most negative). ``method="lanczos"`` (default): Lanczos with full
    reorthogonalization from a seeded Gaussian start, stopped when every wanted Ritz pair has
    ``||H y - theta y|| <= tol * |theta|`` (so each value is within ``tol * |theta|`` of an
    eigenvalue); ``method="eigsh"``: ARPACK via ``scipy.sparse.linalg.eigsh`` with the same tol.
    ``backend="pyhessian"`` runs pyhessian's power iteration (``which="LM"`` only; ``tol`` is its
    relative eigenvalue-change tolerance, ``max_iter`` its maxIter) on a :class:`HessianOperator`.
    ``max_iter`` caps the number of products (default ``max(20 * k, 100)``, at most n).

    ``start`` (Lanczos): "random" (seeded Gaussian), "gradient" (the unit loss gradient plus a
    seeded unit Gaussian: at a trained model the gradient lies mostly in the top eigenspace, so
    the largest eigenvalues converge in fewer products; the Gaussian keeps every direction
    present), a vector, or "auto" = "gradient" for ``which`` "LM"/"LA" on a one-batch
    :class:`HessianOperator` (where the gradient costs nothing extra) and "random" otherwise.
    """
    if which not in WHICH:
        raise LandscapeError(f"which must be one of {WHICH}, got {which!r}")
    if backend == "pyhessian":
        return _pyhessian_top(op, k, which, tol, max_iter, seed, return_eigenvectors,
                              **(pyhessian_kwargs or {}))
    if backend != "landscape":
        raise LandscapeError(f"backend must be 'landscape' or 'pyhessian', got {backend!r}")
    op = as_operator(op)
    n = op.shape[0]
    if not 1 <= k <= n:
        raise LandscapeError(f"k must be in [1, {n}], got {k}")
    start_products = op.n_products
    t0 = time.perf_counter()
    max_iter = min(n, max_iter or max(20 * k, 100))
    if method == "eigsh":
        from scipy.sparse.linalg import ArpackNoConvergence, eigsh
        if k >= n:
            raise LandscapeError("eigsh needs k < n; use method='lanczos'")
        v0 = _randn(n, seed).numpy()
        converged = True
        try:
            w, V = eigsh(op.to_scipy(), k=k, which=which, tol=tol, v0=v0,
                         maxiter=max_iter, return_eigenvectors=True)
        except ArpackNoConvergence as e:
            w, V, converged = e.eigenvalues, e.eigenvectors, False
        order = _order(w, which)
        w, V = w[order], V[:, order]
        Vt = torch.as_tensor(V, dtype=torch.float64)
        HV = op.matmat(Vt.to(op.device, op.dtype)).to("cpu", torch.float64)
        res = (HV - Vt * torch.as_tensor(w)).norm(dim=0).numpy()
        vecs = Vt.to(op.dtype) if return_eigenvectors else None
        return EigenResult(np.asarray(w, dtype=np.float64), res, op.n_products - start_products,
                           converged, seed, which, tol, "eigsh", vecs, 0, time.perf_counter() - t0)
    if method != "lanczos":
        raise LandscapeError(f"method must be 'lanczos' or 'eigsh', got {method!r}")
    v0, start_used = _start_vector(op, n, which, seed, start)
    lz = _Lanczos(op, v0, max_iter, seed)
    converged = False
    while True:
        more = lz.step()
        if lz.m >= k:
            theta, S, res = lz.ritz()
            sel = _order(theta, which)[:k]
            if np.all(res[sel] <= tol * np.abs(theta[sel])) or not more:
                converged = bool(np.all(res[sel] <= tol * np.maximum(np.abs(theta[sel]), 1e-300))
                                 or lz.m >= n)
                break
        if lz.m >= lz.max_steps:
            theta, S, res = lz.ritz()
            sel = _order(theta, which)[:k]
            break
    vecs = lz.vectors(S[:, sel]).to(op.dtype) if return_eigenvectors else None
    return EigenResult(theta[sel].copy(), res[sel].copy(), op.n_products - start_products,
                       converged, seed, which, tol, "lanczos", vecs, lz.m, time.perf_counter() - t0,
                       start_used)


def _start_vector(op: _OperatorBase, n: int, which: str, seed: int,
                  start: Union[str, torch.Tensor]) -> tuple[torch.Tensor, str]:
    """The Lanczos start vector and its description (see :func:`top_eigenvalues`)."""
    z = _randn(n, seed)
    if isinstance(start, torch.Tensor):
        if start.shape != (n,):
            raise LandscapeError(f"start vector must have shape ({n},), got {tuple(start.shape)}")
        return start.detach().to("cpu", torch.float64), "given"
    if start not in ("auto", "random", "gradient"):
        raise LandscapeError(f"start must be 'auto', 'random', 'gradient' or a vector, got {start!r}")
    if start == "auto":
        cheap = isinstance(op, HessianOperator) and len(op.batches) == 1 and op.retain_graph
        start = "gradient" if cheap and which in ("LM", "LA") else "random"
    if start == "random":
        return z, "random"
    if not isinstance(op, HessianOperator):
        raise LandscapeError("start='gradient' needs a HessianOperator")
    g = op.gradient().to("cpu", torch.float64)
    gn = float(g.norm())
    if not math.isfinite(gn) or gn == 0.0:
        warnings.warn("the loss gradient is zero or not finite; Lanczos starts from a random vector")
        return z, "random"
    return g / gn + z / z.norm(), "gradient"


def lanczos_quadrature(op: Any, v: torch.Tensor, steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gauss quadrature nodes and weights of the spectral measure of ``v``: after ``steps``
    Lanczos steps from v, ``sum_i w_i theta_i^p = v^T H^p v / ||v||^2`` exactly for p < 2 steps."""
    op = as_operator(op)
    lz = _Lanczos(op, v.to(torch.float64), steps, seed)
    while lz.m < lz.max_steps and lz.step():
        pass
    theta, S, _ = lz.ritz()
    return theta, S[0, :] ** 2


# --------------------------------------------------------------------------------------------
# trace and density
# --------------------------------------------------------------------------------------------
def _apply_block(op: _OperatorBase, V: torch.Tensor, block: int) -> torch.Tensor:
    """``H @ V`` (float64 out) in blocks of ``block`` columns."""
    outs = []
    for s in range(0, V.shape[1], block):
        outs.append(op.matmat(V[:, s:s + block].to(op.device, op.dtype)).to("cpu", torch.float64))
    return torch.cat(outs, dim=1)


def hutchinson_trace(op: Any, n_probes: int = 100, *, seed: int = 0, block: int = 8,
                     backend: str = "landscape", tol: float = 1e-3) -> TraceResult:
    """Hutchinson's estimate ``mean_i z_i^T H z_i`` with seeded Rademacher probes z_i; stderr is
    the sample standard deviation / sqrt(n_probes). ``block`` probes go through one matmat.
    ``backend="pyhessian"``: pyhessian's ``trace(maxIter=n_probes, tol=tol)`` (it stops early once
    the running mean changes by less than ``tol``)."""
    if backend == "pyhessian":
        return _pyhessian_trace(op, n_probes, tol, seed)
    op = as_operator(op)
    if n_probes < 2:
        raise LandscapeError("hutchinson_trace needs at least 2 probes for a standard error")
    start = op.n_products
    n = op.shape[0]
    gen = _generator(seed)
    Z = _rademacher(n, gen, n_probes)
    HZ = _apply_block(op, Z, block)
    samples = (Z * HZ).sum(0).numpy()
    return TraceResult(float(samples.mean()), float(samples.std(ddof=1) / math.sqrt(n_probes)),
                       op.n_products - start, seed, "hutchinson", samples)


def hutchpp_trace(op: Any, n_products: int = 99, *, seed: int = 0, block: int = 8) -> TraceResult:
    """Hutch++ (Meyer et al. 2021) with a budget of ``n_products``: a third sketches the top
    subspace Q = orth(H S), a third computes tr(Q^T H Q) exactly, a third runs Hutchinson on the
    deflated remainder (I - QQ^T) H (I - QQ^T); stderr is that remainder's Hutchinson stderr."""
    op = as_operator(op)
    n = op.shape[0]
    m = max(1, n_products // 3)
    if m < 2:
        raise LandscapeError("hutchpp_trace needs n_products >= 6")
    start = op.n_products
    gen = _generator(seed)
    S = _rademacher(n, gen, m)
    G = _rademacher(n, gen, m)
    Q, _ = torch.linalg.qr(_apply_block(op, S, block))
    HQ = _apply_block(op, Q, block)
    t_top = float((Q * HQ).sum())
    G = G - Q @ (Q.T @ G)
    HG = _apply_block(op, G, block)
    samples = (G * HG).sum(0).numpy()
    est = t_top + float(samples.mean())
    return TraceResult(est, float(samples.std(ddof=1) / math.sqrt(m)), op.n_products - start,
                       seed, "hutch++", samples)


def slq_density(op: Any, n_probes: int = 4, steps: int = 80, *, seed: int = 0,
                sigma: Optional[float] = None, n_grid: int = 1000) -> DensityResult:
    """Spectral density by stochastic Lanczos quadrature.

    ``n_probes`` Rademacher probes, ``steps`` Lanczos steps each (full reorthogonalization). The
    density is ``mean_probes sum_i w_i N(t; theta_i, sigma^2)`` on a grid spanning the Ritz values
    +- 5 sigma, renormalized to integrate to 1 on the grid. ``sigma`` defaults to 1% of the Ritz
    range (stated in the result)."""
    op = as_operator(op)
    n = op.shape[0]
    steps = min(steps, n)
    start = op.n_products
    gen = _generator(seed)
    nodes, weights = [], []
    for p in range(n_probes):
        z = _rademacher(n, gen)
        th, w = lanczos_quadrature(op, z, steps, seed=seed + 1000 + p)
        pad = steps - len(th)
        nodes.append(np.pad(th, (0, pad)))
        weights.append(np.pad(w, (0, pad)))
    nodes_a, weights_a = np.array(nodes), np.array(weights)
    lo, hi = float(nodes_a.min()), float(nodes_a.max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    if sigma is None:
        sigma = 0.01 * span
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, n_grid)
    dens = np.zeros_like(grid)
    for th, w in zip(nodes_a, weights_a):
        dens += (w[None, :] * np.exp(-0.5 * ((grid[:, None] - th[None, :]) / sigma) ** 2)).sum(1)
    dens /= n_probes * sigma * math.sqrt(2 * math.pi)
    area = np.trapezoid(dens, grid) if hasattr(np, "trapezoid") else np.trapz(dens, grid)
    dens = dens / area
    return DensityResult(grid, dens, nodes_a, weights_a, float(sigma), op.n_products - start,
                         seed, steps)


# --------------------------------------------------------------------------------------------
# pyhessian backend (cross-checking only)
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _pyhessian_session(op: "HessianOperator", seed: int):
    """Set up pyhessian on op's batches: eval mode, MATH attention, only the selected parameters
    requiring grad, default dtype = the model's, a seeded RNG, products counted; afterwards the
    graphs pyhessian leaves on ``.grad`` are removed and everything restored."""
    if not isinstance(op, HessianOperator):
        raise LandscapeError("backend='pyhessian' needs a HessianOperator (model + data)")
    import importlib
    ph = importlib.import_module("pyhessian.hessian")  # the module (the package exports the class)
    counter = {"n": 0}
    orig_hvp = ph.hessian_vector_product
    orig_dl = ph.hessian.dataloader_hv_product

    def hvp(gradsH, params, v):
        counter["n"] += 1
        return orig_hvp(gradsH, params, v)

    def dl(self, v):
        counter["n"] += 1
        return orig_dl(self, v)

    model = op.model
    selected = set(op.names)
    req = {n: p.requires_grad for n, p in model.named_parameters()}
    old_dtype = torch.get_default_dtype()
    wd, params, l2 = op.wd, op.params, op.l2

    def criterion(out, y):
        loss = op.loss_fn(out, y)
        if wd:
            if l2 == "half":
                loss = loss + 0.5 * wd * sum((p * p).sum() for p in params)
            else:
                loss = loss + wd * sum(p.norm() for p in params)
        return loss

    batches = [op._batch(i) for i in range(len(op.batches))]
    ph.hessian_vector_product = hvp
    ph.hessian.dataloader_hv_product = dl
    try:
        with warnings.catch_warnings(), eval_mode(model), math_attention(), torch.random.fork_rng(
                devices=[op.device] if op.device.type == "cuda" else []):
            warnings.filterwarnings("ignore", message=".*create_graph=True.*")
            torch.manual_seed(seed)
            for n, p in model.named_parameters():
                p.requires_grad_(n in selected)
            if op.dtype in (torch.float64, torch.float32):
                torch.set_default_dtype(op.dtype)
            cuda = op.device.type == "cuda"
            if len(batches) == 1:
                h = ph.hessian(model, criterion, data=batches[0], cuda=cuda)
            else:
                h = ph.hessian(model, criterion, dataloader=batches, cuda=cuda)
            yield h, counter
    finally:
        ph.hessian_vector_product = orig_hvp
        ph.hessian.dataloader_hv_product = orig_dl
        torch.set_default_dtype(old_dtype)
        for n, p in model.named_parameters():
            p.requires_grad_(req[n])
            p.grad = None


def _pyhessian_top(op, k, which, tol, max_iter, seed, return_eigenvectors) -> EigenResult:
    if which != "LM":
        raise LandscapeError("backend='pyhessian' only computes largest-magnitude eigenvalues "
                             "(power iteration): use which='LM'")
    t0 = time.perf_counter()
    with _pyhessian_session(op, seed) as (h, counter):
        vals, vecs = h.eigenvalues(maxIter=max_iter or 100, tol=tol, top_n=k)
        n_prod = counter["n"]
        V = None
        if return_eigenvectors:
            V = torch.stack([HessianOperator.flatten([t.detach() for t in v]) for v in vecs], 1)
    vals = np.asarray(vals, dtype=np.float64)
    res = np.full(k, np.nan)
    if V is not None:
        HV = op.matmat(V.to(op.dtype))
        res = (HV - V * torch.as_tensor(vals, dtype=V.dtype, device=V.device)).norm(dim=0).cpu().numpy()
    op.n_products += n_prod
    return EigenResult(vals, res, n_prod, True, seed, "LM", tol, "pyhessian-power", V, n_prod,
                       time.perf_counter() - t0)


def _pyhessian_trace(op, n_probes, tol, seed) -> TraceResult:
    with _pyhessian_session(op, seed) as (h, counter):
        samples = np.asarray(h.trace(maxIter=n_probes, tol=tol), dtype=np.float64)
        n_prod = counter["n"]
    op.n_products += n_prod
    se = float(samples.std(ddof=1) / math.sqrt(len(samples))) if len(samples) > 1 else float("nan")
    return TraceResult(float(samples.mean()), se, n_prod, seed, "pyhessian-hutchinson", samples)


def pyhessian_density(*_args: Any, **_kw: Any):
    """Not available: pyhessian's ``density()`` calls ``torch.eig``, removed from PyTorch (2.x)."""
    raise LandscapeError("pyhessian's density() cannot run on this PyTorch: it calls torch.eig, "
                         "which PyTorch removed; use landscape.hessian.slq_density instead")
