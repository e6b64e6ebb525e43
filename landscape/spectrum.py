"""The paper's max-eigenvalue spectrum: the top-k Hessian eigenvalues of many small mini-batches.

Park & Kim (2022), Fig. 1/4/6/7/12: for every mini-batch of 16 training images over about 10% of
the training set, the top-5 eigenvalues (largest magnitude, as their patched PyHessian power
iteration returns) of the loss NLL + L2 weight decay on augmented data; the density of all these
values, the share of negative ones and the mean of the positive ones.

Raw results go to one HDF5 file (``eigenvalues`` [n_batches, k], NaN rows unfinished;
``residuals``, ``n_products``, ``sample_indices`` [n_batches, batch_size], ``batch_index``;
attrs ``config``, ``seed``, ``versions``, ``summary``). Re-running with the same settings
continues where it stopped. Under ``torchrun`` the batches are sharded over ranks
(``landscape.distributed``); each batch's problem depends only on (seed, batch index), so the
result is identical to the single-process run.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
import torch.nn as nn

from . import distributed as D
from .errors import LandscapeError
from .hessian import HessianOperator, top_eigenvalues

PathLike = Union[str, Path]


@dataclass
class SpectrumConfig:
    """Settings of a max-eigenvalue spectrum (defaults: the paper's)."""

    k: int = 5
    which: str = "LM"
    batch_size: int = 16
    n_batches: Optional[int] = None  # default: subset * N / batch_size
    subset: float = 0.1  # fraction of the data set the batches cover when n_batches is None
    seed: int = 0
    wd: float = 0.0
    l2: str = "half"
    augment: bool = False
    tol: float = 1e-3
    max_iter: Optional[int] = None
    method: str = "lanczos"
    backend: str = "landscape"
    mode: str = "auto"
    start: str = "auto"  # Lanczos start vector (see hessian.top_eigenvalues)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SpectrumResult:
    """Raw per-batch top-k eigenvalues and what defines them."""

    eigenvalues: np.ndarray  # (n_batches, k); NaN rows unfinished
    residuals: np.ndarray
    n_products: np.ndarray  # (n_batches,), -1 unfinished
    sample_indices: np.ndarray  # (n_batches, batch_size) positions in the data given
    config: dict[str, Any]
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> np.ndarray:
        return ~np.isnan(self.eigenvalues).any(axis=1)

    def values(self) -> np.ndarray:
        """All finished eigenvalues, flattened."""
        return self.eigenvalues[self.finished].reshape(-1)

    def summary(self) -> dict[str, Any]:
        """Share of negative values and mean of the positive ones (the paper's two numbers)."""
        return spectrum_summary(self.values()) | {
            "n_batches_finished": int(self.finished.sum()), "n_batches": len(self.eigenvalues),
            "mean_products_per_batch": float(self.n_products[self.finished].mean())
            if self.finished.any() else float("nan")}

    @classmethod
    def load(cls, path: PathLike) -> "SpectrumResult":
        import h5py
        with h5py.File(path, "r") as f:
            return cls(eigenvalues=f["eigenvalues"][()], residuals=f["residuals"][()],
                       n_products=f["n_products"][()], sample_indices=f["sample_indices"][()],
                       config=json.loads(f.attrs["config"]),
                       extra={k: f.attrs[k] for k in f.attrs if k != "config"})


def spectrum_summary(values: np.ndarray) -> dict[str, float]:
    """``negative_share`` (fraction < 0), ``mean_positive``, plus count, min, max."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    pos = v[v > 0]
    return {"count": int(v.size),
            "negative_share": float((v < 0).mean()) if v.size else float("nan"),
            "mean_positive": float(pos.mean()) if pos.size else float("nan"),
            "min": float(v.min()) if v.size else float("nan"),
            "max": float(v.max()) if v.size else float("nan")}


def spectrum_batches(n_data: int, batch_size: int = 16, n_batches: Optional[int] = None,
                     subset: float = 0.1, seed: int = 0) -> np.ndarray:
    """Sample indices (n_batches, batch_size): a seeded permutation of the data cut into batches;
    ``n_batches`` defaults to ``floor(subset * n_data / batch_size)``."""
    if n_batches is None:
        if not 0 < subset <= 1:
            raise LandscapeError(f"subset must be in (0, 1], got {subset}")
        n_batches = int(subset * n_data) // batch_size
    if n_batches < 1 or batch_size < 1:
        raise LandscapeError("need at least one batch of at least one image")
    if n_batches * batch_size > n_data:
        raise LandscapeError(f"{n_batches} batches of {batch_size} need {n_batches * batch_size} "
                             f"images but the data has {n_data}")
    perm = np.random.default_rng(seed).permutation(n_data)
    return perm[: n_batches * batch_size].reshape(n_batches, batch_size)


def _augment_seed(seed: int, i: int) -> int:
    return (int(seed) * 1_000_003 + int(i)) % (2 ** 63)


def _batch_eigen(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, idx: np.ndarray,
                 i: int, cfg: SpectrumConfig, augment: Optional[Callable],
                 loss_fn: Optional[Callable], device: torch.device) -> tuple[np.ndarray, np.ndarray, int]:
    ii = torch.as_tensor(idx, dtype=torch.long, device=images.device)
    x, y = images[ii].to(device), labels[ii].to(device)
    op = HessianOperator(model, (x, y), loss_fn=loss_fn, wd=cfg.wd, l2=cfg.l2,
                         augment=augment if cfg.augment else None,
                         augment_seed=_augment_seed(cfg.seed, i), mode=cfg.mode)
    r = top_eigenvalues(op, cfg.k, cfg.which, tol=cfg.tol, max_iter=cfg.max_iter,
                        seed=cfg.seed + i, method=cfg.method, backend=cfg.backend,
                        return_eigenvectors=False, start=cfg.start)
    op.free()
    if not r.converged:
        import warnings
        warnings.warn(f"batch {i}: top-{cfg.k} not converged to tol {cfg.tol} in {r.n_products} products")
    return r.eigenvalues, r.residuals, r.n_products


def _open_store(path: Path, cfg: SpectrumConfig, sample_indices: np.ndarray, meta: dict[str, Any]):
    import h5py
    from .provenance import versions
    cfg_json = json.dumps(cfg.to_dict(), sort_keys=True)
    if path.exists():
        from .provenance import resume_guard
        with resume_guard(path, "spectrum file"):
            if not h5py.is_hdf5(path):  # checked first: HDF5 would rewrite an empty file
                raise LandscapeError(f"cannot resume from {path}: not an HDF5 file "
                                     f"({path.stat().st_size} bytes); delete it or use another "
                                     "--out")
            f = h5py.File(path, "r+")  # never "a": it would turn an empty file into a new one
            try:
                old = json.loads(f.attrs.get("config", "{}"))
                same = old == json.loads(cfg_json) and np.array_equal(f["sample_indices"][()],
                                                                      sample_indices)
                nb, k = sample_indices.shape[0], cfg.k
                shapes = {"eigenvalues": (nb, k), "residuals": (nb, k), "n_products": (nb,)}
                bad = [n for n, sh in shapes.items() if n not in f or f[n].shape != sh]
            except BaseException:
                f.close()
                raise
        if not same:
            f.close()
            raise LandscapeError(f"{path} holds a spectrum with different settings; use another "
                                 "output folder or delete it")
        if bad:
            f.close()
            raise LandscapeError(f"cannot resume from {path}: {', '.join(bad)} missing or of the "
                                 "wrong shape; delete it or use another --out")
        return f
    path.parent.mkdir(parents=True, exist_ok=True)
    f = h5py.File(path, "w")
    nb, k = sample_indices.shape[0], cfg.k
    f.create_dataset("eigenvalues", data=np.full((nb, k), np.nan))
    f.create_dataset("residuals", data=np.full((nb, k), np.nan))
    f.create_dataset("n_products", data=np.full(nb, -1, dtype=np.int64))
    f.create_dataset("sample_indices", data=sample_indices)
    f.create_dataset("batch_index", data=np.arange(nb))
    f.attrs["config"] = cfg_json
    f.attrs["seed"] = cfg.seed
    f.attrs["versions"] = json.dumps(versions())
    f.attrs["meta"] = json.dumps(meta, default=str)
    return f


def max_eigenvalue_spectrum(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                            config: Optional[SpectrumConfig] = None, *,
                            out: Optional[PathLike] = None,
                            augment: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None,
                            loss_fn: Optional[Callable] = None, device: Optional[torch.device] = None,
                            progress: bool = True, chunk: int = 4,
                            meta: Optional[dict[str, Any]] = None) -> SpectrumResult:
    """Top-k eigenvalues of the Hessian of each mini-batch (see module doc).

    ``images``/``labels``: the (normalized) training data; batches are drawn from it by
    :func:`spectrum_batches`. ``augment(x, generator)`` is used when ``config.augment``; batch i
    gets the generator seeded by (seed, i). With ``out`` (an .h5 path) results are written after
    every ``chunk`` batches per rank and an existing file with the same settings is continued.
    Under torchrun every rank must call this; the writer (rank 0) returns the full result and the
    others return it too (broadcast).
    """
    from tqdm import tqdm

    cfg = config or SpectrumConfig()
    if cfg.augment and augment is None:
        raise LandscapeError("config.augment is set but no augment transform was given")
    device = device or next(model.parameters()).device
    sample_indices = spectrum_batches(len(labels), cfg.batch_size, cfg.n_batches, cfg.subset, cfg.seed)
    nb = sample_indices.shape[0]
    ev = np.full((nb, cfg.k), np.nan)
    res = np.full((nb, cfg.k), np.nan)
    nprod = np.full(nb, -1, dtype=np.int64)
    store = None
    path = Path(out) if out is not None else None
    if D.is_writer() and path is not None:
        store = _open_store(path, cfg, sample_indices, meta or {})
        ev[:] = store["eigenvalues"][()]
        res[:] = store["residuals"][()]
        nprod[:] = store["n_products"][()]
    todo = [i for i in range(nb) if np.isnan(ev[i]).any()]
    todo = D.broadcast_object(todo)
    run_cfg = cfg
    if cfg.mode == "auto" and cfg.backend == "landscape" and todo:
        # measure once (writer), so every rank and batch uses the same product mode
        chosen = None
        if D.is_writer():
            ii = torch.as_tensor(sample_indices[todo[0]], dtype=torch.long, device=images.device)
            probe = HessianOperator(model, (images[ii].to(device), labels[ii].to(device)),
                                    loss_fn=loss_fn, wd=cfg.wd, l2=cfg.l2)
            chosen = (probe.resolved_mode(), probe.mode_timings)
            probe.free()
        chosen = D.broadcast_object(chosen)
        run_cfg = replace(cfg, mode=chosen[0])
        if store is not None:
            store.attrs["mode_chosen"] = json.dumps({"mode": chosen[0], "seconds_per_product": chosen[1]})
    t0 = time.perf_counter()
    step = max(1, chunk) * D.world_size()
    bar = tqdm(total=nb, initial=nb - len(todo), desc="hessian spectrum", unit="batch",
               disable=not (progress and D.is_writer()))
    try:
        for s in range(0, len(todo), step):
            part = todo[s:s + step]
            mine = D.shard(part)
            done = [(i, *_batch_eigen(model, images, labels, sample_indices[i], i, run_cfg, augment,
                                       loss_fn, device)) for i in mine]
            gathered = D.gather_to_writer(done)
            if D.is_writer():
                for rank_items in gathered:
                    for i, e, r, n in rank_items:
                        ev[i], res[i], nprod[i] = e, r, n
                if store is not None:
                    store["eigenvalues"][...] = ev
                    store["residuals"][...] = res
                    store["n_products"][...] = nprod
                    store.flush()
                bar.update(len(part))
    finally:
        bar.close()
        if store is not None:
            store.close()
    wall = time.perf_counter() - t0
    result = SpectrumResult(ev, res, nprod, sample_indices, cfg.to_dict(), wall,
                            extra={"mode_chosen": run_cfg.mode})
    if D.is_writer() and path is not None:
        import h5py
        with h5py.File(path, "a") as f:
            f.attrs["summary"] = json.dumps(result.summary())
    result = D.broadcast_object(result)
    return result
