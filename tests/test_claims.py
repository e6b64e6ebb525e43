"""Each claim rule on hand-made summaries: the verdict must flip when the numbers flip."""
import copy
import json

import pytest

from landscape import claims as C
from landscape.claims import (AGREES, DISAGREES, INCONCLUSIVE, NOT_MEASURED, block_changes,
                              evaluate_claims, high_frequency_drop)

MODELS = [
    {"label": "cnn", "family": "cnn"},
    {"label": "vit", "family": "vit"},
    {"label": "alt", "family": "hybrid"},
]


def by_id(summary):
    return {c.id: c for c in evaluate_claims(summary)}


def hess(top, share=0.0):
    return {"top_eigenvalues": top, "trace": 1.0, "trace_se": 0.1,
            "spectrum": {"negative_share": share, "mean_positive": 1.0, "n_values": 100,
                         "batch_size": 8, "n_batches": 10}}


# ----------------------------------------------------------------------------- 1 flatness
def test_flatness_agrees_and_flips():
    s = {"models": MODELS, "hessian": {"cnn": hess([50.0, 10.0]), "vit": hess([5.0, 1.0]),
                                       "alt": hess([20.0])}}
    c = by_id(s)["flatness"]
    assert c.verdict == AGREES
    assert "λmax 50" in c.per_model["cnn"]
    s["hessian"]["cnn"] = hess([2.0])
    assert by_id(s)["flatness"].verdict == DISAGREES
    # mixed: ViT flatter, hybrid sharper than the CNN
    s["hessian"]["cnn"] = hess([10.0])
    assert by_id(s)["flatness"].verdict == INCONCLUSIVE


def test_flatness_uses_surface_and_ties():
    s = {"models": MODELS,
         "surface": {"cnn": {"mean_loss_increase": 2.0}, "vit": {"mean_loss_increase": 0.5}}}
    assert by_id(s)["flatness"].verdict == AGREES
    s["surface"]["vit"]["mean_loss_increase"] = 3.0
    assert by_id(s)["flatness"].verdict == DISAGREES
    s["surface"]["vit"]["mean_loss_increase"] = 2.0 * (1 - C.TOL["relative"] / 2)  # a tie
    assert by_id(s)["flatness"].verdict == INCONCLUSIVE
    # Hessian agrees but the surface disagrees -> inconclusive
    s["surface"]["vit"]["mean_loss_increase"] = 3.0
    s["hessian"] = {"cnn": hess([50.0]), "vit": hess([5.0])}
    assert by_id(s)["flatness"].verdict == INCONCLUSIVE


def test_flatness_needs_two_families():
    s = {"models": MODELS[:1], "hessian": {"cnn": hess([50.0])}}
    c = by_id(s)["flatness"]
    assert c.verdict == NOT_MEASURED
    assert "no vit/hybrid" in c.detail
    assert by_id({"models": MODELS})["flatness"].verdict == NOT_MEASURED


# ----------------------------------------------------------------------------- 2 negatives
def test_negative_eigenvalues_flip():
    s = {"models": MODELS, "hessian": {"cnn": hess([1.0], 0.02), "vit": hess([1.0], 0.30)}}
    assert by_id(s)["negative-eigenvalues"].verdict == AGREES
    s["hessian"]["vit"] = hess([1.0], 0.0)
    assert by_id(s)["negative-eigenvalues"].verdict == DISAGREES
    s["hessian"]["vit"] = hess([1.0], 0.02 + C.TOL["share"] / 2)
    assert by_id(s)["negative-eigenvalues"].verdict == INCONCLUSIVE


def test_negative_eigenvalues_ignores_hybrid_and_needs_vit():
    s = {"models": MODELS, "hessian": {"cnn": hess([1.0], 0.0), "alt": hess([1.0], 0.5)}}
    c = by_id(s)["negative-eigenvalues"]
    assert c.verdict == NOT_MEASURED
    assert c.per_model == {"alt": 0.5, "cnn": 0.0}


# ----------------------------------------------------------------------------- 3, 4 kinds
def blocks(kinds, values, key):
    n = len(kinds)
    return {"blocks": [{"name": f"b{i}", "kind": k, "stage": 0, "depth": i / max(n - 1, 1),
                        key: v} for i, (k, v) in enumerate(zip(kinds, values))]}


@pytest.mark.parametrize("section,key,cid", [("fourier", "dlogA_pi", "fourier"),
                                             ("variance", "variance", "variance")])
def test_kind_rule_flips(section, key, cid):
    # CNN: every conv raises; ViT: every MSA lowers, every MLP raises
    good = {"models": MODELS, section: {
        "cnn": blocks(["embed", "conv", "conv", "pool", "conv"], [0, 1, 2, 1, 3], key),
        "vit": blocks(["embed", "msa", "mlp", "msa", "mlp"], [0, -1, 1, 0, 2], key)}}
    c = by_id(good)[cid]
    assert c.verdict == AGREES, c.detail
    assert c.extra["msa_fraction"] == 1.0 and c.extra["conv_fraction"] == 1.0
    assert c.per_model["vit"] == "MSA 2/2 ↓"
    bad = {"models": MODELS, section: {
        "cnn": blocks(["embed", "conv", "conv"], [0, -1, -2], key),
        "vit": blocks(["embed", "msa", "mlp", "msa"], [0, 1, 0, 1], key)}}
    assert by_id(bad)[cid].verdict == DISAGREES
    mixed = copy.deepcopy(good)
    mixed[section]["vit"] = blocks(["embed", "msa", "mlp", "msa"], [0, 1, 0, 1], key)
    assert by_id(mixed)[cid].verdict == INCONCLUSIVE
    # only conv blocks: the contrast cannot be tested
    only_cnn = {"models": MODELS, section: {"cnn": good[section]["cnn"]}}
    c = by_id(only_cnn)[cid]
    assert c.verdict == NOT_MEASURED and "3/3" in c.detail
    assert by_id({"models": MODELS})[cid].verdict == NOT_MEASURED


def test_block_changes_orders_by_depth_and_skips_nan():
    b = [{"kind": "conv", "depth": 1.0, "v": 5.0}, {"kind": "embed", "depth": 0.0, "v": 1.0},
         {"kind": "msa", "depth": 0.5, "v": float("nan")}]
    assert block_changes(b, "v") == {}
    b[2]["v"] = 3.0
    assert block_changes(b, "v") == {"msa": [2.0], "conv": [2.0]}
    b[0]["same_grid"] = False  # a downsampling conv: not comparable with its predecessor
    assert block_changes(b, "v") == {"msa": [2.0]}


# ----------------------------------------------------------------------------- 5 robustness
def rob(clean, accs, freqs=(0.1, 0.3, 0.5, 0.7, 0.9)):
    return {"freqs": list(freqs), "acc": list(accs), "clean_acc": clean, "noise_norm": 1.0}


def test_high_frequency_drop_uses_top_quarter():
    # 5 frequencies -> the top ceil(5/4) = 2, unsorted input
    e = rob(0.9, [0.5, 0.1, 0.8, 0.9, 0.7], freqs=(0.9, 0.1, 0.5, 0.3, 0.7))
    assert high_frequency_drop(e) == pytest.approx(0.9 - (0.5 + 0.7) / 2)
    assert high_frequency_drop({"freqs": [], "acc": [], "clean_acc": 1.0}) is None


def test_robustness_flips():
    s = {"models": MODELS, "robustness": {"cnn": rob(0.9, [0.9, 0.8, 0.6, 0.3, 0.2]),
                                          "vit": rob(0.8, [0.8, 0.8, 0.75, 0.7, 0.7])}}
    assert by_id(s)["robustness"].verdict == AGREES
    s["robustness"]["cnn"], s["robustness"]["vit"] = s["robustness"]["vit"], s["robustness"]["cnn"]
    assert by_id(s)["robustness"].verdict == DISAGREES
    s["robustness"]["vit"] = copy.deepcopy(s["robustness"]["cnn"])
    assert by_id(s)["robustness"].verdict == INCONCLUSIVE
    del s["robustness"]["cnn"]
    assert by_id(s)["robustness"].verdict == NOT_MEASURED


# ----------------------------------------------------------------------------- 6 stages
def cka(w, a, stages=(0, 0, 1, 1)):
    return {"names": [f"b{i}" for i in range(len(stages))], "stages": list(stages),
            "within_stage_mean": w, "across_stage_mean": a}


def test_stage_cka_flips():
    s = {"models": MODELS, "cka": {"cnn": cka(0.8, 0.4), "vit": cka(0.9, 0.9, (0, 0, 0))}}
    c = by_id(s)["stage-cka"]
    assert c.verdict == AGREES
    assert c.per_model["vit"] == "single stage"
    s["cka"]["cnn"] = cka(0.3, 0.6)
    assert by_id(s)["stage-cka"].verdict == DISAGREES
    s["cka"]["alt"] = cka(0.9, 0.2)
    assert by_id(s)["stage-cka"].verdict == INCONCLUSIVE
    only_single = {"models": MODELS, "cka": {"vit": cka(0.9, 0.1, (0, 0, 0))}}
    assert by_id(only_single)["stage-cka"].verdict == NOT_MEASURED


def lesion(accs, kinds, stages, base=0.9):
    return {"baseline_acc": base,
            "blocks": [{"name": f"b{i}", "kind": k, "stage": s, "depth": i / len(kinds),
                        "acc": a} for i, (a, k, s) in enumerate(zip(accs, kinds, stages))]}


def test_stage_lesion_flips():
    kinds = ["conv", "msa", "msa", "conv", "msa", "msa"]
    stages = [0, 0, 0, 1, 1, 1]
    # end-of-stage MSAs are b2 and b5
    s = {"models": MODELS, "lesion": {"alt": lesion([0.8, 0.88, 0.5, 0.8, 0.89, 0.6],
                                                    kinds, stages)}}
    c = by_id(s)["stage-lesion"]
    assert c.verdict == AGREES, c.detail
    assert c.per_model["alt"] == pytest.approx((0.4 + 0.3) / 2 - (0.02 + 0.01) / 2)
    s["lesion"]["alt"] = lesion([0.8, 0.5, 0.88, 0.8, 0.6, 0.89], kinds, stages)
    assert by_id(s)["stage-lesion"].verdict == DISAGREES
    vit_only = {"models": MODELS, "lesion": {"vit": lesion([0.5, 0.8], ["msa", "msa"], [0, 0])}}
    assert by_id(vit_only)["stage-lesion"].verdict == NOT_MEASURED


# ----------------------------------------------------------------------------- all together
def test_every_claim_present_and_serializable():
    cl = evaluate_claims({})
    assert [c.id for c in cl] == ["flatness", "negative-eigenvalues", "fourier", "variance",
                                  "robustness", "stage-cka", "stage-lesion"]
    assert all(c.verdict == NOT_MEASURED for c in cl)
    assert all(c.claim and c.quantity and c.prediction and c.detail for c in cl)
    json.dumps(C.claims_to_json(cl))


def test_unknown_family_or_label_is_not_compared():
    s = {"models": [{"label": "cnn", "family": "cnn"}],
         "hessian": {"cnn": hess([50.0]), "stranger": hess([1.0])}}
    assert by_id(s)["flatness"].verdict == NOT_MEASURED


def test_kind_rule_falls_back_to_resolution_changes_and_says_so():
    from landscape.claims import evaluate_claims

    def entry(conv_change):
        return {"blocks": [
            {"name": "input", "kind": "input", "depth": 0.0, "dlogA_pi": -3.0},
            {"name": "c1", "kind": "conv", "depth": 0.3, "dlogA_pi": -3.0 + conv_change, "same_grid": False},
            {"name": "m1", "kind": "msa", "depth": 0.6, "dlogA_pi": -3.5 + conv_change},
            {"name": "c2", "kind": "conv", "depth": 0.9, "dlogA_pi": -3.5 + 2 * conv_change, "same_grid": False}]}
    for change, verdict in ((1.0, "agrees"), (-1.0, "inconclusive")):
        s = {"models": [{"label": "h", "family": "hybrid"}], "fourier": {"h": entry(change)}}
        c = {x.id: x for x in evaluate_claims(s)}["fourier"]
        assert c.verdict == verdict, (change, c.detail)
        assert "change resolution" in c.detail and c.extra["includes_resolution_changes"]
