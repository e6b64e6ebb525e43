"""The numbers of ``summary.json`` from one analysis result: :func:`summarize` turns a result of
:mod:`landscape.analyze.steps` into the typed entry of its section
(:mod:`landscape.summary_sections`), which the claims and the report read; the surface's
sharpness per radius and plane, the CKA's stage structure and the per-block tables are computed
here."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import LandscapeError
from .config import AnalyzeConfig


def _blocks_table(res: Any, value_key: str, values: Sequence[float],
                  per_image: Sequence[Any], groups: int) -> list[dict[str, Any]]:
    """Rows per block (input first, when present): value, grid, ``same_grid`` (as the preceding
    entry) and the per-group means of the per-image values (the claims' bootstrap units)."""
    from ..claims import group_means
    same = {c["name"]: bool(c["same_grid"]) for c in res.changes()}
    rows = []
    for i, name in enumerate(res.names):
        row = {"name": name, "kind": res.kinds[i], "stage": int(res.stages[i]),
               "depth": float(res.depth[i]), value_key: float(values[i])}
        if name in same:
            row["same_grid"] = same[name]
        if i < len(per_image) and len(per_image[i]):
            row["groups"] = group_means(per_image[i], groups)
        rows.append(row)
    return rows


def summarize(analysis: str, res: Any, cfg: AnalyzeConfig) -> Any:
    """The typed summary entry of one analysis result (``HessianEntry``, ``SurfaceEntry``, ...:
    ``landscape.summary_sections.ENTRY_TYPES``): the numbers the report and the claims read,
    parsed by the section's own parser, so the entry equals what reading ``summary.json``
    gives."""
    from ..summary_fields import plain
    from ..summary_sections import parse_entry
    return parse_entry(analysis, plain(summary_numbers(analysis, res, cfg)))


def summary_numbers(analysis: str, res: Any, cfg: AnalyzeConfig) -> dict[str, Any]:
    """The JSON object of one analysis's summary entry, from its result."""
    if analysis == "hessian":
        c = res["curvature"]
        trace = c.get("trace") or {}  # absent with trace_products = 0
        return {"top_eigenvalues": c["top"]["eigenvalues"],
                "bottom_eigenvalues": c["bottom"]["eigenvalues"],
                "trace": trace.get("trace"), "trace_se": trace.get("stderr"),
                "trace_note": None if trace else "not computed (trace_products = 0)",
                "density": (f"SLQ, {cfg.density_probes} probes × {cfg.density_steps} steps"
                            if cfg.density_probes else "not computed (density_probes = 0)"),
                "n_samples": c["n_samples"], "n_params": c["n_params"],
                "loss": "NLL + wd * sum_p ||p||_2" if res["wd"] else "NLL",
                "wd": res["wd"], "augment": res["augment"], "wd_source": res["recipe_source"],
                "per_batch": res["spectrum"].per_batch(),
                "spectrum": {**res["spectrum"].summary(), "batch_size": cfg.spectrum_batch_size}}
    if analysis == "surface":
        return surface_sharpness(res["planes"], res["quantity"], radii_of(cfg),
                                 cfg.surface_radius, res["seeds"]) | {
            "wd": res["wd"], "augment": res["augment"], "wd_source": res["recipe_source"],
            "loss": "NLL + wd * sum_p ||p||_2" if res["wd"] else "NLL"}
    from ..claims import group_means
    g = cfg.groups
    if analysis == "fourier":
        rows = _blocks_table(res, "dlogA_hf", res.high_frequency, res.per_image, g)
        labels, at = res.high_frequency_labels, res.high_frequency_at
        for i, row in enumerate(rows):
            row.update(grid=res.grid(i), freq=float(at[i]), freq_label=labels[i])
        return {"readout": res.readout, "blocks": rows}
    if analysis == "variance":
        rows = _blocks_table(res, "variance", res.variance, res.per_image, g)
        for i, row in enumerate(rows):
            if i < len(res.grid):
                row["grid"] = int(res.grid[i])
        return {"blocks": rows}
    if analysis == "robustness":
        out = {"freqs": [float(f) for f in res.freqs], "acc": [float(a) for a in res.accuracy],
               "clean_acc": float(res.clean_accuracy), "protocol": res.protocol,
               "eps": res.eps, "width": float(res.width), "noise_norm": float(res.norm)}
        if res.correct:
            out["groups"] = {"clean": group_means(res.correct[0], g),
                             "acc": [group_means(c, g) for c in res.correct[1:]]}
        return out
    if analysis == "cka":
        return _cka_stages(res)
    if analysis == "lesion":
        hits = res.correct or []
        out = {"baseline_acc": float(res.baseline_accuracy),
               "blocks": [{"name": n, "kind": k, "stage": int(s), "depth": float(d),
                           "acc": float(a)}
                          for n, k, s, d, a in zip(res.names, res.kinds, res.stages, res.depth,
                                                   res.accuracy, strict=True)]}
        if len(hits) == len(res.names) + 1:
            out["baseline_groups"] = group_means(hits[0], g)
            for b, h in zip(out["blocks"], hits[1:], strict=True):
                b["groups"] = group_means(h, g)
        return out
    raise LandscapeError(analysis)


def radii_of(cfg: AnalyzeConfig) -> list[float]:
    """The radii of ``cfg.surface_radii`` ("0.25,0.5,1")."""
    try:
        radii = sorted(float(r) for r in str(cfg.surface_radii).split(",") if r.strip())
    except ValueError:
        raise LandscapeError(f"surface_radii must be numbers separated by commas, "
                             f"got {cfg.surface_radii!r}") from None
    if not radii or any(not np.isfinite(r) or r <= 0 for r in radii):
        raise LandscapeError(f"surface_radii must be positive, got {cfg.surface_radii!r}")
    return radii


def surface_sharpness(planes: Sequence[Any], quantity: str, radii: Sequence[float],
                      radius: float, seeds: Sequence[int]) -> dict[str, Any]:
    """Loss increase over the centre within each radius, per random plane (direction seed
    ``seeds[i]``): the median (``increase``, robust to a few edge points) and the mean over the
    finite grid points with ``0 < sqrt(a^2 + b^2) <= r``. ``mean_loss_increase`` is the mean
    over planes of the per-plane mean at ``radius``."""
    rows, centres, maxima = [], [], []
    for seed, res in zip(seeds, planes, strict=True):
        loss = np.asarray(res.arrays[quantity], dtype=float)
        x, y = res.xcoordinates, res.ycoordinates
        xx, yy = (np.meshgrid(x, y) if y is not None else (x, np.zeros_like(x)))
        r = np.sqrt(xx ** 2 + yy ** 2)
        ic = np.unravel_index(np.argmin(r), r.shape)
        centre = float(loss[ic])
        centres.append(centre)
        finite = np.isfinite(loss)
        if finite.any():
            maxima.append(float(loss[finite].max()))
        means, medians, counts = [], [], []
        for rad in radii:
            inside = (r <= rad + 1e-9) & (r > r[ic]) & finite
            inc = loss[inside] - centre
            means.append(float(inc.mean()) if inc.size else None)
            medians.append(float(np.median(inc)) if inc.size else None)
            counts.append(int(inc.size))
        rows.append({"seed": int(seed), "radii": list(radii), "increase": medians,
                     "mean_increase": means, "points": counts,
                     "non_finite": int((~finite).sum()), "grid": list(loss.shape[::-1])})
    j = min(range(len(radii)), key=lambda k: abs(radii[k] - radius))
    at = [p["mean_increase"][j] for p in rows if p["mean_increase"][j] is not None]
    return {"quantity": quantity, "center_loss": centres[0], "radius": radius,
            "radii": list(radii), "planes": rows,
            "mean_loss_increase": float(np.mean(at)) if at else None,
            "max_loss": max(maxima) if maxima else None,
            "non_finite": sum(p["non_finite"] for p in rows), "grid": rows[0]["grid"]}


def _cka_stages(res: Any) -> dict[str, Any]:
    """Stage structure of the CKA matrix (embed and head left out): the plain within/across-stage
    means, the means at each depth distance that has both kinds of pair (the claim compares only
    those, see ``claims.matched_distance_pairs``), and the per-batch HSIC for the bootstrap."""
    from ..claims import matched_distance_pairs
    m = np.asarray(res.cka, dtype=float)
    stages = np.asarray(res.stages)
    kinds = list(res.kinds)
    keep = np.array([k not in ("embed", "head") for k in kinds])
    m, st = m[np.ix_(keep, keep)], stages[keep]
    same = st[:, None] == st[None, :]
    off = ~np.eye(len(st), dtype=bool)
    within = m[same & off]
    across = m[~same]
    matched = []
    for d, (w, a) in matched_distance_pairs([str(s) for s in st]).items():
        matched.append({"distance": d, "within": float(np.mean([m[i, j] for i, j in w])),
                        "across": float(np.mean([m[i, j] for i, j in a])),
                        "n_within": len(w), "n_across": len(a)})
    hb = np.asarray(getattr(res, "hsic_batches", None) or [], dtype=float)
    out = {"names": [n for n, k in zip(res.names, keep, strict=True) if k], "stages": st.tolist(),
           "kinds": [k for k, kk in zip(kinds, keep, strict=True) if kk],
           "within_stage_mean": float(within.mean()) if within.size else float("nan"),
           "across_stage_mean": float(across.mean()) if across.size else float("nan"),
           "matched_distance": matched,
           "matched_within_minus_across": (float(np.mean([r["within"] - r["across"]
                                                          for r in matched]))
                                           if matched else float("nan"))}
    if hb.ndim == 3:
        out["hsic_batches"] = [[[float(f"{v:.7g}") for v in row] for row in h]
                               for h in hb[:, keep][:, :, keep].tolist()]
    return out
