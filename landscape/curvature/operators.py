"""Linear operators on flat float vectors, and their composition (the curvlinops style).

What every curvature estimator needs is ``matvec``/``matmat`` on torch tensors and ``shape``:
:class:`LinearOperator` is that interface (plus ``@``, ``+``, ``-``, scalar ``*`` on either side
and ``to_scipy``). :class:`DenseOperator` wraps a matrix, :func:`as_operator` wraps anything with
``matvec``/``shape``, :class:`SumOperator` is ``A + B``, :class:`ScaledOperator` is ``c * A`` and
:class:`ScaledIdentity` is ``c * I``; so an L2 term is an operator added to the Hessian (see
``landscape.curvature.l2``), never a flag inside it, and the Hessian, the GGN and the empirical
Fisher (``landscape.curvature.ggn``/``fisher``) combine the same way (``H - G`` is the residual
term of the Hessian).

:func:`check_repeated_products` verifies that an operator is one fixed function (the same vector
twice gives the same product).

>>> import torch
>>> A = DenseOperator(torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)))
>>> B = DenseOperator(torch.eye(2, dtype=torch.float64))
>>> v = torch.tensor([1.0, 1.0], dtype=torch.float64)
>>> (2 * A + B).matvec(v).tolist(), (A * 0.5 - B).matvec(v).tolist()
([7.0, 3.0], [0.5, -0.5])
>>> S = A + B
>>> before = S.n_products
>>> _ = S.matvec(v)
>>> S.n_products - before  # every product of every term is counted
2
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import LandscapeError


def _is_scalar(c: Any) -> bool:
    """A real number (a Python/numpy number or a one-element tensor; not a bool)."""
    if isinstance(c, bool):
        return False
    return isinstance(c, (int, float, np.integer, np.floating)) or \
        (isinstance(c, torch.Tensor) and c.numel() == 1 and not c.is_complex())


class LinearOperator:
    """What estimators need: matvec/matmat on torch tensors (float vectors of length n).

    ``n_products`` counts products with the expensive part (a matmat of m vectors counts m)."""

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device
    n_products: int = 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``A @ V`` for V of shape (n, m); default: one matvec per column."""
        return torch.stack([self.matvec(V[:, j]) for j in range(V.shape[1])], dim=1)

    def __matmul__(self, v):
        if isinstance(v, np.ndarray):
            t = torch.as_tensor(v, dtype=self.dtype, device=self.device)
            return (self.matvec(t) if t.ndim == 1 else self.matmat(t)).cpu().numpy()
        return self.matvec(v) if v.ndim == 1 else self.matmat(v)

    def __add__(self, other: LinearOperator) -> SumOperator:
        return SumOperator(self, other)

    def __sub__(self, other: LinearOperator) -> SumOperator:
        return SumOperator(self, ScaledOperator(as_operator(other), -1.0))

    def __neg__(self) -> ScaledOperator:
        return ScaledOperator(self, -1.0)

    def __mul__(self, c: float) -> ScaledOperator:
        """``A * c``: the operator scaled by a real number (``c * A`` is the same)."""
        return ScaledOperator(self, float(c)) if _is_scalar(c) else NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, c: float) -> ScaledOperator:
        return self.__mul__(1.0 / float(c)) if _is_scalar(c) else NotImplemented

    def dense(self) -> torch.Tensor:
        """The full matrix by n products (small problems only)."""
        return self.matmat(torch.eye(self.shape[0], dtype=self.dtype, device=self.device))

    def to_scipy(self):
        """A ``scipy.sparse.linalg.LinearOperator`` (float64 numpy in and out)."""
        from scipy.sparse.linalg import LinearOperator as SciPyOperator

        def mv(x):
            x = np.asarray(x).reshape(-1)
            t = torch.as_tensor(x, device=self.device).to(self.dtype)
            return self.matvec(t).detach().to("cpu", torch.float64).numpy()

        def mm(X):
            t = torch.as_tensor(np.asarray(X), device=self.device).to(self.dtype)
            return self.matmat(t).detach().to("cpu", torch.float64).numpy()

        return SciPyOperator(self.shape, matvec=mv, matmat=mm, rmatvec=mv, dtype=np.float64)


class DenseOperator(LinearOperator):
    """A symmetric matrix as an operator (for tests and small problems)."""

    def __init__(self, A: torch.Tensor | np.ndarray):
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


class _GenericOperator(LinearOperator):
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


class ScaledIdentity(LinearOperator):
    """``c * I`` (free products: ``n_products`` stays 0)."""

    def __init__(self, n: int, c: float, dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu"):
        self.shape = (int(n), int(n))
        self.c = float(c)
        self.dtype = dtype
        self.device = torch.device(device)
        self.n_products = 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.c * v.to(self.device, self.dtype)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.c * V.to(self.device, self.dtype)


class ScaledOperator(LinearOperator):
    """``c * A`` for a real number c: products are ``c`` times A's; ``n_products`` is A's count
    and attributes not found here are looked up on A (``(2 * H).model`` is ``H.model``)."""

    def __init__(self, op: LinearOperator, c: float):
        op = as_operator(op)
        if isinstance(op, ScaledOperator):  # c * (d * A) = (c d) * A
            c, op = c * op.c, op.op
        self.op, self.c = op, float(c)
        self.shape, self.dtype, self.device = op.shape, op.dtype, op.device

    @property
    def n_products(self) -> int:  # type: ignore[override]
        return self.op.n_products

    @n_products.setter
    def n_products(self, value: int) -> None:
        self.op.n_products = value

    def __getattr__(self, name: str) -> Any:
        if name == "op":  # not yet set (during unpickling)
            raise AttributeError(name)
        return getattr(self.op, name)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.c * self.op.matvec(v)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.c * self.op.matmat(V)


class SumOperator(LinearOperator):
    """``A + B + ...``: every product is the sum of the terms' products. ``n_products`` is the
    sum of the terms' counts (an L2 term's products are free and count 0, so a Hessian plus an
    L2 term counts the Hessian's; ``H - G`` counts both); attributes not found here are looked up
    on the first term (so a Hessian plus an L2 term still exposes ``model`` ...)."""

    def __init__(self, *terms: LinearOperator):
        if len(terms) < 2:
            raise LandscapeError("a sum of operators needs at least two terms")
        flat: list[LinearOperator] = []
        for t in terms:
            t = as_operator(t)
            flat.extend(t.terms if type(t) is SumOperator else [t])
        if len({t.shape for t in flat}) != 1:
            raise LandscapeError(f"operator shapes differ: {[t.shape for t in flat]}")
        self.terms = flat
        self.shape = flat[0].shape
        self.dtype = flat[0].dtype
        self.device = flat[0].device

    @property
    def n_products(self) -> int:  # type: ignore[override]
        return sum(t.n_products for t in self.terms)

    @n_products.setter
    def n_products(self, value: int) -> None:  # the first term takes the difference
        self.terms[0].n_products = value - sum(t.n_products for t in self.terms[1:])

    def __getattr__(self, name: str) -> Any:
        if name == "terms":  # not yet set (during unpickling)
            raise AttributeError(name)
        return getattr(self.terms[0], name)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        out = self.terms[0].matvec(v)
        for t in self.terms[1:]:
            out = out + t.matvec(v).to(out.device, out.dtype)
        return out

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = self.terms[0].matmat(V)
        for t in self.terms[1:]:
            out = out + t.matmat(V).to(out.device, out.dtype)
        return out


def as_operator(op: Any) -> LinearOperator:
    """The object itself when it is one of ours, else a wrapper around its ``matvec``/``shape``;
    a dense tensor/array becomes a :class:`DenseOperator`."""
    if isinstance(op, LinearOperator):
        return op
    if isinstance(op, (torch.Tensor, np.ndarray)):
        return DenseOperator(op)
    if hasattr(op, "matvec") and hasattr(op, "shape"):
        return _GenericOperator(op)
    raise LandscapeError(f"not a linear operator: {type(op).__name__}")


def check_repeated_products(op: Any, n_vectors: int = 2, *, seed: int = 0,
                            rtol: float = 0.0) -> float:
    """Apply ``op`` twice to the same seeded Gaussian vectors (single products and one matmat) and
    return the largest relative difference between repeats; raise :class:`LandscapeError` when it
    exceeds ``rtol`` (default 0: bitwise equal). Detects an operator that is not one fixed function
    (an augmentation re-drawn per product, BN statistics updated, dropout left on). An operator
    still choosing its product mode ("auto", whose measuring products alternate two modes that
    agree only to rounding) resolves it first."""
    op = as_operator(op)
    resolve = getattr(op, "resolved_mode", None)
    if callable(resolve):
        resolve()
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    V = torch.randn(op.shape[0], n_vectors, generator=g, dtype=torch.float64)
    V = V.to(op.device, op.dtype)
    worst = 0.0
    for j in range(n_vectors):
        a, b = op.matvec(V[:, j]), op.matvec(V[:, j])
        worst = max(worst, float((a - b).norm() / a.norm().clamp_min(1e-300)))
    A, B = op.matmat(V), op.matmat(V)
    worst = max(worst, float((A - B).norm() / A.norm().clamp_min(1e-300)))
    if worst > rtol:
        raise LandscapeError(f"repeated products differ by {worst:.3g} (relative, allowed "
                             f"{rtol:g}): the operator is not one fixed function")
    return worst
