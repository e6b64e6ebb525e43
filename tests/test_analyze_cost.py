"""Cost before work: the estimate's arithmetic, the quick budget's adaptation, the probe."""
from __future__ import annotations

import dataclasses
import math

import landscape_models as models
import pytest
import torch

from landscape.analyze import cost as C
from landscape.analyze.config import make_config


def test_estimate_counts_each_runner():
    p = C.Probe(forward_s=1e-3, hvp_s=1e-2, hvp_fixed_s=0.5, row_s=1e-3)
    cfg = make_config("quick", overrides=dict(
        spectrum_batches=4, spectrum_batch_size=8, top_k=5, trace_products=10, density_probes=2,
        density_steps=5, curvature_samples=32, surface_grid="-1:1:3", surface_ygrid="-1:1:5",
        surface_planes=2, surface_samples=100, robustness_freqs=6, lesion_samples=150,
        eval_samples=300))
    est = C.estimate(p, cfg, ["hessian", "surface", "fourier", "robustness", "lesion"],
                     n_pool=1000, n_feat=50, n_lesion=200, n_residual=3, n_eval=400)
    k = C.PRODUCTS_PER_BATCH
    # a Lanczos run of k steps: k products (0.5 s fixed + per image) and k^2 basis reads
    spectrum = 4 * (k * (0.5 + 8 * 1e-2) + k * k * 1e-3)
    product32 = 0.5 + 32 * 1e-2
    curvature = (10 * product32 + 2 * (5 * product32 + 25 * 1e-3)
                 + k * product32 + k * k * 1e-3  # top Lanczos
                 + (b := C.PRODUCTS_BOTTOM) * product32 + b * b * 1e-3)  # bottom Lanczos
    assert est["hessian"] == pytest.approx(spectrum + curvature)
    assert est["surface"] == pytest.approx(2 * 3 * 5 * 100 * 1e-3)
    assert est["fourier"] == pytest.approx(50 * 1e-3)
    assert est["robustness"] == pytest.approx(6 * 50 * 1e-3)
    assert est["lesion"] == pytest.approx(4 * 150 * 1e-3)  # lesion_samples of the 200 images
    assert est["evaluation"] == pytest.approx(2 * 300 * 1e-3)  # test + training accuracy
    assert set(est) == {"evaluation", "hessian", "surface", "fourier", "robustness", "lesion"}
    assert C.total_seconds(est) == pytest.approx(sum(est.values()))
    # spectrum_batches = 0: the paper's 10% of the pool in mini-batches
    cfg0 = dataclasses.replace(cfg, spectrum_batches=0)
    est0 = C.estimate(p, cfg0, ["hessian"], 1000, 50, 200, 3)
    assert est0["hessian"] == pytest.approx(13 * spectrum / 4 + curvature)
    assert "evaluation" not in est0


def _cost(per_batch_image: float):
    p = C.Probe(forward_s=1e-3, hvp_s=per_batch_image)
    return lambda c: C.estimate(p, c, ["hessian", "surface"], 60000, 500, 500, 4)


def test_adapt_quick_leaves_settings_of_other_analyses():
    """Only halvings that lower the estimate are made: a lesion-only run keeps the Hessian's and
    the surface's settings and records only what it changed."""
    p = C.Probe(forward_s=0.1, hvp_s=1.0)
    cfg = make_config("quick")
    new, changed = C.adapt_quick(
        cfg, lambda c: C.estimate(p, c, ["lesion"], 60000, 500, 1000, 8, n_eval=10000), set())
    assert set(changed) == {"lesion_samples", "eval_samples"}
    assert (new.lesion_samples, new.eval_samples) == (250, 500)  # the floors (cannot fit)
    assert new.spectrum_batches == cfg.spectrum_batches


def test_adapt_quick_shrinks_until_the_target_and_records_it():
    cfg = make_config("quick")
    cost = _cost(2e-2)  # a large model
    assert C.total_seconds(cost(cfg)) > C.QUICK_TARGET_S
    new, changed = C.adapt_quick(cfg, cost, fixed=set())
    assert C.total_seconds(cost(new)) <= C.QUICK_TARGET_S
    assert changed and all(getattr(cfg, k) == v[0] and getattr(new, k) == v[1]
                           for k, v in changed.items())
    assert all(v[1] < v[0] for v in changed.values())
    # nothing to do for a small model; user-set settings are never touched
    assert C.adapt_quick(cfg, _cost(1e-6), set()) == (cfg, {})
    kept, changed2 = C.adapt_quick(cfg, cost, fixed={"spectrum_batches"})
    assert kept.spectrum_batches == cfg.spectrum_batches and "spectrum_batches" not in changed2


def test_adapt_quick_stops_at_the_floors():
    cfg = make_config("quick")
    p = C.Probe(forward_s=1.0, hvp_s=10.0)
    everything = ["hessian", "surface", "fourier", "variance", "robustness", "cka", "lesion"]
    new, changed = C.adapt_quick(  # cannot reach the target
        cfg, lambda c: C.estimate(p, c, everything, 60000, 500, 10000, 4, n_eval=10000), set())
    assert {k: getattr(new, k) for k in C.ADAPTABLE} == {
        k: min(v, getattr(cfg, k)) for k, v in C.FLOORS.items()}
    assert set(changed) <= set(C.ADAPTABLE)


def test_probe_is_positive_and_restores_mode():
    torch.manual_seed(0)
    net = models.create("resnet_tiny", num_classes=10, in_chans=1, img_size=28).train()
    x, y = torch.randn(20, 1, 28, 28), torch.randint(0, 10, (20,))
    p = C.probe(net, x, y, forward_images=4, hvp_images=8)
    assert 0 < p.forward_s < math.inf and 0 <= p.hvp_s < math.inf
    assert 0 <= p.hvp_fixed_s < math.inf and 0 < p.row_s < math.inf
    assert p.product(8) > 0
    assert net.training
    assert "about" in C.format_estimate("m", {"hessian": 300.0, "lesion": 2.0})


@pytest.fixture(scope="module")
def slow_target_run(tmp_path_factory):
    """(data root, checkpoint): 600 fake Fashion-MNIST test images and a resnet_tiny, for
    analyze runs under a quick-budget target no model meets."""
    import cases

    from landscape.loading import checkpoint
    d = tmp_path_factory.mktemp("slow_target")
    root = d / "fashion-mnist"
    cases.write_fmnist(root, n_train=20, n_test=600)
    torch.manual_seed(0)
    m = models.create("resnet_tiny", num_classes=10, in_chans=1, img_size=28)
    return root, checkpoint.save(d / "r.pt", m, dataset="fashion-mnist", seed=0, epoch=0)


def test_analyze_draws_the_adapted_image_counts(slow_target_run, tmp_path, monkeypatch, capsys):
    """The quick budget's adaptation is what runs: with a target no model meets, a lesion-only
    run halves lesion_samples and eval_samples to their floors, the report's settings record
    it, and the images drawn are the adapted counts (not the preset's)."""
    from landscape.analyze.run import analyze
    from landscape.features.lesion import LesionResult
    root, ck = slow_target_run
    monkeypatch.setattr(C, "QUICK_TARGET_S", 0.0)
    cfg = make_config("quick", overrides={"data_root": str(root)})
    s = analyze([ck], tmp_path / "out", cfg, only=["lesion"], budget="quick", progress=True)
    adapted = s["settings"]["adapted"]
    assert adapted == {"lesion_samples": [1000, 250], "eval_samples": [2000, 500]}
    assert s["models"][0]["eval_samples"] == 500  # of the 600 test images
    raw = LesionResult.load(next((tmp_path / "out" / "raw").glob("r-*/lesion.json")))
    assert s["settings"]["lesion_samples"] == 250 and raw.n_images == 250
    assert "lesion_samples 1000 -> 250" in capsys.readouterr().err


def test_no_adapt_keeps_the_budget(slow_target_run, tmp_path, monkeypatch):
    """``--no-adapt`` (make demo, the figure targets): the same target no model meets changes
    nothing, the summary records no adaptation and the preset's counts are drawn."""
    import json

    from landscape.cli import main
    root, ck = slow_target_run
    monkeypatch.setattr(C, "QUICK_TARGET_S", 0.0)
    out = tmp_path / "out"
    assert main(["analyze", str(ck), "--data-root", str(root), "--only", "lesion", "--quiet",
                 "--no-adapt", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "adapted" not in summary["settings"] and summary["settings"]["lesion_samples"] == 1000
    assert summary["models"][0]["eval_samples"] == 600  # eval_samples 2000: all 600 images
