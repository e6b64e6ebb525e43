"""Curvature claims: flatness (Hessian λmax, loss surface) and negative eigenvalues."""
from __future__ import annotations

from typing import Any

import numpy as np

from .evidence import (
    N_BOOT,
    Claim,
    _between,
    _finite,
    _mean_col,
    _models,
    _section,
    _units,
    _why,
    judge,
)

MIN_PLANES = 3           # surface planes a model needs before its sharpness counts


def top_eigenvalue(entry: dict) -> float | None:
    """Largest of ``top_eigenvalues`` (None when absent or empty)."""
    vals = [float(v) for v in entry.get("top_eigenvalues") or [] if _finite(v)]
    return max(vals) if vals else None


def _per_batch(entry: Any, key: str) -> list | None:
    pb = entry.get("per_batch") if isinstance(entry, dict) else None
    return pb.get(key) if isinstance(pb, dict) else None


def claim_flatness(summary: dict, seed: int = 0, n_boot: int = N_BOOT) -> Claim:
    """MSAs flatten the loss landscape: λmax per Hessian batch, ViT/hybrid below CNN."""
    models = _models(summary)
    vals = {k: _units(_per_batch(v, "lambda_max")) for k, v in _section(summary, "hessian").items()}
    evs, missing = _between(vals, models, ("vit", "hybrid"), _mean_col)
    return judge("flatness", "MSAs flatten the loss landscape (Hessian)",
                 "mean λmax per mini-batch Hessian: ViT/hybrid minus CNN",
                 "ViT/hybrid λmax < CNN λmax (effect < 0)", "hessian", evs, -1, "batches",
                 _why(summary, "hessian", "per_batch.lambda_max", evs, missing), seed, n_boot)


def claim_flatness_surface(summary: dict, seed: int = 0, n_boot: int = N_BOOT) -> Claim:
    """MSAs flatten the loss landscape: loss increase per random plane, ViT/hybrid below CNN.

    Only the radii with a finite increase in every plane of every model are used (a radius
    smaller than the grid step has no point)."""
    models = _models(summary)
    raw: dict[str, np.ndarray] = {}
    radii: list | None = None
    few = []
    for lab, e in _section(summary, "surface").items():
        planes = e.get("planes") if isinstance(e, dict) else None
        if not isinstance(planes, list) or not planes:
            continue
        rows = [[np.nan if v is None else v for v in p.get("increase") or []]
                for p in planes if isinstance(p, dict)]
        try:
            a = np.asarray(rows, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if a.ndim != 2 or a.size == 0:
            continue
        if len(a) < MIN_PLANES:
            few.append(f"{lab}: {len(a)} plane(s) < {MIN_PLANES}")
            continue
        radii = radii or list(planes[0].get("radii") or [])
        raw[lab] = a
    width = min((a.shape[1] for a in raw.values()), default=0)
    cols = [j for j in range(width) if all(np.isfinite(a[:, j]).all() for a in raw.values())]
    vals: dict[str, np.ndarray | None] = {k: a[:, cols] for k, a in raw.items()} if cols else {}
    evs, missing = _between(vals, models, ("vit", "hybrid"), _mean_col)
    used = [radii[j] for j in cols] if radii and len(radii) >= width else cols
    extra: dict[str, Any] = {"radii": used}
    if {"test", "ref"} <= {e.side for e in evs}:
        # the effect at each radius alone, to show its spread
        extra["effect_per_radius"] = [
            float(np.mean([e.units[:, j].mean() for e in evs if e.side == "test"])
                  - np.mean([e.units[:, j].mean() for e in evs if e.side == "ref"]))
            for j in range(len(cols))]
    return judge("flatness-surface", "MSAs flatten the loss landscape (surface)",
                 "loss increase over the centre, mean over radii, per random plane: "
                 "ViT/hybrid minus CNN", "ViT/hybrid increase < CNN increase (effect < 0)",
                 "surface", evs, -1, "planes",
                 _why(summary, "surface", f"planes (>= {MIN_PLANES})", evs, missing, few), seed,
                 n_boot, extra=extra)


def _neg_ratio(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1)


def claim_negative_eigenvalues(summary: dict, seed: int = 0, n_boot: int = N_BOOT) -> Claim:
    """ViTs have more negative curvature: per batch max(-λmin, 0) / λmax, ViT above CNN."""
    models = _models(summary)
    vals: dict[str, np.ndarray | None] = {}
    share: dict[str, float] = {}
    for lab, e in _section(summary, "hessian").items():
        lmax, lmin = _units(_per_batch(e, "lambda_max")), _units(_per_batch(e, "lambda_min"))
        if lmax is None or lmin is None or lmax.shape != lmin.shape or (lmax <= 0).any():
            continue
        vals[lab] = np.maximum(-lmin, 0.0) / lmax
        share[lab] = float((lmin < 0).mean())
    evs, missing = _between(vals, models, ("vit",), _neg_ratio)
    return judge("negative-eigenvalues", "ViTs have many negative Hessian eigenvalues; CNNs few",
                 "mean over batches of max(-λmin, 0)/λmax: ViT minus CNN",
                 "ViT ratio > CNN ratio (effect > 0)", "hessian", evs, +1, "batches",
                 _why(summary, "hessian", "per_batch.lambda_min and lambda_max", evs, missing),
                 seed, n_boot, extra={"negative_share": share})
