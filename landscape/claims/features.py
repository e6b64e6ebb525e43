"""Feature claims: Fourier and variance per block kind, robustness, stage CKA and lesion."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..summary import Summary
from ..summary_sections import Block, RobustnessEntry, parse_entry
from .evidence import (
    N_BOOT,
    Claim,
    Evidence,
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
    main_models,
    missing_models,
)
from .verdict import judge

#: Fraction of the measured frequencies (the highest ones) that form the "high-frequency" band.
HIGH_BAND_FRACTION = 0.25


#: Fourier comparisons count only where the read-out frequency is at least this (units of π):
#: the paper's "high frequency" is near π; on a 4×4 map the diagonal read-out is π/2, the middle
#: of the spectrum, so such a map says nothing about high frequencies.
FOURIER_MIN_FREQ = 0.75

KIND_NAMES = {"msa": "MSA", "conv": "Conv", "mlp": "MLP"}


# ----------------------------------------------------------------------------- feature claims
def _family(models: dict[str, ModelInfo], label: str) -> str:
    """The family of ``label`` ("" for a label without a model entry)."""
    m = models.get(label)
    return m.family if m is not None else ""


def _depth(b: Block) -> float:
    return float(b.depth) if _finite(b.depth) else 0.0


def same_grid_pairs(blocks: Sequence[Block], kind: str) -> list[tuple[Block, Block]]:
    """(previous, block) pairs for every block of ``kind`` whose preceding output (in depth order,
    input included) has the same grid and both have per-group values; others are skipped.
    Blocks are typed :class:`~landscape.summary_sections.Block` rows."""
    seq = sorted((b for b in blocks if b is not None), key=_depth)
    out = []
    for prev, cur in zip(seq, seq[1:], strict=False):
        if cur.kind != kind:
            continue
        if prev.grid is None or prev.grid != cur.grid:
            continue
        pg, cg = _units(prev.groups), _units(cur.groups)
        if pg is None or cg is None or len(pg) != len(cg):
            continue
        out.append((prev, cur))
    return out


def _log_ratio_stat(k: int) -> Callable[[np.ndarray], np.ndarray]:
    def stat(x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(x[:, :k] / x[:, k:]).mean(axis=1)
    return stat


def pi_label(x: float) -> str:
    """``x`` (units of π) as a fraction of π when one with a denominator <= 32 fits."""
    from fractions import Fraction
    f = Fraction(x).limit_denominator(32)
    if abs(float(f) - x) > 1e-9:
        return f"{x:.3g}π"
    if f == 0:
        return "0"
    num = "" if f.numerator == 1 else str(f.numerator)
    return f"{num}π" if f.denominator == 1 else f"{num}π/{f.denominator}"


def _pi(freq: float | None, label: str | None) -> str:
    if label:
        return label
    return "?" if freq is None else pi_label(freq)


#: One checkpoint's compared blocks: (name, depth, block output per group, previous output).
BlockPairs = list[tuple[str, float, list, list]]


def _kind_evidence(summary: Summary, section: str, kind: str, min_freq: float
                   ) -> dict[str, tuple[BlockPairs | None, Any, list[str], set[str]]]:
    """label -> (compared blocks or None, per-model note, dropped notes, frequencies read), for
    the main rows' checkpoints (:func:`~landscape.claims.evidence.main_models`)."""
    models, aside = main_models(summary)
    name = KIND_NAMES[kind]
    out = {}
    for lab, e in summary.entries(section).items():
        if lab in aside:
            continue
        blocks = e.blocks or ()
        n_kind = sum(1 for b in blocks if b.kind == kind)
        if not n_kind:
            continue
        pairs = same_grid_pairs(blocks, kind)
        dropped = []
        if len(pairs) < n_kind:
            dropped.append(f"{lab}: {n_kind - len(pairs)} {name} block(s) not at an unchanged "
                           "grid or without per-group values")
        freqs: set[str] = set()
        n_same = len(pairs)
        if section == "fourier":
            keep = []
            for p, c in pairs:
                if c.freq is None or c.freq < min_freq - 1e-9:
                    g = f"{c.grid}×{c.grid}" if c.grid else "this"
                    dropped.append(f"{lab}: {c.name}: no high frequency on a {g} map (read at "
                                   f"{_pi(c.freq, c.freq_label)} < {_pi(min_freq, None)})")
                else:
                    keep.append((p, c))
                    freqs.add(_pi(c.freq, c.freq_label))
            pairs = keep
        if not pairs:
            note = (f"no {name} block read at >= {_pi(min_freq, None)}" if n_same
                    else f"no {name} block at an unchanged grid") + f" ({n_kind} skipped)"
            out[lab] = (None, note, dropped, freqs)
            continue
        out[lab] = ([(str(c.name), _depth(c), list(c.groups), list(p.groups)) for p, c in pairs],
                    None, dropped, freqs)
    return out


def _block_evidence(lab: str, info: ModelInfo, section: str, pairs: BlockPairs,
                    exclude: frozenset = frozenset()) -> Evidence | None:
    """A checkpoint's evidence from its compared blocks less ``exclude`` (None when none is left):
    Fourier, the mean over blocks of the ΔlogA change; variance, the mean log ratio."""
    keep = [p for p in pairs if p[0] not in exclude]
    if not keep:
        return None
    cur = np.array([c for _, _, c, _ in keep], dtype=np.float64).T   # (G, k)
    prev = np.array([p for _, _, _, p in keep], dtype=np.float64).T
    if section == "fourier":
        units, stat = cur - prev, _mean_col
    else:
        units, stat = np.concatenate([cur, prev], axis=1), _log_ratio_stat(len(keep))
    return Evidence(lab, info.arch, info.seed, "self", units, stat, len(keep))


_FAMILY_ORDER = ("cnn", "vit", "hybrid")


def _kind_claims(summary: Summary, section: str, kind: str, seed: int, n_boot: int,
                 min_freq: float = FOURIER_MIN_FREQ) -> list[Claim]:
    """One row per family that has blocks of ``kind`` (one not-measured row when none has), with
    the per-block breakdown and the blocks that carry it."""
    models = _models(summary)
    up = kind != "msa"
    name = KIND_NAMES[kind]
    found = _kind_evidence(summary, section, kind, min_freq)
    fams = sorted({_family(models, lab) for lab in found},
                  key=lambda f: (_FAMILY_ORDER.index(f) if f in _FAMILY_ORDER else 9, f))
    pi = _pi(min_freq, None)
    if section == "fourier":
        text = {"msa": "MSAs are low-pass filters (reduce high-frequency amplitude)",
                "conv": "Convs are high-pass filters (raise high-frequency amplitude)",
                "mlp": "MLPs raise high-frequency amplitude"}[kind]
    else:
        text = {"msa": "MSAs reduce feature-map variance",
                "conv": "Convs increase feature-map variance",
                "mlp": "MLPs increase feature-map variance"}[kind]
    pred = f"{name} blocks {'raise' if up else 'lower'} it (effect {'>' if up else '<'} 0)"
    rows = []
    for fam in fams or [""]:
        labs = [lab for lab in found if _family(models, lab) == fam]
        info = {lab: models.get(lab) or ModelInfo.unknown(lab) for lab in labs}
        have = [lab for lab in labs if found[lab][0] is not None]

        def build(exclude: frozenset, have: list = have, info: dict = info) -> list[Evidence]:
            evs = [_block_evidence(lab, info[lab], section, found[lab][0] or [], exclude)
                   for lab in have]
            return [e for e in evs if e is not None]
        evs = build(frozenset())
        depth: dict[str, float] = {}
        for lab in have:
            for bname, d, _, _ in found[lab][0] or []:
                depth.setdefault(bname, d)
        blocks = sorted(depth.items(), key=lambda t: (t[1], t[0]))
        per_model = {lab: found[lab][1] for lab in labs if found[lab][1] is not None}
        dropped = [d for lab in labs for d in found[lab][2]] + (
            missing_models(summary, section, models, (fam,)) if fam else [])
        freqs = sorted({f for lab in labs for f in found[lab][3]})
        fname = family_name(fam) if fam else ""
        where = f" in {fname} models" if fam else ""
        if section == "fourier":
            quantity = (f"ΔlogA at ≥ {pi} (read at {', '.join(freqs) or '—'}): change across "
                        f"each {name} block (same grid), mean over blocks{where}")
            why = (f"no {name} block compared at an unchanged grid with a read-out frequency "
                   f">= {pi}")
        else:
            quantity = (f"log ratio of the feature-map variance across each {name} block "
                        f"(same grid), mean over blocks{where}")
            why = f"no {name} block compared at an unchanged grid"
        if not _section(summary, section):
            why = f"no {section} results"
        cid = f"{section}-{kind}" + (f"-{fam}" if fam else "")
        extra = {"read_out_frequency": {lab: ", ".join(sorted(found[lab][3]))
                                        for lab in labs if found[lab][3]}} \
            if section == "fourier" else {}
        if section == "fourier":
            extra["min_freq"] = min_freq
        rows.append(judge(cid, text + (f": {fname}" if fam else ""), quantity, pred, section,
                          evs, 1 if up else -1, "image groups", why, seed, n_boot, per_model,
                          extra=extra, dropped=dropped, group=f"{section}-{kind}", family=fam,
                          blocks=blocks, build=build))
    return rows


def claim_fourier(summary: Summary, seed: int = 0, n_boot: int = N_BOOT,
                  min_freq: float = FOURIER_MIN_FREQ) -> list[Claim]:
    """MSAs lower, Convs and MLPs raise the high-frequency ΔlogA: one row per kind and family,
    counting only comparisons read at >= ``min_freq`` π."""
    return [c for k in ("msa", "conv", "mlp")
            for c in _kind_claims(summary, "fourier", k, seed, n_boot, min_freq)]


def claim_variance(summary: Summary, seed: int = 0, n_boot: int = N_BOOT) -> list[Claim]:
    """MSAs lower, Convs and MLPs raise the feature-map variance: one row per kind and family."""
    return [c for k in ("msa", "conv", "mlp")
            for c in _kind_claims(summary, "variance", k, seed, n_boot)]


def high_frequency_drop(entry: RobustnessEntry | Mapping[str, Any]) -> float | None:
    """``clean_acc`` minus the mean accuracy over the highest-frequency quarter of the noise (a
    JSON object is parsed first; None when a number is missing)."""
    entry = parse_entry("robustness", entry)
    freqs, acc, clean = entry.freqs or (), entry.acc or (), entry.clean_acc
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


def claim_robustness(summary: Summary, seed: int = 0, n_boot: int = N_BOOT) -> list[Claim]:
    """ViTs are robust to high-frequency noise: accuracy drop, one row per family vs the CNN."""
    models = _models(summary)
    vals: dict[str, np.ndarray | None] = {}
    dropped = []
    for lab, e in summary.entries("robustness").items():
        g = e.groups
        if g is None or not e.freqs or not g.acc:
            dropped.append(f"{lab}: no per-group robustness accuracies")
            continue
        band = _high_band([np.nan if f is None else f for f in e.freqs])
        clean = _units(list(g.clean or ()))
        try:
            acc = _units(np.asarray([[np.nan if v is None else v for v in row] for row in g.acc],
                                    dtype=float).T)
        except (TypeError, ValueError):
            acc = None
        if clean is None or acc is None or len(clean) != len(acc):
            dropped.append(f"{lab}: malformed per-group robustness accuracies")
            continue
        vals[lab] = np.concatenate([clean, acc[:, band]], axis=1)
    freqs = sorted({f for e in summary.entries("robustness").values() for f in e.freqs or ()
                    if f is not None})
    band_f = [freqs[i] for i in _high_band(freqs)] if freqs else []

    def row(fam: str) -> Claim:
        evs, missing = _between(vals, models, fam, lambda x: x[:, 0] - x[:, 1:].mean(axis=1))
        name = family_name(fam)
        keep = {lab for lab, m in models.items() if m.family in (fam, "cnn")}
        return judge(f"robustness-{fam}",
                     "ViTs are robust to high-frequency noise, CNNs vulnerable: "
                     f"{comparison_name(fam)}",
                     "Δ accuracy drop (clean minus noisy accuracy, as a fraction) at the "
                     f"highest {int(HIGH_BAND_FRACTION * 100)}% of noise frequencies "
                     f"({', '.join(pi_label(f) for f in band_f) or '—'}; {name} − CNN)",
                     f"{name} drop < CNN drop (effect < 0)", "robustness", evs, -1,
                     "image groups", _why(summary, "robustness", "groups", evs, missing), seed,
                     n_boot, dropped=[d for d in dropped if d.split(":", 1)[0] in keep]
                     + missing_models(summary, "robustness", models, (fam, "cnn")),
                     group="robustness", family=fam)
    return [row(f) for f in challenger_families(models)]


