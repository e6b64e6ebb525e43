"""Claims about training rather than one checkpoint: data size (the ViT's negative eigenvalues
shrink with more data), no overfitting (the ViT's weakness is optimization) and AlterNet vs the
CNN at matched training. Rows are "not measured", with the reason named, until the summary's
model entries carry ``data_fraction`` (default 1.0), ``train_nll``/``test_nll`` and
``epochs``/``recipe``."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..summary import Summary
from .curvature import negative_top_k_share
from .evidence import (
    LEVEL,
    N_BOOT,
    NOT_MEASURED,
    Claim,
    Evidence,
    ModelInfo,
    _finite,
    _fmt,
    _mean_col,
    all_models,
    family_name,
    main_models,
)
from .rules import ALPHA, decide, jonckheere_exact, min_p, slope_interval
from .verdict import judge

TREND_FAMILIES = ("vit", "cnn")


def _pct(f: float) -> str:
    return f"{100 * f:g}%"


# ----------------------------------------------------------------------------- data size
def _trend_values(summary: Summary, family: str, quantity: str
                  ) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """label -> (data fraction, checkpoint value) for ``family``: the main checkpoints (fraction
    1.0) and every subset-trained one; ``quantity`` "negative" (mean per-batch share of negative
    values among the top-k) or "lambda-max" (mean per-batch λmax)."""
    models = all_models(summary)
    main, _ = main_models(summary)
    out, dropped = {}, []
    for lab, e in summary.entries("hessian").items():
        m = models.get(lab)
        if m is None or m.family != family:
            continue
        if m.data_fraction == 1.0 and lab not in main:
            continue                      # a full-data checkpoint of another recipe
        if quantity == "negative":
            u, src = negative_top_k_share(e)
            v = float(u.mean()) if u is not None else None
        else:
            lm = [x for x in (e.per_batch.lambda_max if e.per_batch else None) or ()
                  if _finite(x)]
            v, src = (float(np.mean(lm)) if lm else None), "no hessian.per_batch.lambda_max"
        if v is None or (quantity == "lambda-max" and v <= 0):
            dropped.append(f"{lab}: {src if v is None else 'mean λmax <= 0'}")
            continue
        out[lab] = (m.data_fraction, v)
    return out, dropped


def judge_trend(cid: str, text: str, quantity: str, prediction: str, values:
                dict[str, tuple[float, float]], direction: int, log: bool, why: str,
                dropped: Sequence[str] = (), group: str = "", family: str = "") -> Claim:
    """A trend row: per checkpoint (data fraction f, value y); effect = OLS slope of y (ln y when
    ``log``) on log10 f with its t-interval over checkpoints (n-2 degrees of freedom); the exact
    two-sided Jonckheere-Terpstra test across the fraction groups; the verdict by
    :func:`~landscape.claims.rules.decide`; leave-one-checkpoint-out. With ``log`` the effect is
    shown as the factor per tenfold more data (exp of the slope; no effect = 1)."""
    base = dict(section="hessian", group=group or cid, family=family, dropped=list(dropped),
                scale="log ratio" if log else "difference")
    fracs = sorted({f for f, _ in values.values()})
    per_model = {lab: v for lab, (_, v) in values.items()}
    if len(fracs) < 2:
        return Claim(cid, text, quantity, per_model, prediction, NOT_MEASURED, why, **base)

    def assess(labels: Sequence[str]) -> tuple[float, tuple | None, dict, str]:
        x = [math.log10(values[k][0]) for k in labels]
        y = [math.log(values[k][1]) if log else values[k][1] for k in labels]
        slope, iv = slope_interval(x, y)
        groups = [[y[i] for i, k in enumerate(labels) if values[k][0] == f] for f in fracs]
        groups = [g for g in groups if g]
        if len(groups) < 2:
            return slope, iv, {"name": "Jonckheere-Terpstra", "p": 1.0, "share": 0.5,
                               "reachable": False, "note": "one data size left"}, NOT_MEASURED
        j, jmax, p = jonckheere_exact(groups)
        share = jmax if direction > 0 else 1.0 - jmax
        floor = min_p("jonckheere", [len(g) for g in groups])
        test = {"name": "Jonckheere-Terpstra", "statistic": j, "share": share, "p": p,
                "min_p": floor, "reachable": floor < ALPHA, "n": [len(g) for g in groups],
                "note": "" if floor < ALPHA else
                f"n={'+'.join(str(len(g)) for g in groups)} cannot reach p<{ALPHA:g}"}
        verdict = decide(iv[0], iv[1], 0.0, direction, share, p, floor < ALPHA) if iv \
            else decide(float("nan"), float("nan"), 0.0, direction, share, p, False)
        return slope, iv, test, verdict

    labels = sorted(values, key=lambda k: (values[k][0], k))
    slope, iv, test, verdict = assess(labels)
    loo = {k: assess([j for j in labels if j != k])[3] for k in labels}
    fragile = any(v != verdict for v in loo.values())
    show = (lambda t: math.exp(t)) if log else (lambda t: t)
    eff = show(slope)
    interval = [show(iv[0]), show(iv[1])] if iv else None
    n_at = {_pct(f): sum(1 for v in values.values() if v[0] == f) for f in fracs}
    per_fraction = {_pct(f): float(np.exp(np.mean([math.log(v) for g, v in values.values()
                                                    if g == f])) if log else
                                   np.mean([v for g, v in values.values() if g == f]))
                    for f in fracs}
    detail = (f"{'factor' if log else 'slope'} per tenfold more data {_fmt(eff)}"
              + (f" [{_fmt(interval[0])}, {_fmt(interval[1])}] (t-interval of the OLS slope "
                 f"over {len(labels)} checkpoints)" if interval else " (no interval: < 3 "
                                                                       "checkpoints)")
              + f"; Jonckheere-Terpstra across {', '.join(n_at)}: J/max "
                f"{test.get('share', 0.5):.2f} the paper's way, exact p {test['p']:.3g}")
    if test.get("note"):
        detail += f"; {test['note']}: at most inconclusive"
    detail += "; " + ("geometric " if log else "") + "mean per data size: " + ", ".join(
        f"{k}: {_fmt(v)}" for k, v in per_fraction.items())
    if fragile:
        detail += "; FRAGILE: dropping one checkpoint changes the verdict (" + ", ".join(
            f"{k} → {v}" for k, v in loo.items() if v != verdict) + ")"
    return Claim(cid, text, quantity, per_model, prediction, verdict, detail,
                 extra={"direction": direction, "null": 1.0 if log else 0.0,
                        "per_fraction": per_fraction, "n_per_fraction": n_at,
                        "t_interval": interval, "seed_level": iv is not None,
                        "level": LEVEL}, effect=eff, interval=interval, n=len(labels),
                 n_detail=f"{len(labels)} checkpoints at data sizes "
                          + ", ".join(f"{k} ({v})" for k, v in n_at.items()),
                 per_seed={k: show(math.log(v[1])) if log else v[1]
                           for k, v in values.items()},
                 test=dict(test), fragile=fragile, leave_one_out=loo, **base)


def claim_data_size(summary: Summary, seed: int = 0, n_boot: int = N_BOOT) -> list[Claim]:
    """Large datasets reduce the ViT's non-convexity (the paper's Fig. 4): per family (ViT, and
    the CNN as a reference) the negative-eigenvalue share and λmax against the training-data
    fraction, judged on the trend (:func:`judge_trend`)."""
    rows = []
    for quantity, log, what in (("negative", False, "share of negative values among the top-5 "
                                 "by magnitude per mini-batch (paper Fig. 4)"),
                                ("lambda-max", True, "mean λmax per mini-batch Hessian")):
        for fam in TREND_FAMILIES:
            values, dropped = _trend_values(summary, fam, quantity)
            name = family_name(fam)
            fr = sorted({f for f, _ in values.values()})
            why = ("no hessian results" if not summary.entries("hessian") else
                   f"no {name} checkpoint with hessian results" if not values else
                   f"no data-size variants: every {name} checkpoint with hessian results was "
                   f"trained on {_pct(fr[0])} of the data (model entries carry data_fraction; "
                   "1.0 when absent)")
            ref = "" if fam == "vit" else " (reference: the paper's claim is about ViTs)"
            if quantity == "negative":
                text = f"Large datasets reduce ViTs' negative Hessian eigenvalues: {name}{ref}"
                pred = f"{name} share falls with more data (slope < 0)"
            else:
                text = f"Large datasets flatten the loss: {name} λmax{ref}"
                pred = (f"{name} λmax falls with more data (factor < 1; a secondary view: the "
                        "paper states the trend for the negative eigenvalues)")
            rows.append(judge_trend(
                f"data-size-{quantity}-{fam}", text,
                f"{'ln ' if log else ''}{what} per checkpoint, OLS slope on log10(data "
                f"fraction){' shown as the factor per tenfold more data' if log else ''}",
                pred, values, -1, log, why, dropped, group=f"data-size-{quantity}",
                family=fam))
    return rows


# ----------------------------------------------------------------------------- overfitting
def _scalar(lab: str, m: ModelInfo, side: str, v: float) -> Evidence:
    return Evidence(lab, m.arch, m.seed, side, np.array([[float(v)]]), _mean_col)


def claim_overfitting(summary: Summary, seed: int = 0, n_boot: int = N_BOOT) -> list[Claim]:
    """ViTs do not overfit small data; their weakness is optimization: per data size, the ViT's
    training NLL against the CNN's (predicted higher) and the generalization gap test − train
    NLL (predicted not larger than the CNN's), from the model entries' ``train_nll``/``test_nll``
    (the main checkpoints at 100%, the subset-trained ones at their fraction)."""
    models = all_models(summary)
    main, _ = main_models(summary)
    use = {lab: m for lab, m in models.items() if m.family in TREND_FAMILIES
           and (m.data_fraction != 1.0 or lab in main)}
    have = {lab: m for lab, m in use.items() if m.entry is not None
            and _finite(m.entry.train_nll) and _finite(m.entry.test_nll)}
    fracs = sorted({m.data_fraction for m in have.values()}, reverse=True)
    rows = []
    for f in fracs or [None]:
        at = {lab: m for lab, m in have.items() if m.data_fraction == f}
        sfx = f"-d{100 * f:g}" if f is not None else ""
        where = f" at {_pct(f)} of the training data" if f is not None else ""
        why = ("model entries carry no train_nll and test_nll" if not have else
               f"no ViT and CNN checkpoints with train_nll and test_nll{where}")
        missing = [f"{lab}: no train_nll/test_nll" for lab in use if lab not in have]
        for cid, text, qty, pred, direction, value in (
                ("train-nll", "ViTs' weakness is optimization: higher training NLL",
                 "Δ training NLL (ViT − CNN)", "ViT training NLL > CNN's (effect > 0)", +1,
                 lambda e: float(e.train_nll)),
                ("overfit-gap", "ViTs do not overfit small data: generalization gap",
                 "Δ (test NLL − training NLL) (ViT − CNN)",
                 "ViT gap not larger than CNN's (effect < 0 agrees; > 0 disagrees)", -1,
                 lambda e: float(e.test_nll) - float(e.train_nll))):
            evs = [_scalar(lab, m, "test" if m.family == "vit" else "ref", value(m.entry))
                   for lab, m in at.items()]
            rows.append(judge(cid + sfx, f"{text}: ViT vs CNN (whole architecture){where}",
                              qty + where, pred, "models", evs, direction, "checkpoint values",
                              why, seed, n_boot, dropped=missing, group=cid, family="vit"))
    return rows


# ----------------------------------------------------------------------------- matched training
def claim_matched_accuracy(summary: Summary, seed: int = 0, n_boot: int = N_BOOT) -> list[Claim]:
    """AlterNet outperforms CNNs: hybrid vs CNN test accuracy, only between checkpoints trained
    by the same recipe (``recipe``, else ``epochs``) on all the data; not measured, with both
    recipes named, when they differ."""
    models = all_models(summary)
    full = {lab: m for lab, m in models.items() if m.data_fraction == 1.0
            and m.family in ("hybrid", "cnn") and m.entry is not None
            and _finite(m.entry.test_acc)}
    recipes: dict[str, dict[str, set]] = {"hybrid": {}, "cnn": {}}
    for m in full.values():
        recipes[m.family].setdefault(m.recipe or "", set()).add(m.arch)
    common = sorted(set(recipes["hybrid"]) & set(recipes["cnn"]) - {""})
    text = "AlterNet outperforms CNNs at matched training: MSA in place of Conv (same trunk)"
    qty = "Δ test accuracy (hybrid − CNN), same recipe"
    pred = "hybrid accuracy > CNN's (effect > 0)"
    if not common:
        def say(fam: str) -> str:
            r = recipes[fam]
            return (f"{family_name(fam)} " + "; ".join(
                f"{'/'.join(sorted(a))} {k or 'no recipe recorded'}" for k, a in sorted(r.items()))
                if r else f"no {family_name(fam)} checkpoint with test_acc")
        if not (recipes["hybrid"] and recipes["cnn"]):
            why = "; ".join(say(f) for f in ("hybrid", "cnn") if not recipes[f])
        elif all(not m.recipe for m in full.values()):
            why = "model entries record no recipe or epochs"
        else:
            why = f"recipes differ: {say('hybrid')}; {say('cnn')}"
        return [judge("accuracy-matched-hybrid", text, qty, pred, "models", [], +1,
                      "checkpoints", why, seed, n_boot, group="accuracy-matched",
                      family="hybrid")]
    rows = []
    for k in common:
        evs = [_scalar(lab, m, "test" if m.family == "hybrid" else "ref",
                       float(m.entry.test_acc))
               for lab, m in full.items() if m.entry is not None and m.recipe == k]
        sfx = "" if len(common) == 1 else f"-{k.replace('=', '').replace(', ', '-')}"
        rows.append(judge(f"accuracy-matched-hybrid{sfx}", text + f" ({k})", qty + f" ({k})",
                          pred, "models", evs, +1, "checkpoint values", "", seed, n_boot,
                          group="accuracy-matched", family="hybrid"))
    return rows
