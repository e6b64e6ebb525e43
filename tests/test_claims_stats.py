"""The exact tests and the log-ratio, leave-one-out and per-block rules against hand computations
and scipy (issue 33 acceptance (a), (b), (c))."""
import math
from itertools import combinations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, ttest_ind

from landscape.claims import (
    AGREES,
    INCONCLUSIVE,
    NOT_MEASURED,
    evaluate_claims,
    jonckheere_exact,
    mann_whitney_exact,
    min_p,
    sign_test_exact,
    slope_interval,
    welch_interval,
)
from landscape.summary import SUMMARY_VERSION

N_BOOT = 300
# the per-checkpoint mean λmax: five skewed CNN values, five tight ViT values
CNN_LMAX = [580.0, 10706.0, 3475.0, 3467.0, 632.0]
VIT_LMAX = [369.0, 313.0, 427.0, 315.0, 286.0]


def claims(summary, **kw):
    return {c.id: c for c in evaluate_claims({"schema_version": SUMMARY_VERSION, **summary},
                                             n_boot=kw.pop("n_boot", N_BOOT), **kw)}


def entry(label, arch, seed, family, **more):
    return {"label": label, "arch": arch, "seed": seed, "family": family, **more}


# ----------------------------------------------------------------------------- exact tests
def test_mann_whitney_exact_equals_scipy_and_the_hand_count():
    # 5 vs 5 all separated: U = 0, two-sided p = 2 / C(10, 5) = 2/252
    u, auc, p = mann_whitney_exact(VIT_LMAX, CNN_LMAX)
    assert (u, auc) == (0.0, 0.0) and p == pytest.approx(2 / 252, rel=1e-15)
    assert p == pytest.approx(0.0079, abs=5e-5)
    ref = mannwhitneyu(VIT_LMAX, CNN_LMAX, method="exact")
    assert (ref.statistic, ref.pvalue) == pytest.approx((u, p), rel=1e-12)
    rng = np.random.default_rng(0)
    for _ in range(200):
        n1, n2 = rng.integers(1, 8, 2)
        x, y = rng.normal(size=n1), rng.normal(size=n2) + rng.normal()
        ref = mannwhitneyu(x, y, method="exact")
        got = mann_whitney_exact(x, y)
        assert got[0] == ref.statistic and got[2] == pytest.approx(ref.pvalue, rel=1e-12)
    # 21 of 25 pairs (the 21/25) -> p 0.095; 16/25 -> 0.55
    assert mann_whitney_exact([2, 4, 6, 8, 10], [1, 3, 5, 7, 9])[1] == pytest.approx(15 / 25)


def test_mann_whitney_with_ties_is_the_enumerated_permutation_test():
    x, y = [1.0, 2.0, 2.0], [2.0, 3.0, 3.0, 4.0]
    u, auc, p = mann_whitney_exact(x, y)
    assert u == 0.5 * 2 and auc == pytest.approx(1 / 12)   # two x=2 vs y=2 ties, halves
    pooled = x + y

    def u_of(idx):
        a = [pooled[i] for i in idx]
        b = [pooled[i] for i in range(len(pooled)) if i not in idx]
        return sum((s > t) + 0.5 * (s == t) for s in a for t in b)
    us = [u_of(c) for c in combinations(range(7), 3)]
    lo = sum(v <= u for v in us) / len(us)
    hi = sum(v >= u for v in us) / len(us)
    assert p == pytest.approx(min(1.0, 2 * min(lo, hi)), rel=1e-12)


def test_sign_test_and_what_n_can_reach():
    assert sign_test_exact([1, 2, 3, 4, 5]) == (5, 5, 0.0625)
    assert sign_test_exact([-1, -2, -3, -4, -5])[2] == 0.0625
    assert sign_test_exact([1, 1, 1, -1, 1])[2] == pytest.approx(12 / 32)
    assert sign_test_exact([0, 1, 1]) == (2, 2, 0.5)         # zeros are left out
    assert min_p("sign", [4]) == 0.125 and min_p("sign", [6]) == pytest.approx(2 / 64)
    assert min_p("mann-whitney", [5, 5]) == pytest.approx(2 / 252)
    assert min_p("mann-whitney", [3, 3]) == pytest.approx(0.1)
    assert min_p("jonckheere", [3, 3, 3]) == pytest.approx(2 / 1680)


def test_jonckheere_equals_a_hand_enumeration():
    groups = [[3.0, 2.5], [2.0, 2.6], [1.0]]
    j, share, p = jonckheere_exact(groups)
    # J counts pairs (lower group, higher group) ordered upwards: (3,2),(3,2.6)... by hand
    hand_j = sum(a < b for i in range(3) for k in range(i + 1, 3)
                 for a in groups[i] for b in groups[k])
    assert j == hand_j == 1 and share == pytest.approx(1 / 8)
    pooled = [v for g in groups for v in g]
    js = []
    for a in combinations(range(5), 2):
        rest = [i for i in range(5) if i not in a]
        for b in combinations(rest, 2):
            c = [i for i in rest if i not in b]
            gs = [[pooled[i] for i in a], [pooled[i] for i in b], [pooled[i] for i in c]]
            js.append(sum(x < y for i in range(3) for k in range(i + 1, 3)
                          for x in gs[i] for y in gs[k]))
    assert len(js) == 30
    hand_p = min(1.0, 2 * min(sum(v <= j for v in js), sum(v >= j for v in js)) / 30)
    assert p == pytest.approx(hand_p)


def test_welch_and_slope_intervals_match_scipy():
    a, b = np.log(VIT_LMAX), np.log(CNN_LMAX)
    ref = ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert welch_interval(a, b) == pytest.approx((ref.low, ref.high), rel=1e-10)
    from scipy.stats import linregress
    from scipy.stats import t as student_t
    x = np.log10([0.1, 0.1, 0.3, 0.3, 1.0, 1.0])
    y = np.array([0.5, 0.45, 0.4, 0.42, 0.3, 0.28])
    r = linregress(x, y)
    slope, (lo, hi) = slope_interval(x, y)
    h = student_t.ppf(0.975, 4) * r.stderr
    assert slope == pytest.approx(r.slope) and (lo, hi) == pytest.approx((r.slope - h,
                                                                          r.slope + h))


# ----------------------------------------------------------------------------- (a) log scale
def _lambda_summary(cnn=CNN_LMAX, vit=VIT_LMAX, batches=8):
    """Per checkpoint ``batches`` λmax values whose mean is the given value (spread ±10%)."""
    spread = np.linspace(-0.1, 0.1, batches)
    models, hess = [], {}
    for arch, fam, vals in (("resnet_tiny", "cnn", cnn), ("vit_tiny", "vit", vit)):
        for i, v in enumerate(vals):
            lab = f"{arch}_s{i}"
            models.append(entry(lab, arch, i, fam))
            hess[lab] = {"per_batch": {"lambda_max": (v * (1 + spread)).tolist(),
                                       "lambda_min": (-0.05 * v * (1 + spread)).tolist()}}
    return {"models": models, "hessian": hess}


def test_a_five_skewed_against_five_tight_on_the_log_scale():
    c = claims(_lambda_summary())["flatness-vit"]
    la, lb = np.log(VIT_LMAX), np.log(CNN_LMAX)
    assert c.scale == "log ratio" and c.extra["null"] == 1.0
    # the ratio of geometric means and its Welch interval on the logs (by hand, and scipy)
    assert c.effect == pytest.approx(math.exp(la.mean() - lb.mean()), rel=1e-9)
    ref = ttest_ind(la, lb, equal_var=False).confidence_interval(0.95)
    assert c.extra["t_interval"] == pytest.approx([math.exp(ref.low), math.exp(ref.high)],
                                                  rel=1e-9)
    assert c.interval[0] <= c.extra["t_interval"][0] and c.interval[1] >= c.extra["t_interval"][1]
    assert c.interval[1] < 1
    # the exact test: U = 0 (every ViT below every CNN), AUC 1 the paper's way, p = 2/252
    assert c.test["name"] == "Mann-Whitney" and c.test["statistic"] == 0.0
    assert c.test["auc"] == 1.0 and c.test["p"] == pytest.approx(2 / 252)
    assert c.test["p"] == pytest.approx(mannwhitneyu(VIT_LMAX, CNN_LMAX, method="exact").pvalue)
    assert c.verdict == AGREES
    # the raw difference beside: its Welch interval holds 0 (one wild CNN seed)
    raw = ttest_ind(VIT_LMAX, CNN_LMAX, equal_var=False).confidence_interval(0.95)
    assert c.raw["effect"] == pytest.approx(np.mean(VIT_LMAX) - np.mean(CNN_LMAX))
    assert c.raw["t_interval"] == pytest.approx([raw.low, raw.high])
    assert c.raw["interval"][0] < 0 < c.raw["interval"][1]
    assert "raw difference" in c.detail and "Mann-Whitney AUC 1.00" in c.detail
    # the hybrid rows are absent models: not measured, named
    assert claims(_lambda_summary())["flatness-hybrid"].verdict == NOT_MEASURED


# ----------------------------------------------------------------------------- (c) fragile
def test_c_leave_one_out_flags_a_fragile_row_and_not_a_robust_one():
    c = claims(_lambda_summary())["flatness-vit"]
    # the case: without CNN seed s1, s2 or s3, 1 enters the log-scale interval
    assert c.fragile and "FRAGILE" in c.detail
    assert {k for k, v in c.leave_one_out.items() if v != c.verdict} == {
        "resnet_tiny_s1", "resnet_tiny_s2", "resnet_tiny_s3"}
    assert c.leave_one_out["resnet_tiny_s1"] == INCONCLUSIVE
    assert set(c.leave_one_out) == {f"{a}_s{i}" for a in ("resnet_tiny", "vit_tiny")
                                    for i in range(5)}
    tight = claims(_lambda_summary(cnn=[1000, 1100, 1050, 980, 1020]))["flatness-vit"]
    assert tight.verdict == AGREES and not tight.fragile
    assert set(tight.leave_one_out.values()) == {AGREES}


def test_wording_names_what_a_row_compares():
    s = _lambda_summary()
    s["models"] += [entry(f"alt_s{i}", "alternet_tiny", i, "hybrid") for i in range(5)]
    s["hessian"].update({f"alt_s{i}": s["hessian"][f"vit_tiny_s{i}"] for i in range(5)})
    c = claims(s)
    assert "ViT vs CNN (whole architecture)" in c["flatness-vit"].claim
    assert "MSA in place of Conv (same trunk)" in c["flatness-hybrid"].claim
    assert "MSA in place of Conv (same trunk)" in c["lambda-ratio-hybrid"].claim


# ----------------------------------------------------------------------------- (b) blocks
def _mlp_fourier(block_effects, seeds=5, groups=10, noise=0.01):
    """A ViT fourier section: per block the ΔlogA change ``block_effects[name]`` (+ noise)."""
    rng = np.random.default_rng(7)
    sec, models = {}, []
    at = {"grid": 7, "freq": 6 / 7, "freq_label": "6π/7"}
    for s in range(seeds):
        lab = f"vit_tiny_s{s}"
        level = rng.normal(0, 1, groups)
        blocks = [{"name": "input", "kind": "input", "depth": 0.0, "groups": level.tolist(),
                   **at}]
        for d, (name, eff) in enumerate(block_effects.items(), start=1):
            level = level + eff + rng.normal(0, noise, groups)
            blocks.append({"name": name, "kind": "mlp", "depth": d / 10, "groups": level.tolist(),
                           **at})
        sec[lab] = {"blocks": blocks}
        models.append(entry(lab, "vit_tiny", s, "vit"))
    return {"models": models, "fourier": sec}


def test_b_a_row_carried_by_one_block_names_it():
    effects = {"blocks.0.mlp": 0.47, "blocks.1.mlp": 0.02, "blocks.2.mlp": -0.01,
               "blocks.3.mlp": 0.0, "blocks.4.mlp": -0.04, "blocks.5.mlp": -0.02}
    c = claims(_mlp_fourier(effects))["fourier-mlp-vit"]
    assert c.interval[0] > 0
    assert c.carried_by == ["blocks.0.mlp"] and "carried by blocks.0.mlp" in c.detail
    rows = {b["block"]: b for b in c.per_block}
    assert list(rows) == list(effects)                                # depth order
    assert rows["blocks.0.mlp"]["effect"] == pytest.approx(0.47, abs=0.02)
    assert rows["blocks.0.mlp"]["sign"] == "5/5"
    without = rows["blocks.0.mlp"]["without_interval"]
    assert without[0] <= 0       # without block 0 the interval no longer lies above 0
    # the row without block 0 is the mean of the other blocks' changes, by hand
    assert rows["blocks.0.mlp"]["without_effect"] == pytest.approx(
        np.mean([v for k, v in effects.items() if k != "blocks.0.mlp"]), abs=0.01)
    # five checkpoints: the sign test cannot reach p < 0.05, the row says so; 5 of 5 the same
    # way with the interval above 0 agrees
    assert c.verdict == AGREES and c.test["p"] == 0.0625
    assert "n=5 cannot reach p<0.05" in c.detail
    # every block raising it: no block carries the row
    even = claims(_mlp_fourier({f"blocks.{i}.mlp": 0.1 for i in range(6)}))["fourier-mlp-vit"]
    assert even.carried_by == [] and len(even.per_block) == 6
    # six checkpoints: the verdict flips without block 0, which is named too
    six = claims(_mlp_fourier(effects, seeds=6))["fourier-mlp-vit"]
    assert six.verdict == AGREES and six.carried_by == ["blocks.0.mlp"]
    assert {b["block"]: b for b in six.per_block}["blocks.0.mlp"]["without_verdict"] != AGREES


def test_per_block_rows_reach_the_summary_dictionary():
    from landscape.claims import claims_to_json
    cs = evaluate_claims({"schema_version": SUMMARY_VERSION,
                          **_mlp_fourier({"blocks.0.mlp": 0.3, "blocks.1.mlp": 0.0})}, n_boot=50)
    d = {c["id"]: c for c in claims_to_json(cs)}["fourier-mlp-vit"]
    assert [b["block"] for b in d["per_block"]] == ["blocks.0.mlp", "blocks.1.mlp"]
    assert set(d) >= {"test", "fragile", "leave_one_out", "per_block", "carried_by", "scale"}
