"""The paper's claims checked against measured numbers: effect, 95% interval, n and a verdict.

``evaluate_claims(summary, seed=None, n_boot=None)`` reads the ``summary.json`` dictionary written
by ``landscape analyze`` and returns one :class:`Claim` per claim of "How Do Vision Transformers
Work?" (Park & Kim, 2022) that the analyses can test.

Evidence and effect
-------------------
Every claim is an *effect* with a predicted sign, measured on checkpoints (each model entry of
``summary["models"]`` carries ``arch`` and ``seed``; several seeds of one architecture are
independent replicates). Each checkpoint contributes resampling *units* (groups of images, Hessian
mini-batches, CKA mini-batches, random surface planes) and a statistic of the mean over its units.

* within-model claims (Fourier, variance, CKA, lesion): effect = mean over checkpoints of the
  checkpoint's value (e.g. the mean change of ΔlogA across its MSA blocks);
* between-family claims (flatness, negative eigenvalues, robustness): effect = mean over the
  challenger checkpoints (ViT, or ViT and hybrid) minus mean over the CNN checkpoints.

Interval: a two-level percentile bootstrap (``N_BOOT`` replicates, seeded; the seed is recorded
in every claim's ``extra["bootstrap"]``): in each replicate the seeds of every architecture are
resampled with replacement, then each drawn checkpoint's units with replacement. The 95% interval
is the 2.5 / 97.5 percentiles of the replicated effect. (Models see the same images, but units are
resampled independently per checkpoint, which can only widen the interval.)

Rules (``direction`` is the sign the paper predicts for the effect)
-------------------------------------------------------------------
``agrees``
    the interval excludes 0 on the paper's side AND the effect computed on each seed alone (the
    checkpoints with that seed) has the predicted sign, for every seed (for family comparisons
    whose families share no seed: for every pair of a challenger and a CNN checkpoint);
``disagrees``
    the interval excludes 0 on the other side;
``inconclusive``
    otherwise (the interval contains 0, or the seeds disagree in direction);
``not measured``
    no valid comparison (no block compared at an unchanged grid, no model of a family, no evidence
    field, fewer than ``MIN_PLANES`` surface planes).

Claims and their quantities
---------------------------
``flatness``               λmax per Hessian mini-batch; ViT/hybrid minus CNN, predicted < 0.
``flatness-surface``       loss increase over the centre, per random plane, averaged over the
                           reported radii; ViT/hybrid minus CNN, predicted < 0. Needs at least
                           ``MIN_PLANES`` planes per model (no single plane decides).
``negative-eigenvalues``   per batch ``max(-λmin, 0) / λmax`` (size of the negative curvature
                           relative to the top one); ViT minus CNN, predicted > 0. The share of
                           batches with λmin < 0 is reported beside it.
``fourier-msa|conv|mlp``   change of the high-frequency ΔlogA across each block of the kind,
                           block output minus the preceding output ON THE SAME GRID only;
                           predicted < 0 for MSA (low-pass), > 0 for Conv and MLP.
``variance-msa|conv|mlp``  log ratio of the feature-map variance across each block of the kind,
                           same grid only; predicted < 0 for MSA, > 0 for Conv and MLP.
``robustness``             accuracy drop (clean minus mean over the highest ``HIGH_BAND_FRACTION``
                           of the noise frequencies), per image group; ViT minus CNN, < 0.
``stage-cka``              multi-stage models: mean CKA of within-stage pairs minus across-stage
                           pairs AT EQUAL DEPTH DISTANCE (averaged over the distances that have
                           both), from per-batch HSIC; predicted > 0.
``stage-lesion``           accuracy loss from removing the last MSA of each stage minus that from
                           removing the other MSAs, per image group; predicted > 0.

Evidence format in the summary (per model label; a missing field makes the claim not measured)
---------------------------------------------------------------------------------------------
``models[i]``: ``{"label", "arch", "seed", "family", ...}`` (``arch`` falls back to the label,
``seed`` to None = its own seed).

``hessian[label]["per_batch"]``: ``{"lambda_max": [λmax of batch b], "lambda_min": [most negative
(smallest algebraic) eigenvalue of batch b]}``, one entry per mini-batch, equal lengths.

``surface[label]["planes"]``: ``[{"seed": int, "radii": [r_1, ...], "increase": [loss increase
over the centre at radius r_j, ...]}, ...]``, one entry per random plane (direction seeds), the
same radii in every plane of every model; ``increase[j]`` is the plane's statistic at ``r_j`` (the
producer documents it, e.g. the median over the grid points within ``r_j`` minus the centre).
A checkpoint's value is the mean over its planes of the mean over the radii; the bootstrap
resamples planes, and ``extra["effect_per_radius"]`` shows the effect at each radius alone.

``fourier[label]`` / ``variance[label]``: ``{"blocks": [{"name", "kind", "stage", "depth",
"grid", "groups": [mean over the images of group g]}, ...]}`` in depth order (the input first),
value ``dlogA_hf`` (ΔlogA at the read-out frequency ``freq``, labelled ``freq_label``) resp.
``variance``.

``robustness[label]``: ``{"freqs", "acc", "clean_acc", "groups": {"clean": [G], "acc": [[G] per
frequency]}}``.

``cka[label]``: ``{"names", "stages", "hsic_batches": [L x L HSIC matrix per batch]}``.

``lesion[label]``: ``{"baseline_acc", "baseline_groups": [G], "blocks": [{"name", "kind",
"stage", "depth", "acc", "groups": [G]}]}``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

AGREES = "agrees"
DISAGREES = "disagrees"
NOT_MEASURED = "not measured"
INCONCLUSIVE = "inconclusive"
VERDICTS = (AGREES, DISAGREES, INCONCLUSIVE, NOT_MEASURED)

N_BOOT = 2000            # bootstrap replicates
LEVEL = 0.95             # interval coverage
MIN_PLANES = 3           # surface planes a model needs before its sharpness counts
GROUPS = 25              # image groups kept per analysis for the bootstrap (see group_means)
#: Fraction of the measured frequencies (the highest ones) that form the "high-frequency" band.
HIGH_BAND_FRACTION = 0.25


@dataclass
class Claim:
    """One paper claim: effect with its 95% interval and n, and the verdict by the rules."""

    id: str
    claim: str
    quantity: str
    per_model: dict[str, Any]
    prediction: str
    verdict: str
    detail: str
    section: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    effect: Optional[float] = None
    interval: Optional[list[float]] = None
    n: int = 0                       # checkpoints that contribute
    n_detail: str = ""               # what the units are and how many
    per_seed: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (JSON-serializable)."""
        return asdict(self)


@dataclass
class Evidence:
    """One checkpoint's evidence for a claim: resampling units and a statistic of their mean.

    ``units`` is (U, F); ``stat`` maps a (B, F) array of unit means to (B,) model values.
    """

    label: str
    arch: str
    seed: Any
    side: str                     # "self" (within-model), "test" / "ref" (between families)
    units: np.ndarray
    stat: Callable[[np.ndarray], np.ndarray]
    comparisons: int = 1

    def value(self) -> float:
        """The statistic on all units."""
        return float(self.stat(self.units.mean(axis=0, keepdims=True))[0])


# ----------------------------------------------------------------------------- evidence helpers
def group_means(values: Any, groups: int = GROUPS) -> list:
    """Means of ``values`` (n,) or (n, F) over ``min(groups, n)`` consecutive, near-equal groups
    (sizes differ by at most one; 8 significant digits): the resampling units that the summary
    keeps instead of every image."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape[0] == 0:
        return []
    g = max(1, min(int(groups), v.shape[0]))
    means = np.stack([c.mean(axis=0) for c in np.array_split(v, g)])
    return [float(f"{x:.8g}") for x in means.ravel()] if means.ndim == 1 else \
        [[float(f"{x:.8g}") for x in row] for row in means.reshape(g, -1).tolist()]


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _section(summary: dict, name: str) -> dict:
    sec = summary.get(name)
    return sec if isinstance(sec, dict) else {}


def _models(summary: dict) -> dict[str, dict]:
    """label -> {"family", "arch", "seed"} from ``summary["models"]``."""
    out: dict[str, dict] = {}
    for m in summary.get("models") or []:
        if isinstance(m, dict) and m.get("label") is not None:
            lab = str(m["label"])
            out[lab] = {"family": str(m.get("family", "")).lower(),
                        "arch": str(m.get("arch") or lab), "seed": m.get("seed")}
    return out


def _fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _seed_key(seed: Any, label: str) -> str:
    return f"s{seed}" if seed is not None else label


# ----------------------------------------------------------------------------- bootstrap
def _boot_model(ev: Evidence, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """``n_boot`` bootstrap values of one checkpoint's statistic (units resampled)."""
    u = len(ev.units)
    counts = rng.multinomial(u, np.full(u, 1.0 / u), size=n_boot)  # (B, U)
    return np.asarray(ev.stat(counts @ ev.units / u), dtype=np.float64)


def _combine(sides: dict[str, np.ndarray]) -> np.ndarray:
    """Effect from (B, k) arrays per side: mean of "self", or mean "test" minus mean "ref"."""
    if "self" in sides:
        return sides["self"].mean(axis=1)
    return sides["test"].mean(axis=1) - sides["ref"].mean(axis=1)


def bootstrap_effect(evidence: Sequence[Evidence], seed: int = 0, n_boot: int = N_BOOT,
                     level: float = LEVEL) -> tuple[float, float, float]:
    """(effect, lower, upper): point effect and the percentile interval of the two-level
    bootstrap (seeds of each architecture, then units of each drawn checkpoint)."""
    rng = np.random.default_rng(seed)
    boots = np.stack([_boot_model(ev, rng, n_boot) for ev in evidence])  # (M, B)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, ev in enumerate(evidence):
        groups.setdefault((ev.side, ev.arch), []).append(i)
    parts: dict[str, list[np.ndarray]] = {}
    for (side, _arch), members in groups.items():
        m = np.asarray(members)
        pick = m[rng.integers(0, len(m), size=(n_boot, len(m)))]    # seeds resampled
        col = rng.integers(0, n_boot, size=(n_boot, len(m)))       # an independent unit draw
        parts.setdefault(side, []).append(boots[pick, col])
    reps = _combine({k: np.concatenate(v, axis=1) for k, v in parts.items()})
    point = _combine({k: np.array([[ev.value() for ev in evidence if ev.side == k]])
                      for k in parts})[0]
    a = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(reps, [a, 1.0 - a])
    return float(point), float(lo), float(hi)


def per_seed_effects(evidence: Sequence[Evidence]) -> dict[str, float]:
    """The effect computed on each seed's checkpoints alone (seeds lacking a side are left out;
    a checkpoint without a recorded seed counts as its own seed). When the two families share no
    seed, every (challenger, CNN) pair of checkpoints stands in for a seed."""
    by: dict[str, list[Evidence]] = {}
    for ev in evidence:
        by.setdefault(_seed_key(ev.seed, ev.label), []).append(ev)
    out = {}
    for k, evs in sorted(by.items()):
        sides = {ev.side for ev in evs}
        if "self" in sides or {"test", "ref"} <= sides:
            out[k] = float(_combine({s: np.array([[e.value() for e in evs if e.side == s]])
                                     for s in sides})[0])
    if not out:  # families without a common seed: every (challenger, CNN) pair instead
        for t in (e for e in evidence if e.side == "test"):
            for r in (e for e in evidence if e.side == "ref"):
                out[f"{t.label}-{r.label}"] = t.value() - r.value()
    return out


def verdict_rule(lo: float, hi: float, per_seed: dict[str, float], direction: int) -> str:
    """The fixed rule (module docstring) for a predicted sign ``direction`` (+1 or -1)."""
    if not (_finite(lo) and _finite(hi)):
        return INCONCLUSIVE
    lo_d, hi_d = sorted((direction * lo, direction * hi))
    if lo_d > 0 and per_seed and all(direction * v > 0 for v in per_seed.values()):
        return AGREES
    if hi_d < 0:
        return DISAGREES
    return INCONCLUSIVE


def judge(cid: str, text: str, quantity: str, prediction: str, section: str,
          evidence: Sequence[Evidence], direction: int, unit_name: str, why_missing: str,
          seed: int, n_boot: int, per_model_extra: Optional[dict[str, Any]] = None,
          extra: Optional[dict[str, Any]] = None) -> Claim:
    """A claim from its evidence: bootstrap, per-seed effects and the verdict."""
    per_model: dict[str, Any] = dict(per_model_extra or {})
    boot = {"seed": seed, "replicates": n_boot, "level": LEVEL}
    sides = {ev.side for ev in evidence}
    if not evidence or not ("self" in sides or {"test", "ref"} <= sides):
        for ev in evidence:
            per_model[ev.label] = ev.value()
        return Claim(cid, text, quantity, per_model, prediction, NOT_MEASURED, why_missing,
                     section, {**(extra or {}), "bootstrap": boot})
    for ev in evidence:
        per_model[ev.label] = ev.value()
    effect, lo, hi = bootstrap_effect(evidence, seed, n_boot)
    seeds = per_seed_effects(evidence)
    verdict = verdict_rule(lo, hi, seeds, direction)
    units = sorted({len(ev.units) for ev in evidence})
    comps = sum(ev.comparisons for ev in evidence)
    archs = sorted({ev.arch for ev in evidence})
    n_detail = (f"{len(evidence)} checkpoints ({', '.join(archs)}; {len(seeds)} seeds), "
                f"{'/'.join(map(str, units))} {unit_name} each, {comps} comparisons")
    wrong = [k for k, v in seeds.items() if direction * v <= 0]
    detail = (f"effect {_fmt(effect)} [{_fmt(lo)}, {_fmt(hi)}]; per seed: "
              + ", ".join(f"{k} {_fmt(v)}" for k, v in seeds.items())
              + (f"; against the prediction in {', '.join(wrong)}" if wrong else ""))
    per_arch: dict[str, float] = {}
    for arch in archs:  # the mean model value per architecture and side, for the reader
        for side in sorted(sides):
            v = [ev.value() for ev in evidence if ev.arch == arch and ev.side == side]
            if v:
                per_arch[arch] = float(np.mean(v))
    return Claim(cid, text, quantity, per_model, prediction, verdict, detail, section,
                 {**(extra or {}), "bootstrap": boot, "direction": direction,
                  "per_arch": per_arch},
                 effect, [lo, hi], len(evidence), n_detail, seeds)


def _between(values: dict[str, np.ndarray], models: dict[str, dict], challengers: Sequence[str],
             stat: Callable[[np.ndarray], np.ndarray]) -> tuple[list[Evidence], list[str]]:
    """Evidence for a challenger-vs-CNN claim from per-model unit arrays."""
    evs, missing = [], []
    for lab, units in values.items():
        info = models.get(lab, {"family": "", "arch": lab, "seed": None})
        fam = info["family"]
        side = "test" if fam in challengers else "ref" if fam == "cnn" else None
        if side is None or units is None or len(units) == 0:
            continue
        evs.append(Evidence(lab, info["arch"], info["seed"], side, units, stat))
    if not any(e.side == "ref" for e in evs):
        missing.append("no CNN model with this evidence")
    if not any(e.side == "test" for e in evs):
        missing.append(f"no {'/'.join(challengers)} model with this evidence")
    return evs, missing


def _why(summary: dict, section: str, field: str, evs: Sequence[Evidence],
         missing: Sequence[str], extra: Sequence[str] = ()) -> str:
    """Why a between-family claim is not measured: no section, no field, or a missing family."""
    if not _section(summary, section):
        return f"no {section} results"
    if not evs:
        return "; ".join([*extra, f"no model has {section}.{field}"])
    return "; ".join([*extra, *missing])


def _mean_col(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1)


def _units(values: Any) -> Optional[np.ndarray]:
    """A finite (U, F) array from a list (of lists), or None."""
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0 or not np.isfinite(a).all():
        return None
    return a


# ----------------------------------------------------------------------------- curvature claims
def top_eigenvalue(entry: dict) -> Optional[float]:
    """Largest of ``top_eigenvalues`` (None when absent or empty)."""
    vals = [float(v) for v in entry.get("top_eigenvalues") or [] if _finite(v)]
    return max(vals) if vals else None


def _per_batch(entry: Any, key: str) -> Optional[list]:
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
    radii: Optional[list] = None
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
    vals: dict[str, Optional[np.ndarray]] = {k: a[:, cols] for k, a in raw.items()} if cols else {}
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
    vals: dict[str, Optional[np.ndarray]] = {}
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


# ----------------------------------------------------------------------------- feature claims
def same_grid_pairs(blocks: Sequence[dict], kind: str) -> list[tuple[dict, dict]]:
    """(previous, block) pairs for every block of ``kind`` whose preceding output (in depth order,
    input included) has the same grid and both have per-group values; others are skipped."""
    seq = sorted((b for b in blocks if isinstance(b, dict)),
                 key=lambda b: float(b.get("depth", 0.0)) if _finite(b.get("depth")) else 0.0)
    out = []
    for prev, cur in zip(seq, seq[1:]):
        if cur.get("kind") != kind:
            continue
        if prev.get("grid") is None or prev.get("grid") != cur.get("grid"):
            continue
        if _units(prev.get("groups")) is None or _units(cur.get("groups")) is None:
            continue
        if len(prev["groups"]) != len(cur["groups"]):
            continue
        out.append((prev, cur))
    return out


def _log_ratio_stat(k: int) -> Callable[[np.ndarray], np.ndarray]:
    def stat(x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(x[:, :k] / x[:, k:]).mean(axis=1)
    return stat


def _kind_claim(summary: dict, section: str, kind: str, seed: int, n_boot: int) -> Claim:
    models = _models(summary)
    up = kind != "msa"
    name = {"msa": "MSA", "conv": "Conv", "mlp": "MLP"}[kind]
    evs, per_model = [], {}
    freq: dict[str, str] = {}
    for lab, e in _section(summary, section).items():
        if not isinstance(e, dict):
            continue
        pairs = same_grid_pairs(e.get("blocks") or [], kind)
        n_kind = sum(1 for b in e.get("blocks") or [] if isinstance(b, dict)
                     and b.get("kind") == kind)
        if not pairs:
            if n_kind:
                per_model[lab] = f"no {name} block at an unchanged grid ({n_kind} skipped)"
            continue
        info = models.get(lab, {"arch": lab, "seed": None})
        cur = np.array([c["groups"] for _, c in pairs], dtype=np.float64).T   # (G, k)
        prev = np.array([p["groups"] for p, _ in pairs], dtype=np.float64).T
        if section == "fourier":
            units, stat = cur - prev, _mean_col
            freq[lab] = ", ".join(sorted({str(c.get("freq_label", "?")) for _, c in pairs}))
        else:
            units, stat = np.concatenate([cur, prev], axis=1), _log_ratio_stat(len(pairs))
        evs.append(Evidence(lab, info["arch"], info["seed"], "self", units, stat, len(pairs)))
    if section == "fourier":
        text = {"msa": "MSAs are low-pass filters (reduce high-frequency amplitude)",
                "conv": "Convs are high-pass filters (raise high-frequency amplitude)",
                "mlp": "MLPs raise high-frequency amplitude"}[kind]
        quantity = (f"mean change of the high-frequency ΔlogA across {name} blocks "
                    "(same grid only)")
    else:
        text = {"msa": "MSAs reduce feature-map variance",
                "conv": "Convs increase feature-map variance",
                "mlp": "MLPs increase feature-map variance"}[kind]
        quantity = f"mean log ratio of the feature-map variance across {name} blocks (same grid)"
    pred = f"{name} blocks {'raise' if up else 'lower'} it (effect {'>' if up else '<'} 0)"
    why = (f"no {name} block compared at an unchanged grid" if _section(summary, section)
           else f"no {section} results")
    return judge(f"{section}-{kind}", text, quantity, pred, section, evs, 1 if up else -1,
                 "image groups", why, seed, n_boot, per_model,
                 extra={"read_out_frequency": freq} if freq else None)


def claim_fourier(summary: dict, seed: int = 0, n_boot: int = N_BOOT) -> list[Claim]:
    """MSAs lower, Convs and MLPs raise the high-frequency ΔlogA (one row per kind)."""
    return [_kind_claim(summary, "fourier", k, seed, n_boot) for k in ("msa", "conv", "mlp")]


def claim_variance(summary: dict, seed: int = 0, n_boot: int = N_BOOT) -> list[Claim]:
    """MSAs lower, Convs and MLPs raise the feature-map variance (one row per kind)."""
    return [_kind_claim(summary, "variance", k, seed, n_boot) for k in ("msa", "conv", "mlp")]


def high_frequency_drop(entry: dict) -> Optional[float]:
    """``clean_acc`` minus the mean accuracy over the highest-frequency quarter of the noise."""
    freqs, acc, clean = entry.get("freqs") or [], entry.get("acc") or [], entry.get("clean_acc")
    pairs = [(float(f), float(a)) for f, a in zip(freqs, acc) if _finite(f) and _finite(a)]
    if not pairs or not _finite(clean):
        return None
    pairs.sort()
    k = max(1, math.ceil(HIGH_BAND_FRACTION * len(pairs)))
    band = pairs[-k:]
    return float(clean) - sum(a for _, a in band) / len(band)


def _high_band(freqs: Sequence[float]) -> list[int]:
    order = np.argsort(np.asarray(freqs, dtype=float), kind="stable")
    k = max(1, math.ceil(HIGH_BAND_FRACTION * len(order)))
    return [int(i) for i in order[-k:]]


def claim_robustness(summary: dict, seed: int = 0, n_boot: int = N_BOOT) -> Claim:
    """ViTs are robust to high-frequency noise: accuracy drop, ViT below CNN."""
    models = _models(summary)
    vals: dict[str, Optional[np.ndarray]] = {}
    for lab, e in _section(summary, "robustness").items():
        g = e.get("groups") if isinstance(e, dict) else None
        if not isinstance(g, dict) or not e.get("freqs"):
            continue
        band = _high_band(e["freqs"])
        clean, acc = _units(g.get("clean")), _units(np.asarray(g.get("acc"), dtype=float).T
                                                     if g.get("acc") else None)
        if clean is None or acc is None or len(clean) != len(acc):
            continue
        vals[lab] = np.concatenate([clean, acc[:, band]], axis=1)
    evs, missing = _between(vals, models, ("vit",),
                            lambda x: x[:, 0] - x[:, 1:].mean(axis=1))
    return judge("robustness", "ViTs are robust to high-frequency noise; CNNs are vulnerable",
                 "accuracy drop at the highest "
                 f"{int(HIGH_BAND_FRACTION * 100)}% of noise frequencies: ViT minus CNN",
                 "ViT drop < CNN drop (effect < 0)", "robustness", evs, -1, "image groups",
                 _why(summary, "robustness", "groups", evs, missing), seed, n_boot)


def matched_distance_pairs(stages: Sequence[Any]) -> dict[int, tuple[list, list]]:
    """Per depth distance d (in blocks): (within-stage pairs, across-stage pairs) ``(i, i+d)``,
    only for the distances that have both kinds."""
    n = len(stages)
    out = {}
    for d in range(1, n):
        w = [(i, i + d) for i in range(n - d) if stages[i] == stages[i + d]]
        a = [(i, i + d) for i in range(n - d) if stages[i] != stages[i + d]]
        if w and a:
            out[d] = (w, a)
    return out


def cka_stage_stat(pairs: dict[int, tuple[list, list]], size: int
                   ) -> Callable[[np.ndarray], np.ndarray]:
    """Statistic on flattened mean HSIC (B, L*L): mean over distances of within minus across
    mean CKA."""
    def stat(x: np.ndarray) -> np.ndarray:
        h = x.reshape(-1, size, size)
        d = np.sqrt(np.clip(np.einsum("bii->bi", h), 1e-300, None))
        cka = h / (d[:, :, None] * d[:, None, :])
        diffs = [np.mean([cka[:, i, j] for i, j in w], axis=0)
                 - np.mean([cka[:, i, j] for i, j in a], axis=0) for w, a in pairs.values()]
        return np.mean(diffs, axis=0)
    return stat


def claim_stage_cka(summary: dict, seed: int = 0, n_boot: int = N_BOOT) -> Claim:
    """Multi-stage models form stages: within- vs across-stage CKA at equal depth distance."""
    models = _models(summary)
    evs, per_model = [], {}
    for lab, e in _section(summary, "cka").items():
        if not isinstance(e, dict):
            continue
        stages = list(e.get("stages") or [])
        if len(set(map(str, stages))) < 2:
            per_model[lab] = "single stage"
            continue
        pairs = matched_distance_pairs([str(s) for s in stages])
        hb = e.get("hsic_batches")
        if not pairs or not hb:
            per_model[lab] = "no matched-distance pairs" if not pairs else "no per-batch HSIC"
            continue
        h = np.asarray(hb, dtype=np.float64)
        if h.ndim != 3 or h.shape[1:] != (len(stages), len(stages)) or not np.isfinite(h).all():
            per_model[lab] = "malformed per-batch HSIC"
            continue
        info = models.get(lab, {"arch": lab, "seed": None})
        evs.append(Evidence(lab, info["arch"], info["seed"], "self", h.reshape(len(h), -1),
                            cka_stage_stat(pairs, len(stages)),
                            sum(len(w) + len(a) for w, a in pairs.values())))
    return judge("stage-cka", "Multi-stage models behave like a series of small models, one per "
                 "stage", "mean CKA within stages minus across stages, at equal depth distance",
                 "within > across (effect > 0)", "cka", evs, +1, "batches",
                 "no multi-stage model with per-batch CKA" if _section(summary, "cka")
                 else "no CKA results", seed, n_boot, per_model)


def claim_stage_lesion(summary: dict, seed: int = 0, n_boot: int = N_BOOT) -> Claim:
    """The MSA at the end of a stage matters most (lesion study)."""
    models = _models(summary)
    evs, per_model = [], {}
    for lab, e in _section(summary, "lesion").items():
        if not isinstance(e, dict):
            continue
        base = _units(e.get("baseline_groups"))
        msas = [b for b in e.get("blocks") or [] if isinstance(b, dict)
                and b.get("kind") == "msa" and _units(b.get("groups")) is not None]
        stages = {str(b.get("stage")) for b in msas}
        if base is None or len(stages) < 2:
            per_model[lab] = "MSAs in <2 stages" if base is not None else "no per-group accuracy"
            continue
        last: dict[str, dict] = {}
        for b in msas:
            s = str(b.get("stage"))
            if s not in last or float(b.get("depth", 0)) > float(last[s].get("depth", 0)):
                last[s] = b
        end = [b for b in msas if b is last[str(b.get("stage"))]]
        other = [b for b in msas if b is not last[str(b.get("stage"))]]
        if not other:
            per_model[lab] = "one MSA per stage"
            continue
        acc = np.array([b["groups"] for b in end + other], dtype=np.float64).T
        if len(acc) != len(base):
            continue
        k = len(end)
        info = models.get(lab, {"arch": lab, "seed": None})

        def stat(x: np.ndarray, k: int = k) -> np.ndarray:
            loss = x[:, :1] - x[:, 1:]
            return loss[:, :k].mean(axis=1) - loss[:, k:].mean(axis=1)
        evs.append(Evidence(lab, info["arch"], info["seed"], "self",
                            np.concatenate([base, acc], axis=1), stat, len(end) + len(other)))
    return judge("stage-lesion", "MSAs at the end of a stage matter most",
                 "accuracy loss removing the last MSA of each stage minus removing the other MSAs",
                 "end-of-stage loss > other loss (effect > 0)", "lesion", evs, +1,
                 "image groups", "no model with several MSAs in several stages"
                 if _section(summary, "lesion") else "no lesion results", seed, n_boot, per_model)


CLAIMS: tuple[Callable[..., Any], ...] = (
    claim_flatness, claim_flatness_surface, claim_negative_eigenvalues, claim_fourier,
    claim_variance, claim_robustness, claim_stage_cka, claim_stage_lesion)


def evaluate_claims(summary: dict, seed: Optional[int] = None,
                    n_boot: Optional[int] = None) -> list[Claim]:
    """One :class:`Claim` per claim row, in the paper's order. ``seed`` (default: the summary's
    ``settings.seed``, else 0) seeds every bootstrap and is recorded in each claim."""
    if seed is None:
        s = (summary.get("settings") or {}).get("seed") if isinstance(summary, dict) else None
        seed = int(s) if _finite(s) else 0
    n_boot = N_BOOT if n_boot is None else int(n_boot)
    out: list[Claim] = []
    for rule in CLAIMS:
        r = rule(summary, seed, n_boot)
        out.extend(r if isinstance(r, list) else [r])
    return out


def claims_to_json(claims: Iterable[Claim]) -> list[dict[str, Any]]:
    """The claims as plain dictionaries (for ``summary.json``)."""
    return [c.to_dict() for c in claims]
