"""Claim rules: effect, bootstrap interval, per-seed direction and verdict on synthetic evidence."""
import json

import landscape_models as models
import numpy as np
import pytest
import torch
import torch.nn as nn
from cases import Chain, DepthwiseCircular

from landscape import claims as C
from landscape.analyze.config import AnalyzeConfig
from landscape.analyze.summarize import summarize as _summarize
from landscape.claims import (
    AGREES,
    DISAGREES,
    INCONCLUSIVE,
    NOT_MEASURED,
    claims_to_json,
    evaluate_claims,
    group_means,
    matched_distance_pairs,
)
from landscape.claims.evidence import _mean_col
from landscape.claims.rules import decide
from landscape.features.fourier import fourier_analysis
from landscape.features.variance import variance_analysis
from landscape.summary import SUMMARY_VERSION

torch.set_num_threads(1)
BLUR, SHARPEN = [1 / 8, 6 / 8, 1 / 8], [-1 / 4, 6 / 4, -1 / 4]
N_BOOT = 400


def by_id(summary, **kw):
    versioned = {"schema_version": SUMMARY_VERSION, **summary}
    return {c.id: c for c in evaluate_claims(versioned, n_boot=kw.pop("n_boot", N_BOOT), **kw)}


def entry(label, arch, seed, family):
    return {"label": label, "arch": arch, "seed": seed, "family": family}


# ----------------------------------------------------------------------------- the rule
def test_verdict_rule_table():
    # decide(lo, hi, null, direction, share the paper's way, p, reachable, seed_level)
    assert decide(0.1, 0.3, 0, +1, 1.0, 0.008, True) == AGREES
    assert decide(-0.3, -0.1, 0, -1, 1.0, 0.008, True) == AGREES
    assert decide(-0.3, -0.1, 0, +1, 0.0, 0.008, True) == DISAGREES
    assert decide(-0.1, 0.3, 0, +1, 1.0, 0.008, True) == INCONCLUSIVE
    # the interval is on the paper's side but the exact test is not significant
    assert decide(0.1, 0.3, 0, +1, 0.84, 0.095, True) == INCONCLUSIVE
    # the test leans against the interval: never agrees
    assert decide(0.1, 0.3, 0, +1, 0.2, 0.03, True) == INCONCLUSIVE
    assert decide(float("nan"), 0.3, 0, +1, 1.0, 0.008, True) == INCONCLUSIVE
    # n cannot reach p < 0.05: the test must show the most it can (every checkpoint one way)
    assert decide(0.1, 0.3, 0, +1, 1.0, 0.0625, False) == AGREES
    assert decide(0.1, 0.3, 0, +1, 0.8, 0.375, False) == INCONCLUSIVE
    assert decide(-0.3, -0.1, 0, +1, 0.0, 0.0625, False) == DISAGREES
    assert decide(-0.1, 0.3, 0, +1, 1.0, 0.0625, False) == INCONCLUSIVE
    # no seed-level interval: never agrees or disagrees
    assert decide(0.1, 0.3, 0, +1, 1.0, 0.008, True, seed_level=False) == INCONCLUSIVE
    # a ratio: no effect is 1
    assert decide(0.03, 0.73, 1.0, -1, 1.0, 0.008, True) == AGREES
    assert decide(0.2, 4.8, 1.0, -1, 0.44, 0.84, True) == INCONCLUSIVE


def test_group_means():
    g = group_means(np.arange(10.0), 4)  # sizes 3, 3, 2, 2
    assert g == [1.0, 4.0, 6.5, 8.5]
    assert group_means([1.0, 2.0], 25) == [1.0, 2.0]
    assert group_means([], 5) == []
    assert group_means([1e-9, 3e-9], 1) == [2e-9]  # relative, not absolute, rounding
    assert group_means([[1.0, 2.0], [3.0, 4.0]], 1) == [[2.0, 3.0]]


# ----------------------------------------------------------------------------- Fourier / variance
def _feature_summary(specs, n_images=30, size=8):
    """specs: list of (label, seed, model, mapping). Runs the real analyses and _summarize."""
    cfg = AnalyzeConfig(groups=10)
    s = {"models": [], "fourier": {}, "variance": {}}
    for label, seed, model, mapping in specs:
        g = torch.Generator().manual_seed(100 + seed)
        x = torch.randn(n_images, 2, size, size, generator=g, dtype=torch.float64)
        bl = models.named_blocks(model, mapping)
        s["fourier"][label] = _summarize("fourier", fourier_analysis(model, x, block_list=bl,
                                                                     batch_size=16), cfg)
        s["variance"][label] = _summarize("variance", variance_analysis(model, x, block_list=bl,
                                                                        batch_size=16), cfg)
        s["models"].append(entry(label, "toy", seed, "hybrid"))
    return s


def _toy(first, second):
    return Chain(DepthwiseCircular(2, first), DepthwiseCircular(2, second))


def test_b_low_pass_msa_high_pass_conv_agrees_and_swapped_disagrees():
    mapping = {"layers.0": "msa", "layers.1": "conv"}
    # six checkpoints: the exact sign test reaches p < 0.05 (6/6: p = 2/64)
    s = _feature_summary([(f"toy_s{i}", i, _toy(BLUR, SHARPEN), mapping) for i in range(6)])
    c = by_id(s)
    for cid in ("fourier-msa-hybrid", "fourier-conv-hybrid"):
        assert c[cid].verdict == AGREES, (cid, c[cid].detail)
        assert c[cid].n == 6 and len(c[cid].per_seed) == 6
        assert c[cid].test["p"] == pytest.approx(2 / 64) and c[cid].test["statistic"] == "6/6"
        lo, hi = c[cid].interval
        assert lo <= c[cid].effect <= hi
    # blur at 3π/4 (the paper's last diagonal point on 8x8): log of h(3π/4)^2, h = 3/4 + cos/4
    w = 0.75 * np.pi
    msa = c["fourier-msa-hybrid"]
    assert msa.effect == pytest.approx(np.log((0.75 + 0.25 * np.cos(w)) ** 2), abs=1e-3)
    assert msa.extra["read_out_frequency"]["toy_s0"] == "3π/4"
    assert "3π/4" in msa.quantity and msa.group == "fourier-msa" and msa.family == "hybrid"
    assert c["fourier-mlp"].verdict == NOT_MEASURED
    swapped = _feature_summary([(f"toy_s{i}", i, _toy(SHARPEN, BLUR), mapping) for i in range(6)])
    c2 = by_id(swapped)
    assert c2["fourier-msa-hybrid"].verdict == DISAGREES
    assert c2["fourier-conv-hybrid"].verdict == DISAGREES
    # variance: the blur lowers it, the sharpening raises it
    assert c["variance-msa-hybrid"].verdict == AGREES
    assert c["variance-conv-hybrid"].verdict == AGREES
    assert c2["variance-msa-hybrid"].verdict == DISAGREES


def test_a_stride2_pool_labelled_conv_contributes_nothing():
    sharp_only = {"layers.0": "conv"}
    with_pool = {"layers.0": "conv", "layers.1": "conv"}
    s1 = _feature_summary([(f"m_s{i}", i, Chain(DepthwiseCircular(2, SHARPEN)), sharp_only)
                           for i in range(3)])
    s2 = _feature_summary([(f"m_s{i}", i, Chain(DepthwiseCircular(2, SHARPEN), nn.AvgPool2d(2)),
                            with_pool) for i in range(3)])
    a, b = by_id(s1)["fourier-conv-hybrid"], by_id(s2)["fourier-conv-hybrid"]
    assert b.effect == a.effect and b.interval == a.interval and b.verdict == a.verdict
    assert "3 comparisons" in a.n_detail and "3 comparisons" in b.n_detail  # one per model
    assert by_id(s2)["variance-conv-hybrid"].effect == by_id(s1)["variance-conv-hybrid"].effect
    assert any("layers.1" in d or "1 Conv block" in d for d in b.dropped)  # the pool is named
    # the pool alone: no Conv comparison at an unchanged grid -> not measured
    s3 = _feature_summary([(f"p_s{i}", i, Chain(nn.AvgPool2d(2)), sharp_only) for i in range(3)])
    c = by_id(s3)["fourier-conv-hybrid"]
    assert c.verdict == NOT_MEASURED and c.effect is None
    assert "unchanged grid" in c.per_model["p_s0"]


def test_mlp_blocks_have_their_own_row():
    mapping = {"layers.0": "msa", "layers.1": "mlp"}
    s = _feature_summary([(f"v_s{i}", i, _toy(BLUR, SHARPEN), mapping) for i in range(6)])
    c = by_id(s)
    assert c["fourier-mlp-hybrid"].verdict == AGREES and c["fourier-conv"].verdict == NOT_MEASURED
    assert c["variance-mlp-hybrid"].verdict == AGREES


def _blocks(changes_by_seed, groups=12, noise=0.01, seed=0, grid=7, freq=6 / 7, label="6π/7"):
    """A fourier section whose MSA block changes dlogA by the given mean per model."""
    rng = np.random.default_rng(seed)
    sec, ms = {}, []
    for i, ch in enumerate(changes_by_seed):
        base = rng.normal(0, 1, groups)
        at = {"grid": grid, "freq": freq, "freq_label": label}
        sec[f"vit_s{i}"] = {"blocks": [
            {"name": "input", "kind": "input", "depth": 0.0, "groups": base.tolist(), **at},
            {"name": "msa", "kind": "msa", "depth": 1.0,
             "groups": (base + ch + rng.normal(0, noise, groups)).tolist(), **at}]}
        ms.append(entry(f"vit_s{i}", "vit_tiny", i, "vit"))
    return {"models": ms, "fourier": sec}


def test_f_a_majority_of_checkpoints_against_the_prediction_is_not_agrees():
    s = _blocks([-1.0] * 6)
    c = by_id(s)["fourier-msa-vit"]
    assert c.verdict == AGREES and c.pairs == [6, 6] and c.test["statistic"] == "6/6"
    # three checkpoints all the paper's way: the sign test cannot reach p < 0.05 (at best 0.25),
    # the row says so and agrees on the interval with every checkpoint the paper's way
    c = by_id(_blocks([-1.0] * 3))["fourier-msa-vit"]
    assert c.verdict == AGREES and c.interval[1] < 0
    assert c.test["note"].startswith("n=3 cannot reach p<0.05") and "n=3 cannot" in c.detail
    c = by_id(_blocks([-1.0, -1.0, -1.0, -1.0, +0.05]))["fourier-msa-vit"]
    assert c.verdict != AGREES  # 4 of 5: not the most the test can show
    s = _blocks([-1.0, +0.1, +0.1, +0.1])
    c = by_id(s)["fourier-msa-vit"]
    assert c.pairs == [1, 4] and c.verdict != AGREES
    assert set(c.per_seed) == {f"vit_s{i}" for i in range(4)}


def test_c_three_wide_seeds_are_inconclusive_where_the_percentile_bootstrap_agrees():
    # per-seed effects -1.0, -0.1, -0.05 with tight image groups: the two-level percentile
    # bootstrap over three seeds spans only [-1.0, -0.05] (it never leaves the observed range);
    # the t-interval over the three seeds (t(2) = 4.30) crosses 0
    s = _blocks([-1.0, -0.1, -0.05], noise=0.001)
    c = by_id(s, n_boot=2000)["fourier-msa-vit"]
    b_lo, b_hi = c.extra["bootstrap_interval"]
    assert b_hi < 0  # what a plain percentile bootstrap would call "agrees"
    v = np.array(list(c.per_seed.values()))
    half = 4.302652729911275 * v.std(ddof=1) / np.sqrt(3)
    assert c.extra["t_interval"] == pytest.approx([v.mean() - half, v.mean() + half])
    assert c.interval == pytest.approx([v.mean() - half, v.mean() + half])  # t is the wider
    assert c.interval[1] > 0
    assert c.pairs == [3, 3]  # every checkpoint points the paper's way, still not enough
    assert c.verdict == INCONCLUSIVE


def test_b_a_4x4_map_contributes_nothing_to_a_fourier_verdict():
    seven = _blocks([-1.0, -1.0, -1.0])
    four = _blocks([+2.0, +2.0, +2.0], seed=1, grid=4, freq=0.5, label="π/2")
    s = {"models": seven["models"] + [entry(f"v4_s{i}", "vit_small", i + 10, "vit")
                                      for i in range(3)],
         "fourier": {**seven["fourier"],
                     **{k.replace("vit_", "v4_"): v for k, v in four["fourier"].items()}}}
    a, b = by_id(seven)["fourier-msa-vit"], by_id(s)["fourier-msa-vit"]
    assert (b.effect, b.interval, b.verdict, b.n) == (a.effect, a.interval, a.verdict, a.n)
    assert any("no high frequency on a 4×4 map" in d and "π/2" in d for d in b.dropped)
    assert "no high frequency" in b.detail and "6π/7" in b.quantity
    # the threshold is a setting: at 0.5π the 4x4 maps count and flip the effect's sign
    lowered = by_id(dict(s, settings={"fourier_min_freq": 0.5}))["fourier-msa-vit"]
    assert lowered.effect > 0 and lowered.n == 6
    # only 4x4 maps: not measured
    only = by_id({"models": four["models"], "fourier": four["fourier"]})["fourier-msa-vit"]
    assert only.verdict == NOT_MEASURED and only.effect is None


def test_bootstrap_is_seeded_and_recorded():
    s = _blocks([-0.2, 0.1, -0.3], noise=0.5)
    a, b = by_id(s, seed=3)["fourier-msa-vit"], by_id(s, seed=3)["fourier-msa-vit"]
    assert a.interval == b.interval and a.extra["bootstrap"]["seed"] == 3
    assert by_id(s, seed=4)["fourier-msa-vit"].extra["bootstrap_interval"] != \
        a.extra["bootstrap_interval"]
    s["settings"] = {"seed": 7}
    assert by_id(s)["fourier-msa-vit"].extra["bootstrap"] == {"seed": 7, "replicates": N_BOOT,
                                                             "level": 0.95}
    json.dumps(claims_to_json(evaluate_claims({"schema_version": SUMMARY_VERSION, **s},
                                              n_boot=50)))


# ----------------------------------------------------------------------------- CKA
def _cka_section(make, stages, seeds=3, batches=8, noise=0.002):
    rng = np.random.default_rng(0)
    sec, ms = {}, []
    n = len(stages)
    for s in range(seeds):
        hb = []
        for _ in range(batches):
            e = rng.normal(0, noise, (n, n))
            k = make() + (e + e.T) / 2
            np.fill_diagonal(k, 1.0)
            hb.append(k.tolist())
        sec[f"r_s{s}"] = {"names": [f"b{i}" for i in range(n)], "stages": stages,
                          "hsic_batches": hb}
        ms.append(entry(f"r_s{s}", "resnet", s, "cnn"))
    return {"models": ms, "cka": sec}


def test_c_cka_adjacency_only_is_not_agrees():
    stages = [0, 0, 1, 1, 2, 2]
    idx = np.arange(6)
    adjacency = lambda: 0.9 ** np.abs(idx[:, None] - idx[None, :])  # noqa: E731
    m = adjacency()
    same = np.equal.outer(stages, stages)
    off = ~np.eye(6, dtype=bool)
    assert m[same & off].mean() > m[~same].mean() + 0.1  # the old unmatched rule's artefact
    c = by_id(_cka_section(adjacency, stages, seeds=6))["stage-cka-resnet"]
    assert c.verdict != AGREES
    assert abs(c.effect) < 0.01
    # a real stage structure (a within-stage bonus at equal distance) agrees
    bonus = lambda: adjacency() + 0.05 * (same & off)  # noqa: E731
    assert by_id(_cka_section(bonus, stages, seeds=6))["stage-cka-resnet"].verdict == AGREES


def test_matched_distance_pairs():
    p = matched_distance_pairs([0, 0, 1, 1])
    assert p == {1: ([(0, 1), (2, 3)], [(1, 2)])}
    assert matched_distance_pairs([0, 0, 0]) == {}


# ----------------------------------------------------------------------------- curvature
MODELS = [entry(f"{a}_s{s}", a, s, f) for a, f in (("resnet", "cnn"), ("vit", "vit"),
                                                   ("alt", "hybrid")) for s in range(4)]


def _hess(lmax, lmin, rng):
    return {"per_batch": {"lambda_max": (lmax * (1 + 0.05 * rng.normal(size=16))).tolist(),
                          "lambda_min": (lmin * (1 + 0.05 * rng.normal(size=16))).tolist()}}


def test_flatness_and_lambda_ratio_from_per_batch_evidence():
    rng = np.random.default_rng(1)
    big = {"resnet": (50.0, -1.0), "vit": (5.0, -2.0), "alt": (10.0, -0.5)}
    s = {"models": MODELS, "hessian": {m["label"]: _hess(*big[m["arch"]], rng) for m in MODELS}}
    c = by_id(s)
    assert c["flatness-vit"].verdict == AGREES
    assert c["flatness-vit"].n == 8 and c["flatness-vit"].pairs == [16, 16]
    assert c["flatness-vit"].test["auc"] == 1.0
    assert c["flatness-vit"].test["p"] == pytest.approx(2 / 70)
    assert c["flatness-vit"].scale == "log ratio" and c["flatness-vit"].effect < 1
    assert c["flatness-hybrid"].verdict == AGREES
    assert c["flatness-vit"].extra["per_arch"]["resnet"] == pytest.approx(50.0, rel=0.05)
    assert c["lambda-ratio-vit"].verdict == AGREES  # 2/5 = 0.4 vs 1/50 = 0.02
    assert c["lambda-ratio-vit"].n == 8
    assert c["lambda-ratio-hybrid"].verdict == AGREES  # 0.05 vs 0.02
    # the seed numbers play no part: other seeds for the ViTs give the same row
    other = [dict(m, seed=m["seed"] + 10) if m["arch"] == "vit" else m for m in MODELS]
    c2 = by_id(dict(s, models=other))["lambda-ratio-vit"]
    assert c2.pairs == [16, 16] and c2.verdict == AGREES
    assert c2.interval == c["lambda-ratio-vit"].interval
    flip = {"resnet": (5.0, -2.0), "vit": (50.0, -1.0), "alt": (60.0, -0.5)}
    s["hessian"] = {m["label"]: _hess(*flip[m["arch"]], rng) for m in MODELS}
    c = by_id(s)
    assert c["flatness-vit"].verdict == DISAGREES and c["lambda-ratio-vit"].verdict == DISAGREES
    # the field missing -> not measured, and each model is named as dropped
    s["hessian"] = {m["label"]: {"top_eigenvalues": [1.0]} for m in MODELS}
    c = by_id(s)
    assert c["flatness-vit"].verdict == NOT_MEASURED
    assert c["flatness-vit"].detail == "no model has hessian.per_batch.lambda_max"
    assert "vit_s0: no hessian.per_batch.lambda_max" in c["flatness-vit"].dropped
    assert by_id({"models": MODELS})["flatness-vit"].detail == "no hessian results"
    assert c["lambda-ratio-vit"].verdict == NOT_MEASURED


def test_a_vit_flatter_hybrid_sharper_gives_two_rows_and_no_pooled_agrees():
    rng = np.random.default_rng(3)
    lam = {"resnet": (50.0, -1.0), "vit": (5.0, -2.0), "alt": (400.0, -1.0)}
    s = {"models": MODELS, "hessian": {m["label"]: _hess(*lam[m["arch"]], rng) for m in MODELS}}
    cs = evaluate_claims({"schema_version": SUMMARY_VERSION, **s}, n_boot=N_BOOT)
    rows = [c for c in cs if c.group == "flatness"]
    assert [c.id for c in rows] == ["flatness-vit", "flatness-hybrid"]
    assert [c.verdict for c in rows] == [AGREES, DISAGREES]
    assert [c.family for c in rows] == ["vit", "hybrid"]
    # no pooled row anywhere says "agrees" for both families together
    assert not any(c.id == "flatness" for c in cs)
    assert all(c.family or c.group in ("stage-cka", "stage-lesion") or c.effect is None
               for c in cs)
    # the same for the surface
    inc = {"resnet": 3.0, "vit": 1.0, "alt": 6.0}
    s = {"models": MODELS, "surface": {m["label"]: _planes(inc[m["arch"]], 4, rng)
                                       for m in MODELS}}
    c = by_id(s)
    assert c["flatness-surface-vit"].verdict == AGREES
    assert c["flatness-surface-hybrid"].verdict == DISAGREES


def test_d_negative_share_is_the_hand_count_of_negative_top5_values():
    top5 = {  # per batch: the top-5 eigenvalues by magnitude
        "vit": [[9, -8, 7, -6, 5], [9, 8, -7, 6, 5], [-9, 8, -7, -6, 5]],
        "resnet": [[9, 8, 7, 6, 5], [9, 8, 7, 6, -5], [9, 8, 7, 6, 5]]}
    hand = {"vit": (2 + 1 + 3) / 15, "resnet": 1 / 15}
    models = [entry(f"{a}_s{i}", a, i, {"vit": "vit", "resnet": "cnn"}[a])
              for a in top5 for i in range(3)]
    hess = {}
    for m in models:
        vals = np.array(top5[m["arch"]], dtype=float)
        hess[m["label"]] = {"per_batch": {"lambda_max": vals.max(1).tolist(),
                                          "negative_top_k": (vals < 0).sum(1).tolist(),
                                          "top_k": 5},
                            "spectrum": {"negative_share": float((vals < 0).mean())}}
    c = by_id({"models": models, "hessian": hess})["negative-eigenvalues-vit"]
    assert c.per_model["vit_s0"] == pytest.approx(hand["vit"])
    assert c.per_model["resnet_s2"] == pytest.approx(hand["resnet"])
    assert c.effect == pytest.approx(hand["vit"] - hand["resnet"])
    assert "top-5" in c.quantity and c.dropped == []
    # the same checkpoints without per-batch counts: the overall share, and a dropped note
    for h in hess.values():
        del h["per_batch"]["negative_top_k"]
    c2 = by_id({"models": models, "hessian": hess})["negative-eigenvalues-vit"]
    assert c2.effect == pytest.approx(c.effect)
    assert "vit_s0: overall share only (no per-batch counts)" in c2.dropped


def test_dropped_evidence_is_named_a_batch_with_nonpositive_lambda_max():
    rng = np.random.default_rng(4)
    big = {"resnet": (50.0, -1.0), "vit": (5.0, -2.0), "alt": (10.0, -0.5)}
    s = {"models": MODELS, "hessian": {m["label"]: _hess(*big[m["arch"]], rng) for m in MODELS}}
    s["hessian"]["vit_s1"]["per_batch"]["lambda_max"][3] = -1.0
    c = by_id(s)["lambda-ratio-vit"]
    assert "vit_s1: 1 of 16 batches with λmax <= 0 or no λmin" in c.dropped
    assert "dropped: vit_s1: 1 of 16 batches" in c.detail
    del s["hessian"]["alt_s2"]
    c = by_id(s)["flatness-hybrid"]
    assert "alt_s2: no hessian results" in c.dropped and c.n == 7
    assert "alt_s2" not in " ".join(by_id(s)["flatness-vit"].dropped)


def _planes(inc, n, rng):
    return {"planes": [{"seed": i, "radii": [0.25, 0.5, 1.0],
                        "increase": (np.array([0.1, 0.4, 1.6]) * inc
                                     * (1 + 0.1 * rng.normal(size=3))).tolist()}
                       for i in range(n)]}


def test_flatness_surface_needs_several_planes():
    rng = np.random.default_rng(2)
    inc = {"resnet": 3.0, "vit": 1.0, "alt": 1.5}
    s = {"models": MODELS, "surface": {m["label"]: _planes(inc[m["arch"]], 4, rng)
                                       for m in MODELS}}
    c = by_id(s)["flatness-surface-vit"]
    assert c.verdict == AGREES and len(c.extra["effect_per_radius"]) == 3
    assert "4 planes" in c.n_detail
    # a radius without grid points (None) in one plane is left out for every model
    s["surface"]["vit_s1"]["planes"][2]["increase"][0] = None
    c2 = by_id(s)["flatness-surface-vit"]
    assert c2.extra["radii"] == [0.5, 1.0] and len(c2.extra["effect_per_radius"]) == 2
    assert c2.verdict == AGREES and any("radii [0.25]" in d for d in c2.dropped)
    s["surface"] = {m["label"]: _planes(inc[m["arch"]], 1, rng) for m in MODELS}
    c = by_id(s)["flatness-surface-vit"]
    assert c.verdict == NOT_MEASURED and "1 plane(s) < 3" in c.detail
    assert by_id({"models": MODELS})["flatness-surface-vit"].verdict == NOT_MEASURED


# ----------------------------------------------------------------------------- robustness, lesion
def test_robustness_from_image_groups():
    def rob(clean, hf):
        g = 20
        return {"freqs": [0.0, 0.5, 1.0], "acc": [clean, clean, hf], "clean_acc": clean,
                "groups": {"clean": [clean] * g,
                           "acc": [[clean] * g, [clean] * g,
                                   (hf + 0.02 * np.sin(np.arange(g))).tolist()]}}
    s = {"models": MODELS, "robustness": {m["label"]: rob(0.9, {"resnet": 0.5, "vit": 0.85,
                                                               "alt": 0.2}[m["arch"]])
                                          for m in MODELS}}
    c = by_id(s)
    assert c["robustness-vit"].verdict == AGREES, c["robustness-vit"].detail
    assert c["robustness-vit"].effect == pytest.approx(0.05 - 0.4, abs=1e-3)
    assert c["robustness-hybrid"].verdict == DISAGREES  # the hybrid drops 0.7
    s["robustness"] = {k: rob(0.9, 0.3 if k.startswith("vit") else 0.8) for k in
                       s["robustness"]}
    assert by_id(s)["robustness-vit"].verdict == DISAGREES
    assert C.high_frequency_drop(rob(0.9, 0.5)) == pytest.approx(0.4)


def test_stage_lesion_from_image_groups():
    def les(end_loss, other_loss):
        g, base = 10, 0.9
        blocks = []
        for st in (0, 1):
            for j, loss in enumerate((other_loss, end_loss)):
                a = base - loss + 0.01 * np.cos(np.arange(g) + j + st)
                blocks.append({"name": f"s{st}.{j}", "kind": "msa", "stage": st,
                               "depth": st + 0.1 * j, "acc": float(a.mean()), "groups": a.tolist()})
        return {"baseline_acc": base, "baseline_groups": [base] * g, "blocks": blocks}
    ms = [entry(f"alt_s{s}", "alt", s, "hybrid") for s in range(6)]
    s = {"models": ms, "lesion": {m["label"]: les(0.2, 0.05) for m in ms}}
    c = by_id(s)["stage-lesion-alt"]
    assert c.verdict == AGREES and c.effect == pytest.approx(0.15, abs=0.01)
    s["lesion"] = {m["label"]: les(0.02, 0.2) for m in ms}
    assert by_id(s)["stage-lesion-alt"].verdict == DISAGREES


def test_empty_summary_is_not_measured_everywhere():
    cs = evaluate_claims({"schema_version": SUMMARY_VERSION, "models": []}, n_boot=10)
    assert {c.id for c in cs} == {
        *(f"{g}-{f}" for g in ("flatness", "flatness-surface", "negative-eigenvalues",
                               "lambda-ratio", "robustness") for f in ("vit", "hybrid")),
        "fourier-msa", "fourier-conv", "fourier-mlp", "variance-msa", "variance-conv",
        "variance-mlp", "stage-cka", "stage-lesion", "data-size-negative-vit",
        "data-size-negative-cnn", "data-size-lambda-max-vit", "data-size-lambda-max-cnn",
        "train-nll", "overfit-gap", "accuracy-matched-hybrid"}
    assert all(c.verdict == NOT_MEASURED and c.effect is None for c in cs)


# ----------------------------------------------------------------------------- exact references
def test_bootstrap_of_two_units_spans_them():
    # one checkpoint, two units a and b: the resampled mean is a, (a+b)/2 or b with probability
    # 1/4, 1/2, 1/4, so the 2.5% and 97.5% quantiles are exactly a and b
    ev = C.Evidence("m", "arch", 0, "self", np.array([[1.0], [3.0]]), _mean_col)
    effect, lo, hi = C.bootstrap_effect([ev], seed=0, n_boot=4000)
    assert (effect, lo, hi) == (2.0, 1.0, 3.0)
    same = C.Evidence("m", "arch", 0, "self", np.full((5, 1), 0.7), _mean_col)
    assert C.bootstrap_effect([same], n_boot=100) == pytest.approx((0.7, 0.7, 0.7))
    # between families: test minus ref, seeds of each architecture resampled
    t = [C.Evidence(f"v{i}", "vit", i, "test", np.full((3, 1), v), _mean_col)
         for i, v in enumerate((1.0, 2.0))]
    r = [C.Evidence("r0", "cnn", 0, "ref", np.full((3, 1), 5.0), _mean_col)]
    effect, lo, hi = C.bootstrap_effect(t + r, n_boot=4000)
    assert (effect, lo, hi) == (-3.5, -4.0, -3.0)


def test_cka_stage_stat_matches_the_cka_matrix():
    from landscape.features.similarity import cka_from_hsic
    rng = np.random.default_rng(5)
    hb = []
    for _ in range(3):
        a = rng.normal(size=(4, 6))
        hb.append(a @ a.T)  # a positive definite "HSIC" matrix per batch
    stages = ["0", "0", "1", "1"]
    pairs = matched_distance_pairs(stages)
    got = C.cka_stage_stat(pairs, 4)(np.mean(hb, axis=0).reshape(1, -1))[0]
    m = cka_from_hsic(np.mean(hb, axis=0))
    assert got == pytest.approx((m[0, 1] + m[2, 3]) / 2 - m[1, 2], rel=1e-12)


def test_fourier_min_freq_is_an_analyze_setting():
    from landscape.analyze.config import make_config
    assert make_config().fourier_min_freq is None  # the claims' FOURIER_MIN_FREQ, 3π/4
    assert C.FOURIER_MIN_FREQ == 0.75
    assert make_config(overrides={"fourier_min_freq": 0.5}).fourier_min_freq == 0.5


def test_a_model_missing_from_a_section_is_named():
    s = _blocks([-1.0, -1.0, -1.0])
    s["models"].append(entry("vit_s9", "vit_tiny", 9, "vit"))
    c = by_id(s)["fourier-msa-vit"]
    assert "vit_s9: no fourier results" in c.dropped and c.n == 3
    single = _cka_section(lambda: np.eye(3), [0, 0, 0], seeds=1)
    c = by_id(single)["stage-cka"]
    assert c.verdict == NOT_MEASURED and c.dropped == ["r_s0: single stage"]
