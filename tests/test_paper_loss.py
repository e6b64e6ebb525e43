"""(e) The paper's fig1 loss with mixup against a hand computation: tiny model, two images."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from landscape.analyze_config import make_config
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
SPEC = PaperLoss(wd=0.05, mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.1, mix_batch=2)


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
    from landscape.directions import random_direction
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
    from landscape.spectrum import SpectrumConfig, max_eigenvalue_spectrum

    class Data:
        images = torch.cat([X, X.flip(-1)])
        labels = torch.tensor([0, 2, 1, 0])
        num_classes = 3
    imgs, targets, aug, _ = paper_loss_data(True, Data, None, 0, SPEC)
    cfg = SpectrumConfig(k=1, batch_size=2, n_batches=2, wd=0.05, l2="paper", tol=1e-6,
                         max_iter=20, mode="double_backward")
    r = max_eigenvalue_spectrum(tiny(), imgs, targets, cfg, out=tmp_path / "s.h5")
    assert r.finished.all() and np.isfinite(r.eigenvalues).all()
