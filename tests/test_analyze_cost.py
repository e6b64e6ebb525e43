"""Cost before work: the estimate's arithmetic, the quick budget's adaptation, the probe."""
from __future__ import annotations

import dataclasses
import math

import landscape_models as models
import pytest
import torch

from landscape import analyze_cost as C
from landscape.analyze_config import make_config


def test_estimate_counts_each_runner():
    p = C.Probe(forward_s=1e-3, hvp_s=1e-2)
    cfg = make_config("quick", overrides=dict(
        spectrum_batches=4, spectrum_batch_size=8, top_k=5, trace_products=10, density_probes=2,
        density_steps=5, curvature_samples=32, surface_grid="-1:1:3", surface_ygrid="-1:1:5",
        surface_planes=2, surface_samples=100, robustness_freqs=6))
    est = C.estimate(p, cfg, ["hessian", "surface", "fourier", "robustness", "lesion"],
                     n_pool=1000, n_feat=50, n_lesion=200, n_residual=3)
    spectrum = 4 * C.PRODUCTS_PER_BATCH * 8 * 1e-2
    curvature = (10 + 2 * 5 + C.PRODUCTS_PER_BATCH) * 32 * 1e-2
    assert est["hessian"] == pytest.approx(spectrum + curvature)
    assert est["surface"] == pytest.approx(2 * 3 * 5 * 100 * 1e-3)
    assert est["fourier"] == pytest.approx(50 * 1e-3)
    assert est["robustness"] == pytest.approx(6 * 50 * 1e-3)
    assert est["lesion"] == pytest.approx(4 * 200 * 1e-3)
    assert set(est) == {"hessian", "surface", "fourier", "robustness", "lesion"}
    # spectrum_batches = 0: the paper's 10% of the pool in mini-batches
    cfg0 = dataclasses.replace(cfg, spectrum_batches=0)
    est0 = C.estimate(p, cfg0, ["hessian"], 1000, 50, 200, 3)
    assert est0["hessian"] == pytest.approx(13 * C.PRODUCTS_PER_BATCH * 8 * 1e-2 + curvature)


def _cost(per_batch_image: float):
    p = C.Probe(forward_s=1e-3, hvp_s=per_batch_image)
    return lambda c: C.estimate(p, c, ["hessian", "surface"], 60000, 500, 500, 4)


def test_adapt_quick_shrinks_until_the_target_and_records_it():
    cfg = make_config("quick")
    cost = _cost(2e-2)  # a large model
    assert C.heavy_seconds(cost(cfg)) > C.QUICK_TARGET_S
    new, changed = C.adapt_quick(cfg, cost, fixed=set())
    assert C.heavy_seconds(cost(new)) <= C.QUICK_TARGET_S
    assert changed and all(getattr(cfg, k) == v[0] and getattr(new, k) == v[1]
                           for k, v in changed.items())
    assert all(v[1] < v[0] for v in changed.values())
    # nothing to do for a small model; user-set settings are never touched
    assert C.adapt_quick(cfg, _cost(1e-6), set()) == (cfg, {})
    kept, changed2 = C.adapt_quick(cfg, cost, fixed={"spectrum_batches"})
    assert kept.spectrum_batches == cfg.spectrum_batches and "spectrum_batches" not in changed2


def test_adapt_quick_stops_at_the_floors():
    cfg = make_config("quick")
    new, changed = C.adapt_quick(cfg, _cost(10.0), fixed=set())  # cannot reach the target
    assert {k: getattr(new, k) for k in C.ADAPTABLE} == {
        k: min(v, getattr(cfg, k)) for k, v in C.FLOORS.items()}
    assert set(changed) <= set(C.ADAPTABLE)


def test_probe_is_positive_and_restores_mode():
    torch.manual_seed(0)
    net = models.create("resnet_tiny", num_classes=10, in_chans=1, img_size=28).train()
    x, y = torch.randn(20, 1, 28, 28), torch.randint(0, 10, (20,))
    p = C.probe(net, x, y, forward_images=4, hvp_images=4)
    assert 0 < p.forward_s < math.inf and 0 < p.hvp_s < math.inf
    assert net.training
    assert "about" in C.format_estimate("m", {"hessian": 300.0, "lesion": 2.0})
