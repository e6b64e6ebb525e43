"""The paper's max-eigenvalue spectrum: the top-k Hessian eigenvalues of many small mini-batches.

Park & Kim (2022), Fig. 1/4/6/7/12: for every mini-batch of 16 training images over about 10% of
the training set, the top-5 eigenvalues (largest magnitude, as their patched PyHessian power
iteration returns) of the loss NLL + L2 weight decay on augmented data; the density of all these
values, the share of negative ones and the mean of the positive ones. The L2 term is the
operator ``l2_hessian(wd, l2)`` added to the loss Hessian (``l2="paper"``: the paper code's
``wd * sum_p ||p||_2``; ``"half"``: ``wd/2 ||theta||^2``); ``wd`` and ``l2`` are recorded.

Beside the top-k, every batch records its most negative eigenvalue (``negative=True``, default),
found in the same Lanczos run and held to the same residual rule
``||H y - theta y|| <= tol * |theta|``: the top-k shows a negative value only when it outweighs the
k-th positive one, so the share of negative top-k values mixes non-convexity with the size of the
positive curvature; ``lambda_min`` and the median ``|lambda_min| / lambda_max`` separate them.

``warm_start=True`` starts each batch's Lanczos from the previous batch's Ritz vectors added to the
usual start vector, in chains of ``segment`` consecutive batches (the first of each chain starts
cold, so a chain's values depend only on the chain: resumes and torchrun shards give the same
numbers). It is off by default: benchmarks/hessian.py measured it no cheaper (the loss gradient,
in the cold start, already lies mostly in the batch's own top eigenspace, while consecutive
batches' top-5 spaces overlap little).

Raw results go to one HDF5 file (``eigenvalues`` [n_batches, k], NaN rows unfinished;
``residuals``, ``n_products``, ``converged``, ``min_eigenvalue``, ``min_residual``,
``sample_indices`` [n_batches, batch_size], ``batch_index``; attrs ``config``, ``seed``,
``identity`` (:mod:`landscape.store.resume`), ``versions``, ``mode_chosen``, ``summary``), replaced
atomically after every round. Re-running with the same settings continues where it stopped,
with the product mode recorded by the first run (``mode="auto"`` is resolved once and never
re-timed: from the persistent mode cache when the setting was seen before, else by the measured
rule for the device (the CPU: double backward), else measured inside
the first batch's own Lanczos products, which count in that batch's ``n_products``; under
torchrun without a cached choice it is measured on rank 0 before the work, and those products
are recorded in ``mode_chosen["probe_products"]``). Under ``torchrun`` the work units
(single batches, or warm-start chains) are sharded over ranks; each batch's problem depends only
on (seed, batch index) and its chain, so the result is identical to the single-process run.
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn as nn

from .. import distributed as D
from ..errors import LandscapeError
from ..settings import SpectrumSettings
from ..store.resume import check, identity
from . import (
    HessianOperator,
    LossHessian,
    check_curvature_options,
    lanczos_eigenpairs,
    mode_cache,
    start_vector,
    top_eigenvalues,
)
from .modes import ModeChoice, rule_for

PathLike = str | Path
_ARRAYS = ("eigenvalues", "residuals", "n_products", "converged", "min_eigenvalue", "min_residual")


#: The spectrum's settings: :class:`landscape.settings.SpectrumSettings` (the one place its
#: defaults and validation live); the old name stays for callers.
SpectrumConfig = SpectrumSettings


class BatchEigen(NamedTuple):
    """One batch's solve: top-k values and residuals, products, the most negative eigenvalue and
    its residual (NaN when not computed), whether every wanted pair converged, Ritz vectors."""

    eigenvalues: np.ndarray
    residuals: np.ndarray
    n_products: int
    min_eigenvalue: float
    min_residual: float
    converged: bool
    vectors: torch.Tensor | None = None
    mode_choice: dict[str, Any] | None = None  # set when this batch's operator chose the mode


@dataclass
class SpectrumResult:
    """Raw per-batch top-k eigenvalues, most negative eigenvalues and what defines them."""

    eigenvalues: np.ndarray  # (n_batches, k); NaN rows unfinished
    residuals: np.ndarray
    n_products: np.ndarray  # (n_batches,), -1 unfinished
    sample_indices: np.ndarray  # (n_batches, batch_size) positions in the data given
    config: dict[str, Any]
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    min_eigenvalue: np.ndarray | None = None  # (n_batches,) most negative eigenvalue (SA)
    min_residual: np.ndarray | None = None
    converged: np.ndarray | None = None  # (n_batches,) all wanted pairs within tol

    @property
    def finished(self) -> np.ndarray:
        return ~np.isnan(self.eigenvalues).any(axis=1)

    def values(self) -> np.ndarray:
        """All finished eigenvalues, flattened."""
        return self.eigenvalues[self.finished].reshape(-1)

    def per_batch(self) -> dict[str, list[float]]:
        """Per finished batch: ``lambda_max`` (largest of its top-k), ``lambda_min`` (its most
        negative eigenvalue; NaN when not computed) and ``negative_top_k`` (how many of its
        ``top_k`` values are negative): the evidence format ``claims`` reads as
        ``summary["hessian"][label]["per_batch"]``."""
        fin = self.finished
        lmin = self.min_eigenvalue[fin] if self.min_eigenvalue is not None \
            else np.full(int(fin.sum()), np.nan)
        top = self.eigenvalues[fin]
        return {"lambda_max": top.max(axis=1).tolist(), "lambda_min": [float(v) for v in lmin],
                "negative_top_k": (top < 0).sum(axis=1).tolist(), "top_k": int(top.shape[1])}

    def summary(self) -> dict[str, Any]:
        """The paper's two numbers (share of negative top-k values, mean of the positive ones),
        the most negative eigenvalue's statistics, the L2 term and the product counts."""
        fin = self.finished
        out = spectrum_summary(self.values()) | {
            "n_batches_finished": int(fin.sum()), "n_batches": len(self.eigenvalues),
            "mean_products_per_batch": float(self.n_products[fin].mean()) if fin.any()
            else float("nan"), "wd": self.config.get("wd"), "l2": self.config.get("l2")}
        if self.converged is not None and fin.any():
            out["converged_share"] = float(self.converged[fin].mean())
        if self.min_eigenvalue is not None:
            out |= lambda_min_summary(self.min_eigenvalue[fin], self.eigenvalues[fin])
        return out

    @classmethod
    def load(cls, path: PathLike) -> SpectrumResult:
        import h5py
        with h5py.File(path, "r") as f:
            opt = {k: f[k][()] for k in ("min_eigenvalue", "min_residual", "converged") if k in f}
            return cls(eigenvalues=f["eigenvalues"][()], residuals=f["residuals"][()],
                       n_products=f["n_products"][()], sample_indices=f["sample_indices"][()],
                       config=json.loads(f.attrs["config"]),
                       extra={k: f.attrs[k] for k in f.attrs if k != "config"}, **opt)


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


def lambda_min_summary(lmin: np.ndarray, top: np.ndarray) -> dict[str, float]:
    """Per batch lambda_min (most negative) and lambda_max (largest of the top-k): the share of
    batches with lambda_min < 0, the median lambda_min and the median |lambda_min| / lambda_max
    over batches with lambda_max > 0."""
    lmin = np.asarray(lmin, dtype=np.float64).reshape(-1)
    lmax = np.max(np.asarray(top, dtype=np.float64).reshape(len(lmin), -1), axis=1) \
        if len(lmin) else np.zeros(0)
    ok = np.isfinite(lmin) & np.isfinite(lmax)
    lmin, lmax = lmin[ok], lmax[ok]
    pos = lmax > 0
    return {"lambda_min_count": int(lmin.size),
            "lambda_min_negative_share": float((lmin < 0).mean()) if lmin.size else float("nan"),
            "lambda_min_median": float(np.median(lmin)) if lmin.size else float("nan"),
            "median_abs_min_over_max": float(np.median(np.abs(lmin[pos]) / lmax[pos]))
            if pos.any() else float("nan")}


def spectrum_batches(n_data: int, batch_size: int = SpectrumSettings.batch_size,
                     n_batches: int | None = SpectrumSettings.n_batches,
                     subset: float = SpectrumSettings.subset,
                     seed: int = SpectrumSettings.seed) -> np.ndarray:
    """Sample indices (n_batches, batch_size): a seeded permutation of the data cut into batches;
    ``n_batches`` 0 or None: ``floor(subset * n_data / batch_size)``."""
    if not n_batches:
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


def _batch_operator(model, images, labels, idx, i, cfg, augment, loss_fn, device, mode):
    ii = torch.as_tensor(idx, dtype=torch.long, device=images.device)
    return HessianOperator(model, (images[ii].to(device), labels[ii].to(device)), loss_fn=loss_fn,
                           wd=cfg.wd, l2=cfg.l2, augment=augment if cfg.augment else None,
                           augment_seed=_augment_seed(cfg.seed, i), mode=mode,
                           curvature=cfg.curvature)


def _batch_eigen(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, idx: np.ndarray,
                 i: int, cfg: SpectrumConfig, augment: Callable | None,
                 loss_fn: Callable | None, device: torch.device,
                 prev: torch.Tensor | None = None) -> BatchEigen:
    """Batch i's top-k (and most negative eigenvalue); ``prev``: Ritz vectors to warm-start from."""
    op = _batch_operator(model, images, labels, idx, i, cfg, augment, loss_fn, device, cfg.mode)
    nan = float("nan")
    seed = cfg.seed + i
    if cfg.backend != "landscape" or cfg.method != "lanczos":
        kw = dict(tol=cfg.tol, max_iter=cfg.max_iter, seed=seed, method=cfg.method,
                  backend=cfg.backend, return_eigenvectors=False)
        r = top_eigenvalues(op, cfg.k, cfg.which, **kw)
        lo = top_eigenvalues(op, 1, "SA", **kw) if cfg.negative and cfg.backend == "landscape" \
            else None
        op.free()
        n = r.n_products + (lo.n_products if lo else 0)
        conv = r.converged and (lo is None or lo.converged)
        return BatchEigen(r.eigenvalues, r.residuals, n, lo.eigenvalues[0] if lo else nan,
                          lo.residuals[0] if lo else nan, conv)
    v0, _ = start_vector(op, op.shape[0], cfg.which, seed, cfg.start)
    if prev is not None:
        v0 = v0 / v0.norm() + prev.sum(1).to(v0) / prev.shape[1] ** 0.5
    targets = {cfg.which: cfg.k}
    if cfg.negative and cfg.which != "SA":
        targets["SA"] = 1
    rs = lanczos_eigenpairs(op, targets, v0, tol=cfg.tol, max_iter=cfg.max_iter, seed=seed,
                            return_eigenvectors=cfg.warm_start, confirm=cfg.confirm)
    choice = op.loss.mode_choice.to_dict() if cfg.mode == "auto" and op.loss.mode_choice else None
    op.free()
    r, lo = rs[cfg.which], rs.get("SA", rs[cfg.which] if cfg.which == "SA" else None)
    conv = all(x.converged for x in rs.values())
    if not conv:
        warnings.warn(f"batch {i}: not converged to tol {cfg.tol} in {r.n_products} products",
                      stacklevel=2)
    vecs = torch.cat([x.eigenvectors.to("cpu", torch.float64) for x in rs.values()], 1) \
        if cfg.warm_start else None
    return BatchEigen(r.eigenvalues, r.residuals, r.n_products,
                      float(lo.eigenvalues[0]) if lo is not None else nan,
                      float(lo.residuals[0]) if lo is not None else nan, conv, vecs, choice)


def _chain(model, images, labels, sample_indices, chain, cfg, augment, loss_fn, device):
    """Solve the batches of one work unit in order (warm-starting each from the previous); a
    mode still "auto" is resolved by the first batch and kept for the rest."""
    out, prev = [], None
    for i in chain:
        r = _batch_eigen(model, images, labels, sample_indices[i], i, cfg, augment, loss_fn,
                         device, prev if cfg.warm_start else None)
        prev = r.vectors
        if cfg.mode == "auto" and r.mode_choice is not None:
            cfg = replace(cfg, mode=r.mode_choice["mode"])
        out.append((i, r._replace(vectors=None)))
    return out


def _empty_arrays(nb: int, k: int) -> dict[str, np.ndarray]:
    """Per-batch result arrays, all unfinished (NaN / -1 / False)."""
    return {"eigenvalues": np.full((nb, k), np.nan), "residuals": np.full((nb, k), np.nan),
            "n_products": np.full(nb, -1, dtype=np.int64), "converged": np.zeros(nb, dtype=bool),
            "min_eigenvalue": np.full(nb, np.nan), "min_residual": np.full(nb, np.nan)}


class _Store:
    """The spectrum's HDF5 file: checked against the settings, rewritten atomically per round."""

    def __init__(self, path: Path, cfg: SpectrumConfig, sample_indices: np.ndarray,
                 meta: dict[str, Any]):
        self.path, self.cfg_json = path, json.dumps(cfg.to_dict(), sort_keys=True)
        self.arrays = _empty_arrays(sample_indices.shape[0], cfg.k)
        self.sample_indices = sample_indices
        from ..store.provenance import versions
        ident = identity({**cfg.to_dict(), "sample_indices_sha256": hashlib.sha256(
            np.ascontiguousarray(sample_indices, dtype=np.int64).tobytes()).hexdigest()},
            meta.get("checkpoint_sha256"))
        self.attrs: dict[str, Any] = {"config": self.cfg_json, "seed": cfg.seed,
                                      "identity": json.dumps(ident, sort_keys=True),
                                      "versions": json.dumps(versions()),
                                      "meta": json.dumps(meta, default=str)}
        if path.exists():
            self._read()

    def _read(self) -> None:
        import h5py

        from ..store.provenance import resume_guard
        with resume_guard(self.path, "spectrum file"):
            if not h5py.is_hdf5(self.path):
                raise LandscapeError(f"cannot resume from {self.path}: not an HDF5 file "
                                     f"({self.path.stat().st_size} bytes); delete it or use "
                                     "another --out")
            self._read_checked(h5py)

    def _read_checked(self, h5py: Any) -> None:
        with h5py.File(self.path, "r") as f:
            missing = [k for k in ("sample_indices", *_ARRAYS) if k not in f]
            if missing:
                raise LandscapeError(f"cannot resume from {self.path}: {', '.join(missing)} "
                                     "missing; delete it or use another --out")
            if "converged" not in f:
                raise LandscapeError(f"cannot resume from {self.path}: written by an older "
                                     "version (no converged flags); delete it or use another "
                                     "--out")
            old = json.loads(f.attrs.get("identity", "null"))
            check(self.path, "a spectrum", old, json.loads(self.attrs["identity"]))
            for k in _ARRAYS:
                self.arrays[k][...] = f[k][()]
            for k in ("mode_chosen", "versions", "meta"):
                if k in f.attrs:
                    self.attrs[k] = f.attrs[k]

    def write(self) -> None:

        from ..store.provenance import atomic_h5
        with atomic_h5(self.path) as f:
            for k, v in self.arrays.items():
                f.create_dataset(k, data=v)
            f.create_dataset("sample_indices", data=self.sample_indices)
            f.create_dataset("batch_index", data=np.arange(len(self.sample_indices)))
            for k, v in self.attrs.items():
                f.attrs[k] = v


def _resolve_mode(model, images, labels, sample_indices, todo_first, cfg, loss_fn, device, store):
    """The product mode and its record: the given one; the one a previous run recorded (pinned on
    resume); the persistent cache's choice for this setting; the measured rule's for the device
    (``curvature.modes.RULES``); else, in one process, ("auto",
    None): the first batch's operator measures inside its own Lanczos products. Under torchrun
    without a cached choice rank 0 measures on the first unfinished batch (products recorded)."""
    if cfg.mode != "auto" or cfg.backend != "landscape" or cfg.curvature != "hessian":
        return cfg.mode, None
    chosen = None
    if D.is_writer():
        if store is not None and "mode_chosen" in store.attrs:
            chosen = json.loads(store.attrs["mode_chosen"])
        else:
            ii = torch.as_tensor(sample_indices[todo_first], dtype=torch.long, device=images.device)
            probe = LossHessian(model, (images[ii].to(device), labels[ii].to(device)),
                                loss_fn=loss_fn)
            hit = mode_cache.lookup(probe.mode_cache_key())
            rule = rule_for(probe.device)
            if hit is not None:
                chosen = ModeChoice.from_dict(hit, source="cache").to_dict()
            elif rule is not None:
                chosen = rule.to_dict()
            elif D.world_size() > 1:
                probe.resolved_mode()
                chosen = probe.mode_choice.to_dict()
            probe.free()
            del probe
            if store is not None and chosen is not None:
                store.attrs["mode_chosen"] = json.dumps(chosen)
                store.write()
    chosen = D.broadcast_object(chosen)
    return (chosen["mode"], chosen) if chosen is not None else ("auto", None)


def max_eigenvalue_spectrum(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                            config: SpectrumConfig | None = None, *,
                            out: PathLike | None = None,
                            augment: Callable[[torch.Tensor, torch.Generator],
                                              torch.Tensor] | None = None,
                            loss_fn: Callable | None = None,
                            device: torch.device | None = None, progress: bool = True,
                            chunk: int = 4, meta: dict[str, Any] | None = None) -> SpectrumResult:
    """Top-k eigenvalues (and the most negative one) of the Hessian of each mini-batch (see
    module doc).

    ``images``/``labels``: the (normalized) training data; batches are drawn from it by
    :func:`spectrum_batches`. ``augment(x, generator)`` is used when ``config.augment``; batch i
    gets the generator seeded by (seed, i). With ``out`` (an .h5 path) results are written after
    every round (``chunk`` batches, or one warm-start chain, per rank) and an existing file with
    the same settings is continued. Under torchrun every rank must call this; every rank returns
    the full result.
    """
    from tqdm import tqdm

    cfg = config or SpectrumConfig()
    check_curvature_options(cfg.curvature, backend=cfg.backend, mode=cfg.mode)
    if cfg.augment and augment is None:
        raise LandscapeError("config.augment is set but no augment transform was given")
    if cfg.warm_start and cfg.segment < 1:
        raise LandscapeError(f"segment must be >= 1, got {cfg.segment}")
    device = device or next(model.parameters()).device
    sample_indices = spectrum_batches(len(labels), cfg.batch_size, cfg.n_batches, cfg.subset,
                                      cfg.seed)
    nb = sample_indices.shape[0]
    path = Path(out) if out is not None else None
    store = _Store(path, cfg, sample_indices, meta or {}) if D.is_writer() and path else None
    arrays = store.arrays if store is not None else _empty_arrays(nb, cfg.k)
    if cfg.warm_start:  # chains of consecutive batches; a chain with an unfinished batch is redone
        units = [list(range(s, min(s + cfg.segment, nb))) for s in range(0, nb, cfg.segment)]
        units = [u for u in units if any(np.isnan(arrays["eigenvalues"][i]).any() for i in u)]
    else:
        todo = [i for i in range(nb) if np.isnan(arrays["eigenvalues"][i]).any()]
        units = [todo[s:s + max(1, chunk)] for s in range(0, len(todo), max(1, chunk))]
    units = D.broadcast_object(units)
    mode, chosen = _resolve_mode(model, images, labels, sample_indices,
                                 units[0][0] if units else 0, cfg, loss_fn, device, store) \
        if units else (cfg.mode, None)
    run_cfg = replace(cfg, mode=mode)
    t0 = time.perf_counter()
    n_todo = sum(len(u) for u in units)
    bar = tqdm(total=nb, initial=nb - n_todo, desc="hessian spectrum", unit="batch",
               disable=not (progress and D.is_writer()))
    try:
        for s in range(0, len(units), D.world_size()):
            part = units[s:s + D.world_size()]
            done = [item for u in D.shard(part) for item in _chain(
                model, images, labels, sample_indices, u, run_cfg, augment, loss_fn, device)]
            gathered = D.gather_to_writer(done)
            if run_cfg.mode == "auto":  # one process: the first batch measured (module doc)
                first = next((r.mode_choice for _, r in done if r.mode_choice), None)
                if first is not None:
                    mode, chosen = first["mode"], first
                    run_cfg = replace(cfg, mode=mode)
                    if store is not None:
                        store.attrs["mode_chosen"] = json.dumps(chosen)
            if D.is_writer():
                for rank_items in gathered:
                    for i, r in rank_items:
                        for k in _ARRAYS:
                            arrays[k][i] = getattr(r, k)
                if store is not None:
                    store.write()
                bar.update(sum(len(u) for u in part))
    finally:
        bar.close()
    result = SpectrumResult(arrays["eigenvalues"], arrays["residuals"], arrays["n_products"],
                            sample_indices, cfg.to_dict(), time.perf_counter() - t0,
                            extra={"mode_chosen": mode, "mode_choice": chosen},
                            min_eigenvalue=arrays["min_eigenvalue"],
                            min_residual=arrays["min_residual"], converged=arrays["converged"])
    if store is not None:
        store.attrs["summary"] = json.dumps(result.summary())
        store.write()
    return D.broadcast_object(result)
