"""Curvature claims, one row per challenger family against the CNN: flatness (Hessian λmax,
loss surface), the share of negative eigenvalues (the paper's Fig. 4) and λmin/λmax."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..summary import Summary
from ..summary_sections import HessianEntry, parse_entry
from .evidence import (
    N_BOOT,
    Claim,
    ModelInfo,
    _between,
    _finite,
    _mean_col,
    _models,
    _section,
    _units,
    _why,
    challenger_families,
    comparison_name,
    family_name,
    missing_models,
)
from .verdict import judge_scale

MIN_PLANES = 3           # surface planes a model needs before its sharpness counts


def top_eigenvalue(entry: HessianEntry | Mapping[str, Any]) -> float | None:
    """Largest finite value of ``top_eigenvalues`` (None when absent or empty); a JSON object is
    parsed first."""
    entry = parse_entry("hessian", entry)
    vals = [float(v) for v in entry.top_eigenvalues or () if _finite(v)]
    return max(vals) if vals else None


def _hessian(summary: Summary) -> dict[str, HessianEntry]:
    return summary.entries("hessian")


def _rows(summary: Summary, build: Callable[[str], Claim]) -> list[Claim]:
    return [build(fam) for fam in challenger_families(_models(summary))]


# ----------------------------------------------------------------------------- λmax
def _lambda_max(summary: Summary) -> tuple[dict[str, np.ndarray | None], list[str]]:
    """Per model the per-batch λmax (finite values), and what was dropped."""
    vals: dict[str, np.ndarray | None] = {}
    dropped = []
    for lab, e in _hessian(summary).items():
        lmax = e.per_batch.lambda_max if e.per_batch else None
        if not lmax:
            dropped.append(f"{lab}: no hessian.per_batch.lambda_max")
            continue
        a = np.array([np.nan if v is None else v for v in lmax], dtype=np.float64)
        bad = int((~np.isfinite(a)).sum())
        if bad:
            dropped.append(f"{lab}: {bad} of {len(a)} batches without a finite λmax")
        vals[lab] = a[np.isfinite(a)][:, None] if np.isfinite(a).any() else None
    return vals, dropped


def claim_flatness(summary: Summary, seed: int = 0, n_boot: int = N_BOOT) -> list[Claim]:
    """MSAs flatten the loss landscape: mean λmax per Hessian batch, one row per family."""
    models = _models(summary)
    vals, dropped = _lambda_max(summary)

    def row(fam: str) -> Claim:
        evs, missing = _between(vals, models, fam, _mean_col)
        name = family_name(fam)
        return judge_scale(
            f"flatness-{fam}", evs, True,
            text=f"MSAs flatten the loss landscape: {comparison_name(fam)}, Hessian λmax",
            quantity=f"ratio of geometric means of the mean λmax per mini-batch Hessian "
                     f"({name} / CNN; raw difference beside)",
            prediction=f"{name} λmax < CNN λmax (ratio < 1)", section="hessian",
            direction=-1, unit_name="batches",
            why_missing=_why(summary, "hessian", "per_batch.lambda_max", evs, missing),
            seed=seed, n_boot=n_boot, dropped=_for(dropped, models, fam)
            + missing_models(summary, "hessian", models, (fam, "cnn")),
            group="flatness", family=fam)
    return _rows(summary, row)


def _for(dropped: list[str], models: dict[str, ModelInfo], fam: str) -> list[str]:
    """The dropped notes of the models of ``fam`` and the CNN (notes start with the label)."""
    keep = {lab for lab, m in models.items() if m.family in (fam, "cnn")}
    return [d for d in dropped if d.split(":", 1)[0] in keep or d.split(":", 1)[0] not in models]


# ----------------------------------------------------------------------------- surface
def _surface_units(summary: Summary) -> tuple[dict[str, np.ndarray], list, list[str], list[str]]:
    raw: dict[str, np.ndarray] = {}
    radii: list | None = None
    few, dropped = [], []
    for lab, e in summary.entries("surface").items():
        if not e.planes:
            dropped.append(f"{lab}: no surface planes")
            continue
        rows = [[np.nan if v is None else v for v in p.increase or ()] for p in e.planes]
        if len({len(r) for r in rows}) != 1 or not rows[0]:
            dropped.append(f"{lab}: planes without a common set of radii")
            continue
        a = np.asarray(rows, dtype=np.float64)
        if len(a) < MIN_PLANES:
            few.append(f"{lab}: {len(a)} plane(s) < {MIN_PLANES}")
            continue
        radii = radii or list(e.planes[0].radii or [])
        raw[lab] = a
    width = min((a.shape[1] for a in raw.values()), default=0)
    cols = [j for j in range(width) if all(np.isfinite(a[:, j]).all() for a in raw.values())]
    skipped = [radii[j] if radii and len(radii) > j else j for j in range(width) if j not in cols]
    if skipped:
        dropped.append(f"radii {skipped}: no finite increase in every plane of every model")
    vals = {k: a[:, cols] for k, a in raw.items()} if cols else {}
    used = [radii[j] for j in cols] if radii and len(radii) >= width else cols
    return vals, used, few, dropped + few


def claim_flatness_surface(summary: Summary, seed: int = 0, n_boot: int = N_BOOT
                           ) -> list[Claim]:
    """MSAs flatten the loss landscape: loss increase per random plane, one row per family.

    Only the radii with a finite increase in every plane of every model are used (a radius
    smaller than the grid step has no point)."""
    models = _models(summary)
    vals, used, few, dropped = _surface_units(summary)

    def row(fam: str) -> Claim:
        evs, missing = _between(vals, models, fam, _mean_col)
        extra: dict[str, Any] = {"radii": used}
        if {"test", "ref"} <= {e.side for e in evs}:
            extra["effect_per_radius"] = [
                float(np.mean([e.units[:, j].mean() for e in evs if e.side == "test"])
                      - np.mean([e.units[:, j].mean() for e in evs if e.side == "ref"]))
                for j in range(len(used))]
        name = family_name(fam)
        return judge_scale(
            f"flatness-surface-{fam}", evs, False,
            text=f"MSAs flatten the loss landscape: {comparison_name(fam)}, loss surface",
            quantity=f"Δ loss increase over the centre, mean over radii {used}, per random "
                     f"plane ({name} − CNN)",
            prediction=f"{name} increase < CNN increase (effect < 0)", section="surface",
            direction=-1, unit_name="planes",
            why_missing=_why(summary, "surface", f"planes (>= {MIN_PLANES})", evs, missing,
                             few),
            seed=seed, n_boot=n_boot, extra=extra,
            dropped=_for(dropped, models, fam)
            + missing_models(summary, "surface", models, (fam, "cnn")),
            group="flatness-surface", family=fam)
    return _rows(summary, row)


# ----------------------------------------------------------------------------- negative values
def negative_top_k_share(entry: HessianEntry) -> tuple[np.ndarray | None, str]:
    """Per batch the share of negative values among the top-k by magnitude (the paper's Fig. 4
    quantity), from ``per_batch.negative_top_k`` / ``top_k``; without per-batch counts the
    spectrum's overall ``negative_share`` (the same mean, one unit). (array (U, 1), source)."""
    pb = entry.per_batch
    if pb is not None and pb.negative_top_k and pb.top_k:
        a = np.array([np.nan if v is None else v for v in pb.negative_top_k], dtype=np.float64)
        a = a[np.isfinite(a)]
        if a.size:
            return (a / pb.top_k)[:, None], "per batch"
    share = entry.spectrum.negative_share if entry.spectrum is not None else None
    if _finite(share):
        return np.array([[float(share)]]), "overall share only (no per-batch counts)"
    return None, "no hessian.spectrum.negative_share"


def claim_negative_eigenvalues(summary: Summary, seed: int = 0, n_boot: int = N_BOOT
                               ) -> list[Claim]:
    """ViTs have many negative Hessian eigenvalues: the share of negative values among the
    top-k by magnitude per batch (the paper's Fig. 4), one row per family against the CNN."""
    models = _models(summary)
    vals: dict[str, np.ndarray | None] = {}
    dropped, source = [], {}
    for lab, e in _hessian(summary).items():
        vals[lab], source[lab] = negative_top_k_share(e)
        if vals[lab] is None or source[lab] != "per batch":
            dropped.append(f"{lab}: {source[lab]}")

    def row(fam: str) -> Claim:
        evs, missing = _between(vals, models, fam, _mean_col)
        name = family_name(fam)
        return judge_scale(
            f"negative-eigenvalues-{fam}", evs, False,
            text=f"ViTs have many negative Hessian eigenvalues, CNNs few: {comparison_name(fam)}",
            quantity=f"Δ share of negative values among the top-5 by magnitude per mini-batch "
                     f"(paper Fig. 4; {name} − CNN)",
            prediction=f"{name} share > CNN share (effect > 0)", section="hessian",
            direction=+1, unit_name="batches",
            why_missing=_why(summary, "hessian", "spectrum.negative_share", evs, missing),
            seed=seed, n_boot=n_boot, dropped=_for(dropped, models, fam)
            + missing_models(summary, "hessian", models, (fam, "cnn")),
            group="negative-eigenvalues", family=fam)
    return _rows(summary, row)


def claim_lambda_ratio(summary: Summary, seed: int = 0, n_boot: int = N_BOOT) -> list[Claim]:
    """A second view of negative curvature: per checkpoint the median over batches of
    max(-λmin, 0)/λmax; batches with λmax <= 0 or a missing λmin are dropped and named."""
    models = _models(summary)
    vals: dict[str, np.ndarray | None] = {}
    dropped = []
    for lab, e in _hessian(summary).items():
        pb = e.per_batch
        lmax = _units(list(pb.lambda_max or ())) if pb else None
        lmin = _units([np.nan if v is None else v for v in pb.lambda_min or ()]) \
            if pb and pb.lambda_min else None
        if lmax is None or lmin is None or lmax.shape != lmin.shape:
            dropped.append(f"{lab}: no matching hessian.per_batch.lambda_min / lambda_max")
            continue
        ok = (lmax[:, 0] > 0) & np.isfinite(lmin[:, 0])
        if (~ok).any():
            dropped.append(f"{lab}: {int((~ok).sum())} of {len(ok)} batches with λmax <= 0 or "
                           "no λmin")
        if ok.any():
            r = np.maximum(-lmin[ok, 0], 0.0) / lmax[ok, 0]
            vals[lab] = np.array([[float(np.median(r))]])

    def row(fam: str) -> Claim:
        evs, missing = _between(vals, models, fam, _mean_col)
        name = family_name(fam)
        return judge_scale(
            f"lambda-ratio-{fam}", evs, True,
            text=f"Negative curvature relative to the top curvature: {comparison_name(fam)}, "
                 "λmin/λmax",
            quantity=f"ratio of geometric means of the per-checkpoint median over batches of "
                     f"max(−λmin, 0)/λmax ({name} / CNN; raw difference beside)",
            prediction=f"{name} ratio > CNN ratio (ratio of means > 1)", section="hessian",
            direction=+1, unit_name="checkpoint medians",
            why_missing=_why(summary, "hessian", "per_batch.lambda_min and lambda_max", evs,
                             missing), seed=seed, n_boot=n_boot,
            dropped=_for(dropped, models, fam)
            + missing_models(summary, "hessian", models, (fam, "cnn")),
            group="lambda-ratio", family=fam)
    return _rows(summary, row)


__all__ = ["MIN_PLANES", "claim_flatness", "claim_flatness_surface", "claim_lambda_ratio",
           "claim_negative_eigenvalues", "negative_top_k_share", "top_eigenvalue", "_section"]
