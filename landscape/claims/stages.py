"""Stage claims, one row per architecture (never pooled): within- vs across-stage CKA at equal
depth distance, and the lesion of the MSA at the end of each stage."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..summary import Summary
from ..summary_sections import Block
from .evidence import (
    N_BOOT,
    Claim,
    Evidence,
    ModelInfo,
    _section,
    _units,
    family_name,
    main_models,
)
from .verdict import judge


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


def _per_arch(summary: Summary, section: str, cid: str, evs: list[Evidence],
              notes: dict[str, str], make: Callable[..., Claim]) -> list[Claim]:
    """One row per architecture with evidence (``<cid>-<arch>``); one not-measured row ``cid``
    when none has. ``notes``: label -> why the model gave none."""
    models, _ = main_models(summary)
    archs = sorted({ev.arch for ev in evs})
    if not archs:
        return [make(cid, [], "", "")]
    rows = []
    for arch in archs:
        mine = [ev for ev in evs if ev.arch == arch]
        fam = next((models[ev.label].family for ev in mine if ev.label in models), "")
        rows.append(make(f"{cid}-{arch}", mine, arch, fam))
    return rows


def claim_stage_cka(summary: Summary, seed: int = 0, n_boot: int = N_BOOT) -> list[Claim]:
    """Multi-stage models form stages: within- vs across-stage CKA at equal depth distance, one
    row per multi-stage architecture (a ResNet and an AlterNet are never pooled)."""
    models, aside = main_models(summary)
    evs, per_model = [], {}
    for lab, e in _section(summary, "cka").items():
        if lab in aside:
            continue
        stages = list(e.stages or ())
        if len(set(map(str, stages))) < 2:
            per_model[lab] = "single stage"
            continue
        pairs = matched_distance_pairs([str(s) for s in stages])
        hb = e.hsic_batches
        if not pairs or not hb:
            per_model[lab] = "no matched-distance pairs" if not pairs else "no per-batch HSIC"
            continue
        try:
            h = np.asarray(hb, dtype=np.float64)
        except (TypeError, ValueError):  # ragged or not numbers
            h = np.zeros(0)
        if h.ndim != 3 or h.shape[1:] != (len(stages), len(stages)) or not np.isfinite(h).all():
            per_model[lab] = "malformed per-batch HSIC"
            continue
        info = models.get(lab) or ModelInfo.unknown(lab)
        evs.append(Evidence(lab, info.arch, info.seed, "self", h.reshape(len(h), -1),
                            cka_stage_stat(pairs, len(stages)),
                            sum(len(w) + len(a) for w, a in pairs.values())))

    def make(cid: str, mine: list[Evidence], arch: str, fam: str) -> Claim:
        where = f": {arch} ({family_name(fam)})" if arch else ""
        return judge(cid, "Multi-stage models behave like a series of small models, one per "
                     "stage" + where, "mean CKA within stages minus across stages, at equal "
                     "depth distance" + (f", {arch} checkpoints" if arch else ""),
                     "within > across (effect > 0)", "cka", mine, +1, "batches",
                     "no multi-stage model with per-batch CKA" if _section(summary, "cka")
                     else "no CKA results", seed, n_boot,
                     {k: v for k, v in per_model.items() if not arch},
                     dropped=[f"{k}: {v}" for k, v in per_model.items() if not arch
                              or _arch(models, k) == arch],
                     group="stage-cka", family=fam)
    return _per_arch(summary, "cka", "stage-cka", evs, per_model, make)


def _arch(models: dict[str, ModelInfo], label: str) -> str:
    """The architecture of ``label`` (the label itself without a model entry)."""
    m = models.get(label)
    return m.arch if m is not None else label


def _lesion_reason(msas: list[Block]) -> str:
    """Why a model's MSAs give no end-of-stage comparison (the rule needs MSAs in at least two
    stages and a stage with more than one MSA)."""
    stages: dict[str, int] = {}
    for b in msas:
        stages[str(b.stage)] = stages.get(str(b.stage), 0) + 1
    if not msas:
        return "no MSA block"
    if len(stages) < 2:
        return (f"all {len(msas)} MSAs in one stage (the rule needs MSAs in at least two "
                "stages)")
    return (f"one MSA per stage in {len(stages)} stages (the rule needs a stage with more than "
            "one MSA to compare its last MSA with the others)")


def claim_stage_lesion(summary: Summary, seed: int = 0, n_boot: int = N_BOOT) -> list[Claim]:
    """The MSA at the end of a stage matters most (lesion study), one row per architecture."""
    models, aside = main_models(summary)
    evs, per_model = [], {}
    for lab, e in _section(summary, "lesion").items():
        if lab in aside:
            continue
        base = _units(e.baseline_groups)
        msas = [b for b in e.blocks or () if b.kind == "msa" and _units(b.groups) is not None]
        if base is None:
            per_model[lab] = "no per-group accuracy"
            continue
        last: dict[str, Block] = {}
        for b in msas:
            s = str(b.stage)
            if s not in last or (b.depth or 0.0) > (last[s].depth or 0.0):
                last[s] = b
        end = [b for b in msas if b is last[str(b.stage)]]
        other = [b for b in msas if b is not last[str(b.stage)]]
        if len(last) < 2 or not other:
            per_model[lab] = _lesion_reason(msas)
            continue
        acc = np.array([b.groups for b in end + other], dtype=np.float64).T
        if len(acc) != len(base):
            per_model[lab] = "block and baseline group counts differ"
            continue
        k = len(end)
        info = models.get(lab) or ModelInfo.unknown(lab)

        def stat(x: np.ndarray, k: int = k) -> np.ndarray:
            loss = x[:, :1] - x[:, 1:]
            return loss[:, :k].mean(axis=1) - loss[:, k:].mean(axis=1)
        evs.append(Evidence(lab, info.arch, info.seed, "self",
                            np.concatenate([base, acc], axis=1), stat, len(end) + len(other)))
    reasons = sorted({f"{_arch(models, k)}: {v}" for k, v in per_model.items()})

    def make(cid: str, mine: list[Evidence], arch: str, fam: str) -> Claim:
        where = f": {arch} ({family_name(fam)})" if arch else ""
        why = ("no model with MSAs in at least two stages and a stage with several MSAs ("
               + "; ".join(reasons) + ")" if reasons else "no model with MSAs in lesion results"
               ) if _section(summary, "lesion") else "no lesion results"
        return judge(cid, "MSAs at the end of a stage matter most" + where,
                     "accuracy loss removing the last MSA of each stage minus removing the "
                     "other MSAs", "end-of-stage loss > other loss (effect > 0)", "lesion", mine,
                     +1, "image groups", why, seed, n_boot,
                     {k: v for k, v in per_model.items() if not arch},
                     dropped=[f"{k}: {v}" for k, v in per_model.items() if not arch
                              or _arch(models, k) == arch],
                     group="stage-lesion", family=fam)
    return _per_arch(summary, "lesion", "stage-lesion", evs, per_model, make)
