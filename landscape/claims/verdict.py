"""A claim row from its evidence: interval, exact test, verdict, leave-one-checkpoint-out and the
per-block breakdown (the rules: :mod:`landscape.claims`; the tests: :mod:`.rules`)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .evidence import (
    LEVEL,
    NOT_MEASURED,
    Claim,
    Evidence,
    _fmt,
    bootstrap_effect,
    checkpoint_values,
    pair_count,
    seed_interval,
)
from .rules import ALPHA, decide, mann_whitney_exact, min_p, sign_test_exact

#: Builds a row's evidence without the named blocks (for the per-block breakdown).
BlockBuilder = Callable[[frozenset], list[Evidence]]


@dataclass
class Assessment:
    """Effect, the hull interval (its two parts), the exact test and the verdict of one set of
    checkpoints (on the scale the evidence's statistic is on)."""

    effect: float
    lo: float
    hi: float
    boot: tuple[float, float]
    tint: tuple[float, float] | None
    test: dict[str, Any]
    verdict: str
    pairs: tuple[int, int]


def exact_test(evidence: Sequence[Evidence], direction: int) -> dict[str, Any]:
    """The row's exact test on the checkpoint values: within a model the two-sided sign test,
    between families the two-sided Mann-Whitney test (challenger vs CNN). ``share`` is oriented
    to the paper (AUC of the paper's ordering, or the share of checkpoints on its side)."""
    vals = checkpoint_values(evidence)
    if "self" in vals:
        v = list(vals["self"].values())
        k, n, p = sign_test_exact(v)
        share = (k / n if direction > 0 else (n - k) / n) if n else 0.5
        floor = min_p("sign", [n])
        return {"name": "sign test", "statistic": f"{k if direction > 0 else n - k}/{n}",
                "share": share, "p": p, "min_p": floor, "reachable": floor < ALPHA,
                "n": [n], "note": "" if floor < ALPHA else f"n={n} cannot reach p<{ALPHA:g}"}
    a, b = list(vals.get("test", {}).values()), list(vals.get("ref", {}).values())
    u, auc, p = mann_whitney_exact(a, b)
    share = auc if direction > 0 else 1.0 - auc
    floor = min_p("mann-whitney", [len(a), len(b)])
    return {"name": "Mann-Whitney", "statistic": u, "share": share, "auc": share, "p": p,
            "min_p": floor, "reachable": floor < ALPHA, "n": [len(a), len(b)],
            "note": "" if floor < ALPHA else f"n={len(a)}+{len(b)} cannot reach p<{ALPHA:g}"}


def assess(evidence: Sequence[Evidence], direction: int, seed: int, n_boot: int
           ) -> Assessment | None:
    """The verdict of ``evidence`` (None without a comparison: no side or one side missing)."""
    sides = {ev.side for ev in evidence}
    if not evidence or not ("self" in sides or {"test", "ref"} <= sides):
        return None
    effect, b_lo, b_hi = bootstrap_effect(evidence, seed, n_boot)
    tint = seed_interval(evidence)
    lo, hi = (min(b_lo, tint[0]), max(b_hi, tint[1])) if tint else (b_lo, b_hi)
    test = exact_test(evidence, direction)
    verdict = decide(lo, hi, 0.0, direction, test["share"], test["p"], test["reachable"],
                     tint is not None)
    return Assessment(effect, lo, hi, (b_lo, b_hi), tint, test, verdict,
                      pair_count(evidence, direction))


def leave_one_out(evidence: Sequence[Evidence], direction: int, seed: int, n_boot: int
                  ) -> dict[str, str]:
    """label -> the verdict without that checkpoint (NOT_MEASURED when a side is left empty)."""
    out = {}
    for i, ev in enumerate(evidence):
        a = assess([e for j, e in enumerate(evidence) if j != i], direction, seed, n_boot)
        out[ev.label] = a.verdict if a else NOT_MEASURED
    return out


def block_breakdown(blocks: Sequence[tuple[str, float]], build: BlockBuilder, full: Assessment,
                    direction: int, seed: int, n_boot: int, log: bool = False
                    ) -> tuple[list[dict[str, Any]], list[str]]:
    """Per block (name, depth): the effect of that block alone (mean over checkpoints of its
    value, the hull interval, the sign count) and the row without it; the blocks that carry the
    row: dropping one changes the verdict, or leaves an interval that excluded no effect on one
    side no longer excluding it on that side (it holds 0, or lies on the other side)."""
    rows, carried = [], []
    names = [n for n, _ in blocks]
    side = 1 if full.lo > 0 else -1 if full.hi < 0 else 0   # the side the interval excludes 0 on
    for name, depth in blocks:
        alone = assess(build(frozenset(n for n in names if n != name)), direction, seed, n_boot)
        without = assess(build(frozenset({name})), direction, seed, n_boot)
        row: dict[str, Any] = {"block": name, "depth": depth}
        if alone:
            row.update(effect=_show(alone.effect, log), interval=_show_iv(alone, log),
                       sign=alone.test["statistic"], verdict=alone.verdict)
        if without:
            row.update(without_effect=_show(without.effect, log),
                       without_interval=_show_iv(without, log), without_verdict=without.verdict)
            if without.verdict != full.verdict or (side and not (
                    side * without.lo > 0 and side * without.hi > 0)):
                carried.append(name)
        rows.append(row)
    return rows, carried


def _show(x: float, log: bool) -> float:
    return math.exp(x) if log else x


def _show_iv(a: Assessment, log: bool) -> list[float]:
    return [_show(a.lo, log), _show(a.hi, log)]


def judge(cid: str, text: str, quantity: str, prediction: str, section: str,
          evidence: Sequence[Evidence], direction: int, unit_name: str, why_missing: str,
          seed: int, n_boot: int, per_model_extra: dict[str, Any] | None = None,
          extra: dict[str, Any] | None = None, dropped: Sequence[str] = (),
          group: str = "", family: str = "", raw: Sequence[Evidence] | None = None,
          blocks: Sequence[tuple[str, float]] = (), build: BlockBuilder | None = None
          ) -> Claim:
    """A claim row: effect, the hull of the t-interval over checkpoints and the two-level
    bootstrap, the exact test, the verdict, the leave-one-checkpoint-out verdicts and (with
    ``blocks`` and ``build``) the per-block breakdown. With ``raw`` the evidence is on the log
    scale (its statistic is the log of a positive quantity): effect and interval are shown as the
    ratio of geometric means, and ``raw`` (the same checkpoints, raw statistic) gives the raw
    difference shown beside."""
    per_model: dict[str, Any] = dict(per_model_extra or {})
    log = raw is not None
    boot = {"seed": seed, "replicates": n_boot, "level": LEVEL}
    base = dict(section=section, group=group or cid, family=family, dropped=list(dropped),
                scale="log ratio" if log else "difference")
    for ev in evidence:
        per_model[ev.label] = _show(ev.value(), log)
    full = assess(evidence, direction, seed, n_boot)
    if full is None:
        return Claim(cid, text, quantity, per_model, prediction, NOT_MEASURED, why_missing,
                     extra={**(extra or {}), "bootstrap": boot}, **base)
    sides = {ev.side for ev in evidence}
    loo = leave_one_out(evidence, direction, seed, n_boot)
    fragile = any(v != full.verdict for v in loo.values())
    favour, total = full.pairs
    units = sorted({len(ev.units) for ev in evidence})
    comps = sum(ev.comparisons for ev in evidence)
    archs = sorted({ev.arch for ev in evidence})
    t = full.test
    n_detail = (f"{len(evidence)} checkpoints ({', '.join(archs)}), "
                f"{'/'.join(map(str, units))} {unit_name} each, {comps} comparisons")
    eff, (lo, hi) = _show(full.effect, log), _show_iv(full, log)
    null = 1.0 if log else 0.0
    how = ("hull of the t-interval over checkpoints and the bootstrap" if full.tint else
           "ONE checkpoint on a side: no seed-level interval, the interval resamples "
           f"{unit_name} only and the verdict is at most inconclusive")
    scale = "ratio of geometric means " if log else ""
    detail = (f"{scale}{_fmt(eff)} [{_fmt(lo)}, {_fmt(hi)}] ({how}"
              + (f"; t [{_fmt(_show(full.tint[0], log))}, {_fmt(_show(full.tint[1], log))}]"
                 if full.tint else "")
              + f"; bootstrap [{_fmt(_show(full.boot[0], log))}, {_fmt(_show(full.boot[1], log))}]"
              f"); {_test_text(t)}")
    if t["note"]:
        detail += (f"; {t['note']} (at best {t['min_p']:.3g}): judged on the interval and "
                   "every checkpoint pointing the same way")
    raw_info = None
    if log:
        r = assess(list(raw or ()), direction, seed, n_boot)
        if r is not None:
            raw_info = {"effect": r.effect, "interval": [r.lo, r.hi],
                        "t_interval": list(r.tint) if r.tint else None}
            detail += f"; raw difference {_fmt(r.effect)} [{_fmt(r.lo)}, {_fmt(r.hi)}]"
    if fragile:
        flips = [f"{k} → {v}" for k, v in loo.items() if v != full.verdict]
        detail += f"; FRAGILE: dropping one checkpoint changes the verdict ({', '.join(flips)})"
    per_block, carried = [], []
    if blocks and build is not None and "self" in sides:
        per_block, carried = block_breakdown(blocks, build, full, direction, seed, n_boot, log)
        if carried:
            detail += "; carried by " + ", ".join(
                f"{b['block']} (without it {_fmt(b.get('without_effect'))} "
                f"[{', '.join(_fmt(x) for x in b.get('without_interval') or [])}])"
                for b in per_block if b["block"] in carried)
    if dropped:
        detail += f"; dropped: {'; '.join(dropped)}"
    per_arch: dict[str, float] = {}
    for arch in archs:  # the mean model value per architecture and side, for the reader
        for side in sorted(sides):
            v = [ev.value() for ev in evidence if ev.arch == arch and ev.side == side]
            if v:
                per_arch[arch] = _show(float(np.mean(v)), log)
    return Claim(cid, text, quantity, per_model, prediction, full.verdict, detail,
                 extra={**(extra or {}), "bootstrap": boot, "direction": direction,
                        "per_arch": per_arch, "null": null,
                        "t_interval": [_show(x, log) for x in full.tint] if full.tint else None,
                        "bootstrap_interval": [_show(x, log) for x in full.boot],
                        "seed_level": full.tint is not None},
                 effect=eff, interval=[lo, hi], n=len(evidence), n_detail=n_detail,
                 per_seed={ev.label: _show(ev.value(), log) for ev in evidence},
                 pairs=[favour, total], test={k: v for k, v in t.items() if k != "share"},
                 fragile=fragile, leave_one_out=loo, per_block=per_block, carried_by=carried,
                 raw=raw_info, **base)


def _test_text(t: dict[str, Any]) -> str:
    if t["name"] == "sign test":
        return f"sign test {t['statistic']} the paper's way, exact p {t['p']:.3g}"
    return f"Mann-Whitney AUC {t['auc']:.2f} (the paper's way), exact p {t['p']:.3g}"


def log_evidence(evidence: Sequence[Evidence]) -> list[Evidence] | None:
    """The same evidence with the log of its statistic (a positive scale quantity compared as a
    log ratio), or None when a checkpoint's value is not > 0 (the row stays a difference)."""
    if any(not ev.value() > 0 for ev in evidence):
        return None

    def wrap(stat: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        def logged(x: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.log(stat(x))
        return logged
    return [Evidence(ev.label, ev.arch, ev.seed, ev.side, ev.units, wrap(ev.stat),
                     ev.comparisons) for ev in evidence]


def judge_scale(cid: str, evidence: Sequence[Evidence], log: bool, **kw: Any) -> Any:
    """:func:`landscape.claims.verdict.judge` on the log scale when ``log`` and every checkpoint
    value is > 0 (the raw difference beside), else on the difference scale with a note."""
    logged = log_evidence(evidence) if log and evidence else None
    if logged is None:
        if log and evidence:
            kw["dropped"] = [*kw.get("dropped", ()),
                             "a checkpoint value <= 0: compared as a difference, not a log ratio"]
        return judge(cid, evidence=evidence, **kw)
    return judge(cid, evidence=logged, raw=evidence, **kw)
