"""Result types of the curvature estimators: eigenpairs, trace estimates, spectral densities."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


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
    eigenvectors: torch.Tensor | None = field(default=None, repr=False)  # (n, k), not shown
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
    block: int = 1  # probe vectors per product call

    def to_dict(self) -> dict[str, Any]:
        return {"trace": self.trace, "stderr": self.stderr, "n_products": self.n_products,
                "seed": self.seed, "method": self.method, "samples": self.samples.tolist(),
                "block": self.block}


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
    block: int = 1  # probes whose Lanczos runs share one product call

    def moment(self, p: int) -> float:
        """Estimate of ``tr(H^p) / n`` from the quadrature (mean over probes)."""
        return float(np.mean(np.sum(self.weights * self.nodes ** p, axis=1)))

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                for k, v in self.__dict__.items()}

    def save(self, path, **attrs: Any) -> None:
        """Write to HDF5 atomically (datasets grid/density/nodes/weights; attrs sigma, seed, ...,
        attrs)."""

        from ..store.provenance import atomic_h5, versions
        with atomic_h5(path, seal=True) as f:
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
    def load(cls, path) -> DensityResult:
        import h5py

        from ..store.checksums import verify_h5
        with h5py.File(path, "r") as f:
            verify_h5(f, path)
            return cls(grid=f["grid"][()], density=f["density"][()], nodes=f["nodes"][()],
                       weights=f["weights"][()], sigma=float(f.attrs["sigma"]),
                       n_products=int(f.attrs["n_products"]), seed=int(f.attrs["seed"]),
                       steps=int(f.attrs["steps"]))


