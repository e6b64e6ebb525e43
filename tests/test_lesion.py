"""Lesion study against a hand computation on a tiny residual model."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from landscape_models import Block

from landscape.features.lesion import LesionResult, lesion_study

torch.set_num_threads(1)


class Res(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.branch = nn.Sequential(nn.Linear(d, d), nn.Tanh())

    def forward(self, x):
        return x + self.branch(x)


class Net(nn.Module):
    def __init__(self, d=4, k=3):
        super().__init__()
        self.embed = nn.Linear(d, d)
        self.r1, self.r2 = Res(d), Res(d)
        self.head = nn.Linear(d, k)

    def forward(self, x):
        return self.head(self.r2(self.r1(self.embed(x))))

    def block_list(self):
        return [Block("embed", "embed", 0, self.embed),
                Block("r1", "mlp", 0, self.r1, self.r1.branch),
                Block("r2", "msa", 0, self.r2, self.r2.branch), Block("head", "head", 0, self.head)]


def _acc_loss(logits, y):
    return float((logits.argmax(1) == y).float().mean()), float(F.cross_entropy(logits, y))


def test_lesion_matches_hand_computation(tmp_path):
    torch.manual_seed(0)
    net = Net()
    for p in net.parameters():
        nn.init.normal_(p, std=1.5)
    x = torch.randn(40, 4)
    y = torch.randint(0, 3, (40,))
    with torch.no_grad():
        e = net.embed(x)
        full = net.head(net.r2.branch(net.r1(e)) + net.r1(e))
        no_r1 = net.head(e + net.r2.branch(e))
        no_r2 = net.head(net.r1(e))
    res = lesion_study(net, (x, y), batch_size=16)
    assert res.names == ["r1", "r2"] and res.kinds == ["mlp", "msa"]
    assert res.not_residual == ["embed", "head"]
    assert res.depth == [0.5, 0.75]
    a, loss = _acc_loss(full, y)
    assert res.baseline_accuracy == pytest.approx(a)
    assert res.baseline_loss == pytest.approx(loss, rel=1e-5)
    for i, out in enumerate([no_r1, no_r2]):
        a, loss = _acc_loss(out, y)
        assert res.accuracy[i] == pytest.approx(a)
        assert res.loss[i] == pytest.approx(loss, rel=1e-5)
    assert res.loss[0] != pytest.approx(res.baseline_loss)  # the lesion changed something
    # the hooks are gone afterwards
    with torch.no_grad():
        assert torch.allclose(net(x), full)
    back = LesionResult.load(res.save(tmp_path / "l.json"))
    assert back.accuracy == res.accuracy
    hand = [(o.argmax(1) == y).int().tolist() for o in (full, no_r1, no_r2)]
    assert back.correct == hand
    np.testing.assert_allclose(back.drop, res.baseline_accuracy - np.array(res.accuracy))
