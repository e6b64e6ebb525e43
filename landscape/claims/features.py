"""Feature claims: Fourier and variance per block kind, robustness, stage CKA and lesion."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .evidence import (
    N_BOOT,
    Claim,
    Evidence,
    _between,
    _finite,
    _mean_col,
    _models,
    _section,
    _units,
    _why,
    judge,
)

#: Fraction of the measured frequencies (the highest ones) that form the "high-frequency" band.
HIGH_BAND_FRACTION = 0.25


# ----------------------------------------------------------------------------- feature claims
def same_grid_pairs(blocks: Sequence[dict], kind: str) -> list[tuple[dict, dict]]:
    """(previous, block) pairs for every block of ``kind`` whose preceding output (in depth order,
    input included) has the same grid and both have per-group values; others are skipped."""
    seq = sorted((b for b in blocks if isinstance(b, dict)),
                 key=lambda b: float(b.get("depth", 0.0)) if _finite(b.get("depth")) else 0.0)
    out = []
    for prev, cur in zip(seq, seq[1:], strict=False):
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


def high_frequency_drop(entry: dict) -> float | None:
    """``clean_acc`` minus the mean accuracy over the highest-frequency quarter of the noise."""
    freqs, acc, clean = entry.get("freqs") or [], entry.get("acc") or [], entry.get("clean_acc")
    pairs = [(float(f), float(a)) for f, a in zip(freqs, acc, strict=False)
             if _finite(f) and _finite(a)]
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
    vals: dict[str, np.ndarray | None] = {}
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
