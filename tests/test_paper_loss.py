"""(e) The paper's fig1 loss with mixup against a hand computation: tiny model, two images."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from landscape.analyze.config import make_config
from landscape.errors import LandscapeError
from landscape.paper_loss import (
    PaperLoss,
    paper_loss,
    paper_loss_data,
    paper_transform,
    soft_cross_entropy,
)

torch.set_num_threads(1)
X = torch.tensor([[[[1.0, 2.0], [0.0, -1.0]]], [[[-2.0, 0.5], [1.5, 3.0]]]], dtype=torch.float64)
Y = torch.tensor([0, 2])
W = [[0.5, -1.0, 0.25, 2.0], [1.0, 0.0, -0.5, 0.5], [-1.5, 0.75, 1.0, 0.0]]
B = [0.1, -0.2, 0.3]
SPEC = PaperLoss(wd=0.05, mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.1, mix_batch=2,
                 rand_augment="")


def tiny():
    m = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        m[1].weight.copy_(torch.tensor(W, dtype=torch.float64))
        m[1].bias.copy_(torch.tensor(B, dtype=torch.float64))
    return m


def swapped():
    """A seed whose permutation pairs the two images with each other."""
    for seed in range(50):
        t = paper_transform(X, Y, 3, SPEC, None, seed)
        if t.record[0][2] == [1, 0]:
            return seed, t
    raise AssertionError("no seed swaps the two images")


def test_e_paper_loss_with_mixup_equals_a_hand_computation():
    seed, t = swapped()
    _, lam, perm, cut = t.record[0]
    assert not cut and 0 < lam < 1
    # by hand: the mixed images, the smoothed mixed targets, the logits, the NLL and the L2
    px = [[1.0, 2.0, 0.0, -1.0], [-2.0, 0.5, 1.5, 3.0]]
    mixed = [[lam * a + (1 - lam) * b for a, b in zip(px[i], px[1 - i], strict=True)]
             for i in range(2)]
    onehot = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    target = [[0.9 * (lam * a + (1 - lam) * b) + 0.1 / 3 for a, b in
               zip(onehot[i], onehot[1 - i], strict=True)] for i in range(2)]
    nll = 0.0
    for i in range(2):
        z = [sum(w * v for w, v in zip(W[k], mixed[i], strict=True)) + B[k] for k in range(3)]
        lse = math.log(sum(math.exp(v) for v in z))
        nll -= sum(target[i][k] * (z[k] - lse) for k in range(3))
    nll /= 2
    l2 = math.sqrt(sum(w * w for row in W for w in row)) + math.sqrt(sum(b * b for b in B))
    hand = nll + 0.05 * l2
    assert np.allclose(t.images.flatten(1).numpy(), mixed, rtol=0, atol=1e-12)
    assert np.allclose(t.targets.numpy(), target, rtol=0, atol=1e-12)
    assert t.targets.sum(1).tolist() == pytest.approx([1.0, 1.0])
    got = paper_loss(tiny(), t.images, t.targets, SPEC).detach()
    assert float(got) == pytest.approx(hand, rel=1e-12)
    ce = soft_cross_entropy(tiny()(t.images), t.targets).detach()
    assert float(ce) == pytest.approx(nll, rel=1e-12)
    # the loss surface's evaluator reads the same soft targets: its NLL at the centre is the
    # hand NLL and its L2 column the hand Σ‖p‖₂
    from landscape.surface.directions import random_direction
    from landscape.surface.evaluate import SurfaceEvaluator
    m = tiny()
    ev = SurfaceEvaluator(m, [random_direction(m, 0)], t.images, t.targets, l2=True,
                          batch_size=2, points_per_pass=1, workers=1)
    row = ev.evaluate(np.zeros((1, 2)))[0]
    ev.restore()
    assert row[0] == pytest.approx(nll, rel=1e-9) and row[2] == pytest.approx(l2, rel=1e-9)
    assert row[0] + 0.05 * row[2] == pytest.approx(hand, rel=1e-9)


def test_paper_transform_is_seeded_and_off_means_unchanged():
    a = paper_transform(X, Y, 3, SPEC, None, 3)
    b = paper_transform(X, Y, 3, SPEC, None, 3)
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
    plain = paper_transform(X, Y, 3, PaperLoss(mixup_alpha=0, cutmix_alpha=0,
                                               label_smoothing=0), None, 0)
    assert torch.equal(plain.images, X) and plain.targets.argmax(1).tolist() == [0, 2]

    class Data:
        images, labels, num_classes = X, Y, 3
    imgs, labels, aug, desc = paper_loss_data(False, Data, "A", 0)
    assert imgs is X and labels is Y and aug == "A"
    imgs, labels, aug, desc = paper_loss_data(True, Data, None, 0, SPEC)
    assert labels.shape == (2, 3) and aug is None and "0.05·Σ‖p‖₂" in desc
    with pytest.raises(LandscapeError):
        PaperLoss(label_smoothing=1.0)


def test_the_paper_budget_uses_the_paper_loss_for_every_model():
    cfg = make_config("paper")
    assert cfg.paper_loss and cfg.surface_wd == 0.05 and cfg.hessian_wd == 0.05
    assert not make_config("quick").paper_loss
    assert make_config("paper", overrides={"surface_wd": 5e-4}).surface_wd == 5e-4


def test_the_hessian_operator_takes_the_soft_targets_of_the_paper_transform():
    from landscape.curvature.hessian_operator import HessianOperator, dense_hessian
    _, t = swapped()
    m = tiny()
    op = HessianOperator(m, (t.images, t.targets), wd=0.05, l2="paper", mode="double_backward")
    n = op.shape[0]
    got = torch.stack([op.matvec(e) for e in torch.eye(n, dtype=torch.float64)], 1)
    ref = dense_hessian(m, t.images, t.targets, loss_fn=soft_cross_entropy)
    from landscape.curvature.l2 import l2_hessian
    l2 = l2_hessian(list(m.parameters()), 0.05, "paper").matmat(torch.eye(n, dtype=torch.float64))
    assert torch.allclose(got, ref + l2, atol=1e-10)


def test_the_spectrum_runs_on_the_paper_transform(tmp_path):
    from landscape.curvature.spectrum import SpectrumConfig, max_eigenvalue_spectrum

    class Data:
        images = torch.cat([X, X.flip(-1)])
        labels = torch.tensor([0, 2, 1, 0])
        num_classes = 3
    imgs, targets, aug, _ = paper_loss_data(True, Data, None, 0, SPEC)
    cfg = SpectrumConfig(k=1, batch_size=2, n_batches=2, wd=0.05, l2="paper", tol=1e-6,
                         max_iter=20, mode="double_backward")
    r = max_eigenvalue_spectrum(tiny(), imgs, targets, cfg, out=tmp_path / "s.h5")
    assert r.finished.all() and np.isfinite(r.eigenvalues).all()


# ----------------------------------------------------------------------------- the HDVW configs
def test_e_the_default_paper_loss_is_mixup_alpha_one_with_a_hand_check():
    """Every HDVW config: mixup_alpha 1.0, cutmix_alpha 0.8. With α = 1 the Beta(1, 1) draw is the
    uniform draw itself, so λ is the generator's uniform number, reproduced here by hand."""
    spec = PaperLoss()
    assert (spec.mixup_alpha, spec.cutmix_alpha, spec.rand_augment) == (1.0, 0.8,
                                                                         "rand-m9-n2-mstd1.0")
    spec = PaperLoss(mix_batch=2, rand_augment="")   # the defaults otherwise
    for seed in range(200):
        t = paper_transform(X, Y, 3, spec, None, seed)
        _, lam, perm, cut = t.record[0]
        if not cut and perm == [1, 0]:
            break
    else:
        raise AssertionError("no seed gives Mixup with the two images swapped")
    g = torch.Generator().manual_seed(seed)
    coin = float(torch.rand((), generator=g))                      # Mixup or CutMix
    u = float(torch.rand((), generator=g, dtype=torch.float64))    # the Beta(1, 1) draw
    assert coin >= 0.5 and lam == pytest.approx(u, abs=1e-9)
    # the loss by hand with that λ (as test_e above)
    px = [[1.0, 2.0, 0.0, -1.0], [-2.0, 0.5, 1.5, 3.0]]
    onehot = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    nll = 0.0
    for i in range(2):
        x = [u * a + (1 - u) * b for a, b in zip(px[i], px[1 - i], strict=True)]
        tgt = [0.9 * (u * a + (1 - u) * b) + 0.1 / 3
               for a, b in zip(onehot[i], onehot[1 - i], strict=True)]
        z = [sum(w * v for w, v in zip(W[k], x, strict=True)) + B[k] for k in range(3)]
        lse = math.log(sum(math.exp(v) for v in z))
        nll -= sum(tgt[k] * (z[k] - lse) for k in range(3)) / 2
    l2 = math.sqrt(sum(w * w for row in W for w in row)) + math.sqrt(sum(b * b for b in B))
    got = paper_loss(tiny(), t.images, t.targets, spec).detach()
    assert float(got) == pytest.approx(nll + 0.05 * l2, rel=1e-9)


def test_the_description_names_the_wd_used():
    assert "0.0005·Σ‖p‖₂" in PaperLoss(wd=5e-4).describe()
    assert "Mixup α=1 / CutMix α=0.8" in PaperLoss().describe()

    class Data:
        images, labels, num_classes = X, Y, 3
    *_, desc = paper_loss_data(True, Data, None, 0, SPEC, wd=5e-4)
    assert "0.0005·Σ‖p‖₂" in desc and "0.05·" not in desc
    *_, desc = paper_loss_data(True, Data, None, 0, SPEC)
    assert "0.05·Σ‖p‖₂" in desc


def _fake_torchvision(monkeypatch, calls):
    import sys
    import types

    class RandAugment:
        def __init__(self, num_ops, magnitude):
            calls.append(("init", num_ops, magnitude))

        def __call__(self, img):
            calls.append(("call", img.dtype, tuple(img.shape)))
            return (img.to(torch.int16) + 10).clamp(0, 255).to(torch.uint8)
    pkg = types.ModuleType("torchvision")
    mod = types.ModuleType("torchvision.transforms")
    mod.RandAugment = RandAugment
    pkg.transforms = mod
    monkeypatch.setitem(sys.modules, "torchvision", pkg)
    monkeypatch.setitem(sys.modules, "torchvision.transforms", mod)


def test_randaugment_without_torchvision_is_a_stated_deviation(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "torchvision", None)   # `import torchvision` fails
    spec = PaperLoss(mix_batch=2, mixup_alpha=0, cutmix_alpha=0, label_smoothing=0)
    assert "RandAugment rand-m9-n2-mstd1.0 NOT applied: torchvision is not installed " \
           "(deviation from the paper's training transform)" in spec.describe()
    t = paper_transform(X, Y, 3, spec, None, 0)
    assert torch.equal(t.images, X)                          # nothing else changed the images

    class Data:
        images, labels, num_classes = X, Y, 3
    *_, desc = paper_loss_data(True, Data, None, 0, spec)
    assert "NOT applied: torchvision is not installed" in desc


def test_randaugment_from_torchvision_is_called_with_m9_n2(monkeypatch):
    from landscape.data.augment import parse_rand_augment, rand_augment
    calls = []
    _fake_torchvision(monkeypatch, calls)
    step, what = rand_augment("rand-m9-n2-mstd1.0", mean=[0.5], std=[0.25])
    assert calls[0] == ("init", 2, 9)
    assert "torchvision num_ops=2, magnitude=9" in what and "mstd1" in what
    # on the pixels: x·std + mean in [0, 1] -> uint8 per image -> +10 (the fake) -> normalized
    x = torch.tensor([[[[0.0, 1.0], [-2.0, 2.0]]], [[[0.4, -0.4], [1.2, -1.2]]]],
                     dtype=torch.float64)
    out = step(x, torch.Generator().manual_seed(0))
    pix = ((x * 0.25 + 0.5).clamp(0, 1) * 255).round()
    want = (((pix + 10).clamp(0, 255)) / 255 - 0.5) / 0.25
    assert torch.allclose(out, want, atol=1e-12)
    assert [c for c in calls if c[0] == "call"] == [("call", torch.uint8, (1, 2, 2))] * 2
    # the paper transform runs it after pad/flip, and says so
    spec = PaperLoss(mix_batch=2, mixup_alpha=0, cutmix_alpha=0, label_smoothing=0)
    assert "RandAugment rand-m9-n2-mstd1.0 (torchvision num_ops=2, magnitude=9" in spec.describe()
    t = paper_transform(x, Y, 3, spec, None, 0, mean=[0.5], std=[0.25])
    assert torch.allclose(t.images, want, atol=1e-12)
    assert parse_rand_augment("rand-m9-n2-mstd1.0") == {"m": 9.0, "n": 2.0, "mstd": 1.0}
    with pytest.raises(LandscapeError):
        parse_rand_augment("auto-m9")
