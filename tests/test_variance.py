"""Feature-map variance: known tensors and a scaling block."""
import landscape_models as models
import numpy as np
import pytest
import torch
import torch.nn as nn
from cases import Chain

from landscape.features.variance import VarianceResult, spatial_variance, variance_analysis

torch.set_num_threads(1)


class Scale(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a

    def forward(self, x):
        return self.a * x


def test_spatial_variance_of_known_tensor():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]], [[5.0, 5.0], [5.0, 5.0]]]])  # (1, 2, 2, 2)
    np.testing.assert_allclose(spatial_variance(x, ddof=0).numpy(), [[1.25, 0.0]])
    np.testing.assert_allclose(spatial_variance(x, ddof=1).numpy(), [[5 / 3, 0.0]])


def test_variance_analysis_known_values_and_streaming(tmp_path):
    # image b, channel c: values (b + 1) * (c + 1) * [0, 1, 2, 3] on a 2x2 grid
    base = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    x = torch.stack([torch.stack([(b + 1) * (c + 1) * base for c in range(2)]) for b in range(3)])
    # ddof=0 variance of a*[0,1,2,3] = 1.25 a^2; mean over b in 1..3, c in 1..2
    expect = 1.25 * np.mean([(b * c) ** 2 for b in (1, 2, 3) for c in (1, 2)])
    model = Chain(Scale(3.0))
    bl = models.named_blocks(model, {"layers.0": "conv"})
    r1 = variance_analysis(model, x, block_list=bl, ddof=0, batch_size=3)
    r2 = variance_analysis(model, x, block_list=bl, ddof=0, batch_size=2)
    assert r1.names == ["input", "layers.0"] and r1.depth == [0.0, 1.0]
    assert r1.variance[0] == pytest.approx(expect)
    assert r1.variance[1] == pytest.approx(9 * expect)
    np.testing.assert_allclose(r1.variance, r2.variance)
    # standard error over images of the per-image channel mean
    per_image = [1.25 * np.mean([(b * c) ** 2 for c in (1, 2)]) for b in (1, 2, 3)]
    assert r1.stderr[0] == pytest.approx(np.std(per_image, ddof=1) / np.sqrt(3))
    back = VarianceResult.load(r1.save(tmp_path / "v.json"))
    assert back.variance == r1.variance and back.n_images == 3 and back.config["ddof"] == 0
    # per-image values (kept for the bootstrap) average to the reported variance
    np.testing.assert_allclose(r1.per_image[0], per_image, rtol=1e-6)
    np.testing.assert_allclose(r2.per_image[1], 9 * np.array(per_image), rtol=1e-6)
    assert back.per_image == r1.per_image


def test_tokens_and_non_spatial_blocks():
    class Tok(nn.Module):
        def forward(self, x):  # (B, C, H, W) -> (B, 1 + HW, C), cls token of huge variance
            t = x.flatten(2).transpose(1, 2)
            return torch.cat([1e3 * torch.randn_like(t[:, :1]), t], 1)

    class Pool(nn.Module):
        def forward(self, t):
            return t.mean(1)

    model = Chain(Tok(), Pool())
    x = torch.randn(4, 3, 5, 5)
    bl = models.named_blocks(model, {"layers.0": "embed", "layers.1": "pool"})
    r = variance_analysis(model, x, block_list=bl)
    assert r.skipped == ["layers.1"]
    assert r.variance[1] == pytest.approx(r.variance[0])


def test_changes_from_previous():
    x = torch.randn(3, 2, 4, 4)
    model = Chain(Scale(2.0), Scale(0.5), nn.AvgPool2d(2))
    bl = models.named_blocks(model, {"layers.0": "conv", "layers.1": "msa", "layers.2": "pool"})
    r = variance_analysis(model, x, block_list=bl)
    ch = r.changes()
    assert [c["name"] for c in ch] == ["layers.0", "layers.1", "layers.2"]
    assert ch[0]["log_ratio"] == pytest.approx(np.log(4.0))
    assert ch[1]["log_ratio"] == pytest.approx(np.log(0.25))
    assert [c["same_grid"] for c in ch] == [True, True, False]
    assert r.grid == [4, 4, 4, 2]
