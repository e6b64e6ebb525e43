"""Training rows (issue 33 acceptance (d)): the data-size trend on synthetic spectra, training vs
test NLL, AlterNet vs CNN at matched training, which checkpoints the main rows use, and the
stage rows per architecture."""
import math

import numpy as np
import pytest

from landscape.claims import (
    AGREES,
    DISAGREES,
    INCONCLUSIVE,
    NOT_MEASURED,
    evaluate_claims,
    jonckheere_exact,
    main_models,
    slope_interval,
)
from landscape.summary import SUMMARY_VERSION, Summary

N_BOOT = 200
FRACTIONS = {0.1: range(10, 13), 0.3: range(20, 23), 1.0: range(5)}   # seeds per data size


def claims(summary, **kw):
    return {c.id: c for c in evaluate_claims({"schema_version": SUMMARY_VERSION, **summary},
                                             n_boot=kw.pop("n_boot", N_BOOT), **kw)}


def entry(label, arch, seed, family, **more):
    return {"label": label, "arch": arch, "seed": seed, "family": family, **more}


def _spectra(share_of, lmax_of, families=(("vit_tiny", "vit"), ("resnet_tiny", "cnn")),
             batches=8, fraction_field=True):
    """Per checkpoint ``batches`` top-5 counts whose mean share is ``share_of(arch, f, seed)``
    and λmax values with mean ``lmax_of(arch, f, seed)``; main checkpoints carry no
    data_fraction (the default 1.0) unless ``fraction_field``."""
    models, hess = [], {}
    for arch, fam in families:
        for f, seeds in FRACTIONS.items():
            for s in seeds:
                lab = f"{arch}_d{int(100 * f)}_s{s}" if f < 1 else f"{arch}_s{s}"
                more = {"data_fraction": f} if (f < 1 or fraction_field) else {}
                models.append(entry(lab, arch, s, fam, **more))
                k = round(5 * batches * share_of(arch, f, s))      # negatives over all batches
                neg = [k // batches + (1 if b < k % batches else 0) for b in range(batches)]
                lm = lmax_of(arch, f, s)
                hess[lab] = {"per_batch": {"lambda_max": [lm * (1 + 0.01 * (b - 3.5))
                                                          for b in range(batches)],
                                           "lambda_min": [-1.0] * batches,
                                           "negative_top_k": neg, "top_k": 5}}
    return {"models": models, "hessian": hess}


def _falling(arch, f, s):
    # ViT: the share falls with data (0.6 at 10%, 0.45 at 30%, 0.3 at 100%), a little seed noise
    base = {0.1: 0.6, 0.3: 0.45, 1.0: 0.3}[f] if arch == "vit_tiny" else 0.1
    return base + 0.025 * ((s % 3) - 1)


def _flat(arch, f, s):
    return 0.4 + 0.05 * (((s * 7) % 5) - 2) / 2


def test_d_data_size_trend_falling_agrees_flat_is_inconclusive():
    s = _spectra(_falling, lambda a, f, s: 300.0 * f ** -0.5 * (1 + 0.02 * (s % 3)))
    c = claims(s)
    row = c["data-size-negative-vit"]
    assert row.verdict == AGREES, row.detail
    assert row.n == 11 and row.extra["n_per_fraction"] == {"10%": 3, "30%": 3, "100%": 5}
    # the slope on log10(fraction) and its t-interval, by hand from the checkpoint values
    vals = {lab: v for lab, v in row.per_seed.items()}
    frac = {m["label"]: m.get("data_fraction", 1.0) for m in s["models"]}
    x = [math.log10(frac[k]) for k in vals]
    y = list(vals.values())
    slope, iv = slope_interval(x, y)
    assert row.effect == pytest.approx(slope) and row.interval == pytest.approx(list(iv))
    assert row.interval[1] < 0
    # the exact Jonckheere-Terpstra test across 10% < 30% < 100%: every pair falls
    groups = [[vals[k] for k in vals if frac[k] == f] for f in (0.1, 0.3, 1.0)]
    j, share, p = jonckheere_exact(groups)
    assert row.test["p"] == pytest.approx(p) and share == 0.0 and p < 0.05
    assert row.test["share"] == 1.0
    # the CNN is flat: inconclusive; λmax falls as f^-1/2: factor 10^-1/2 per tenfold
    assert c["data-size-negative-cnn"].verdict == INCONCLUSIVE
    lam = c["data-size-lambda-max-vit"]
    assert lam.scale == "log ratio" and lam.effect == pytest.approx(10 ** -0.5, rel=0.02)
    assert lam.verdict == AGREES
    # a flat share: inconclusive
    flat = claims(_spectra(_flat, lambda a, f, s: 300.0))["data-size-negative-vit"]
    assert flat.verdict == INCONCLUSIVE and flat.interval[0] < 0 < flat.interval[1]
    # rising: disagrees
    rising = claims(_spectra(lambda a, f, s: 0.9 - _falling(a, f, s),
                             lambda a, f, s: 300.0))["data-size-negative-vit"]
    assert rising.verdict == DISAGREES


def test_data_size_is_not_measured_without_variants_and_the_main_rows_ignore_them():
    s = _spectra(_falling, lambda a, f, s: 300.0, fraction_field=False)
    main_only = {"models": [m for m in s["models"] if "data_fraction" not in m],
                 "hessian": {k: v for k, v in s["hessian"].items() if "_d" not in k}}
    c = claims(main_only)["data-size-negative-vit"]
    assert c.verdict == NOT_MEASURED and "no data-size variants" in c.detail
    assert "data_fraction" in c.detail
    # the subset-trained checkpoints never enter the main ViT-vs-CNN rows
    full, sub = claims(s)["negative-eigenvalues-vit"], claims(main_only)["negative-eigenvalues-vit"]
    assert full.n == sub.n == 10 and full.effect == pytest.approx(sub.effect)
    models, aside = main_models(Summary(models=s["models"]))
    assert len(models) == 10 and len(aside) == 12


def _nll_models(vit_train, vit_test, cnn_train, cnn_test, seeds=5):
    ms = []
    for arch, fam, tr, te in (("vit_tiny", "vit", vit_train, vit_test),
                              ("resnet_tiny", "cnn", cnn_train, cnn_test)):
        for f, sd in ((1.0, range(seeds)), (0.1, range(10, 10 + seeds))):
            for s in sd:
                lab = f"{arch}_s{s}" if f == 1.0 else f"{arch}_d10_s{s}"
                jit = 0.01 * (s % 5)
                ms.append(entry(lab, arch, s, fam, data_fraction=f, train_nll=tr(f) + jit,
                                test_nll=te(f) + jit))
    return {"models": ms}


def test_overfitting_rows_per_data_size():
    # the ViT fits worse (higher training NLL) and its gap is smaller: the paper's reading
    s = _nll_models(lambda f: 0.5 / f ** 0.3, lambda f: 0.6 / f ** 0.3,
                    lambda f: 0.1, lambda f: 0.3 / f ** 0.5)
    c = claims(s)
    assert {"train-nll-d100", "train-nll-d10", "overfit-gap-d100", "overfit-gap-d10"} <= set(c)
    row = c["train-nll-d10"]
    assert row.verdict == AGREES and row.test["p"] == pytest.approx(2 / 252)
    assert row.effect == pytest.approx(0.5 / 0.1 ** 0.3 - 0.1, abs=1e-9)
    assert c["overfit-gap-d10"].verdict == AGREES
    assert c["overfit-gap-d10"].effect == pytest.approx(0.1 / 0.1 ** 0.3 - (0.3 / 0.1 ** 0.5
                                                                            - 0.1))
    # the ViT overfits more: disagrees
    s2 = _nll_models(lambda f: 0.1, lambda f: 1.0, lambda f: 0.1, lambda f: 0.2)
    assert claims(s2)["overfit-gap-d10"].verdict == DISAGREES
    c3 = claims({"models": [entry("vit_tiny_s0", "vit_tiny", 0, "vit")]})
    assert c3["train-nll"].verdict == NOT_MEASURED and "train_nll" in c3["train-nll"].detail


def test_alternet_against_the_cnn_only_at_matched_training():
    def ms(alt_epochs, extra_alt8=False):
        out = []
        for s in range(5):
            out.append(entry(f"resnet_tiny_s{s}", "resnet_tiny", s, "cnn", epochs=8,
                             test_acc=0.916 + 0.001 * s))
            out.append(entry(f"alternet_tiny_s{s}", "alternet_tiny", s, "hybrid",
                             epochs=alt_epochs, test_acc=0.919 + 0.001 * s))
            if extra_alt8:
                out.append(entry(f"alternet_tiny_e8_s{s}", "alternet_tiny", s, "hybrid",
                                 epochs=8, test_acc=0.907 + 0.001 * s))
        return {"models": out}
    c = claims(ms(12))["accuracy-matched-hybrid"]
    assert c.verdict == NOT_MEASURED
    assert c.detail == ("recipes differ: hybrid alternet_tiny epochs=12; "
                        "CNN resnet_tiny epochs=8")
    # AlterNet trained by ResNet's recipe too: only those five enter, and they are worse
    c = claims(ms(12, extra_alt8=True))["accuracy-matched-hybrid"]
    assert c.n == 10 and set(c.per_seed) == {f"alternet_tiny_e8_s{s}" for s in range(5)} | {
        f"resnet_tiny_s{s}" for s in range(5)}
    assert c.effect == pytest.approx(-0.009) and c.verdict == DISAGREES
    assert c.test["p"] == pytest.approx(2 / 252)
    # the 8-epoch AlterNet is not a main checkpoint (the longest recipe of its arch is)
    models, aside = main_models(Summary(models=ms(12, extra_alt8=True)["models"]))
    assert set(aside) == {f"alternet_tiny_e8_s{s}" for s in range(5)}
    # the same when the variant carries its own arch name (alternet_tiny_e8)
    renamed = ms(12, extra_alt8=True)
    for m in renamed["models"]:
        if "_e8_" in m["label"]:
            m["arch"] = "alternet_tiny_e8"
    assert set(main_models(Summary(models=renamed["models"]))[1]) == set(aside)
    assert claims(renamed)["accuracy-matched-hybrid"].effect == pytest.approx(-0.009)
    assert "epochs" in claims({"models": [entry("a", "alt", 0, "hybrid", test_acc=0.9),
                                          entry("r", "res", 0, "cnn", test_acc=0.9)]}
                              )["accuracy-matched-hybrid"].detail


# ----------------------------------------------------------------------------- stage rows
def test_stage_cka_one_row_per_architecture_and_the_lesion_reason():
    rng = np.random.default_rng(0)
    stages = [0, 0, 1, 1]
    models, cka, lesion = [], {}, {}
    for arch, fam in (("resnet_tiny", "cnn"), ("alternet_tiny", "hybrid")):
        for s in range(3):
            lab = f"{arch}_s{s}"
            models.append(entry(lab, arch, s, fam))
            hb = []
            for _ in range(4):
                e = rng.normal(0, 0.01, (4, 4))
                k = np.eye(4) * 0.5 + 0.5 + (e + e.T) / 2
                np.fill_diagonal(k, 1.0)
                hb.append(k.tolist())
            cka[lab] = {"names": list("abcd"), "stages": stages, "hsic_batches": hb}
    for s in range(3):
        lab = f"vit_tiny_s{s}"
        models.append(entry(lab, "vit_tiny", s, "vit"))
        lesion[lab] = {"baseline_acc": 0.9, "baseline_groups": [0.9] * 5, "blocks": [
            {"name": f"blocks.{i}.attn", "kind": "msa", "stage": 0, "depth": i / 6,
             "acc": 0.8, "groups": [0.8] * 5} for i in range(6)]}
    c = claims({"models": models, "cka": cka, "lesion": lesion})
    assert {k for k in c if k.startswith("stage-cka")} == {"stage-cka-resnet_tiny",
                                                          "stage-cka-alternet_tiny"}
    assert c["stage-cka-resnet_tiny"].n == 3 and c["stage-cka-resnet_tiny"].family == "cnn"
    assert set(c["stage-cka-alternet_tiny"].per_seed) == {f"alternet_tiny_s{s}"
                                                          for s in range(3)}
    les = c["stage-lesion"]
    assert les.verdict == NOT_MEASURED
    assert "vit_tiny: all 6 MSAs in one stage (the rule needs MSAs in at least two stages)" \
        in les.detail
