"""Directions: filter normalization by hand, selection rules, target, trajectory PCA vs SVD."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from landscape.errors import LandscapeError
from landscape.surface import directions as D

torch.set_num_threads(1)


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2)
        self.bn = nn.BatchNorm2d(2)
        self.pos_embed = nn.Parameter(torch.randn(1, 3, 2))
        self.fc = nn.Linear(2, 3)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


def test_filter_normalization_hand_computed():
    w = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64)  # rows norms 5, 1
    d = torch.tensor([[1.0, 0.0], [2.0, 2.0]], dtype=torch.float64)  # rows norms 1, sqrt(8)
    out = D.normalize_direction({"w": d.clone()}, {"w": w}, "filter")["w"]
    expect = torch.tensor([[5.0, 0.0], [2 / 8 ** 0.5, 2 / 8 ** 0.5]], dtype=torch.float64)
    assert torch.allclose(out, expect, atol=1e-9)
    # conv weight: per output filter (dim 0) over the other three dims
    wc = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    wc[0, 0, 0, 0] = 2.0
    wc[1] = 1.0  # norm 2
    dc = torch.ones(2, 1, 2, 2, dtype=torch.float64)  # each filter norm 2
    outc = D.normalize_direction({"c": dc}, {"c": wc}, "filter")["c"]
    assert torch.allclose(outc, torch.ones_like(dc), atol=1e-9)  # 1 * 2/2
    # layer: one factor per tensor: ||w||=sqrt(26), ||d||=3
    out = D.normalize_direction({"w": d.clone()}, {"w": w}, "layer")["w"]
    assert torch.allclose(out, d * (26 ** 0.5 / 3), atol=1e-9)
    # model: one factor over all tensors
    out = D.normalize_direction({"w": d.clone(), "c": torch.ones(2, 1, 2, 2, dtype=torch.float64)},
                                {"w": w, "c": wc}, "model")
    dn = (9 + 8) ** 0.5
    wn = (26 + 4 + 4) ** 0.5
    assert torch.allclose(out["w"], d * wn / dn, atol=1e-9)
    out = D.normalize_direction({"w": d.clone()}, {"w": w}, "none")["w"]
    assert torch.equal(out, d)


def test_random_direction_selection_and_seed():
    torch.manual_seed(0)
    m = TinyNet()
    d = D.random_direction(m, seed=3)
    assert set(d) == {"conv.weight", "fc.weight"}  # biases, bn, pos_embed excluded
    d2 = D.random_direction(m, seed=3)
    assert all(torch.equal(d[n], d2[n]) for n in d)
    d3 = D.random_direction(m, seed=4)
    assert not torch.equal(d["fc.weight"], d3["fc.weight"])
    for n, t in d.items():  # per-filter norms equal the weights'
        w = dict(m.named_parameters())[n]
        assert torch.allclose(t.flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-5)
    db = D.random_direction(m, seed=3, biasbn=True, exclude=())
    assert {"conv.bias", "bn.weight", "bn.bias", "fc.bias", "pos_embed"} <= set(db)
    assert torch.equal(db["fc.bias"], m.fc.bias.detach())  # reference: d = w for 1-D
    ds = D.random_direction(m, seed=3, mode="states")
    assert {"bn.running_mean", "bn.running_var"} <= set(ds)
    assert "bn.num_batches_tracked" not in ds
    with pytest.raises(LandscapeError):
        D.random_direction(m, seed=0, norm="bogus")


def test_target_direction():
    a = {"w": torch.ones(2, 2)}
    b = {"w": torch.full((2, 2), 3.0)}
    t = D.target_direction(a, b, ["w"])
    assert torch.equal(t["w"], torch.full((2, 2), 2.0))
    with pytest.raises(LandscapeError):
        D.target_direction(a, {"w": torch.ones(3)}, ["w"])


def test_trajectory_pca_equals_numpy_svd():
    rng = np.random.default_rng(0)
    T, shapes = 6, {"a": (3, 4), "b": (5,)}
    final = {n: torch.from_numpy(rng.standard_normal(s)) for n, s in shapes.items()}
    states = [{n: final[n] + torch.from_numpy(rng.standard_normal(s)) * (t + 1)
               for n, s in shapes.items()} for t in range(T)]
    loads = []

    def load(i):
        loads.append(i)
        return states[i]

    res = D.trajectory_pca(load, list(range(T)), final, ["a", "b"])
    M = np.stack([np.concatenate([(s[n] - final[n]).numpy().ravel() for n in ["a", "b"]])
                  for s in states])
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    for k, d in enumerate([res.d1, res.d2]):
        v = np.concatenate([d[n].numpy().ravel() for n in ["a", "b"]])
        assert abs(abs(v @ Vt[k]) - 1) < 1e-10
        sign = np.sign(v @ Vt[k])
        assert np.allclose(res.coords[:, k], sign * U[:, k] * S[k], atol=1e-9)
    assert np.allclose(res.singular_values[:2], S[:2])
    assert np.allclose(res.explained, S[:2] ** 2 / (S ** 2).sum())
    # coordinates equal the least-squares projection onto the plane
    proj = D.project_onto([{n: s[n] - final[n] for n in shapes} for s in states], res.d1, res.d2)
    assert np.allclose(proj, res.coords, atol=1e-9)


def test_hdvw_norm_matches_the_paper_codes_dim0_rule():
    """The paper's normalize_filter: d * ||w||_dim0 / (||d||_dim0 + 1e-7); 1-D tensors zeroed."""
    from landscape.surface.directions import normalize_direction
    w = torch.tensor([[3.0, 0.0], [4.0, 2.0]], dtype=torch.float64)
    d = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    out = normalize_direction({"w": d.clone(), "b": torch.ones(2, dtype=torch.float64)},
                              {"w": w, "b": torch.ones(2, dtype=torch.float64)}, "hdvw")
    # column norms: w -> (5, 2), d -> (1, sqrt 2)
    expect = torch.tensor([[5 / (1 + 1e-7), 2 / (2 ** 0.5 + 1e-7)],
                           [0.0, 2 / (2 ** 0.5 + 1e-7)]], dtype=torch.float64)
    assert torch.allclose(out["w"], expect, rtol=0, atol=1e-12)
    assert torch.equal(out["b"], torch.zeros(2, dtype=torch.float64))
