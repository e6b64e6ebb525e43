"""Band-limited noise: spectrum confined to the band, exact norm, seeded; accuracy bookkeeping."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from landscape.robustness import (RobustnessResult, band_limited_noise, band_mask,
                                  noise_robustness, normalized_radius)

torch.set_num_threads(1)


def test_normalized_radius_axis():
    r = normalized_radius(8, 8)
    assert r[0, 0] == 0.0
    assert r[4, 4] == pytest.approx(1.0)  # (pi, pi) -> 1 (units of pi)
    assert r[1, 1] == pytest.approx(0.25)  # diagonal (w, w) -> w / pi
    assert r[0, 4] == pytest.approx(1 / math.sqrt(2))


@pytest.mark.parametrize("hw", [(8, 8), (7, 9)])
@pytest.mark.parametrize("f", [0.0, 0.3, 0.7, 0.85])
@pytest.mark.parametrize("base", ["gaussian", "sign"])
def test_noise_spectrum_is_band_limited_with_exact_norm(hw, f, base):
    h, w = hw
    g = torch.Generator().manual_seed(5)
    noise = band_limited_noise((3, 2, h, w), f, 0.1, 2.5, g, base, dtype=torch.float64)
    spec = torch.fft.fft2(noise).abs()
    mask = band_mask(h, w, f, 0.1)
    assert mask.any() and not mask.all()
    assert spec[..., ~mask].max() < 1e-12 * spec.max()
    assert spec[..., mask].max() > 1e-3
    np.testing.assert_allclose(noise.flatten(1).norm(dim=1).numpy(), 2.5, rtol=1e-12)


def test_nyquist_band_on_even_grid():
    noise = band_limited_noise((1, 1, 8, 8), 1.0, 0.01, 1.0, torch.Generator().manual_seed(0),
                               dtype=torch.float64)
    # only the (pi, pi) bin: a checkerboard of norm 1
    h = torch.arange(8)
    board = ((-1.0) ** (h[:, None] + h[None, :])).to(torch.float64) / 8
    assert torch.allclose(noise[0, 0], board) or torch.allclose(noise[0, 0], -board)


def test_noise_is_seeded():
    a = band_limited_noise((2, 1, 8, 8), 0.5, 0.1, 1.0, torch.Generator().manual_seed(1))
    b = band_limited_noise((2, 1, 8, 8), 0.5, 0.1, 1.0, torch.Generator().manual_seed(1))
    c = band_limited_noise((2, 1, 8, 8), 0.5, 0.1, 1.0, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_empty_band_raises():
    with pytest.raises(ValueError):
        band_limited_noise((1, 1, 4, 4), 0.1, 0.01, 1.0)  # bins at 0, 0.354, ... only


class MeanFree(nn.Module):
    """Linear classifier on the image minus its per-channel spatial mean: blind to DC noise."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        return self.fc((x - x.mean(dim=(2, 3), keepdim=True)).flatten(1))


def test_accuracy_under_noise(tmp_path):
    torch.manual_seed(0)
    model = MeanFree()
    x = torch.randn(20, 1, 8, 8)
    y = model(x).argmax(1)  # the model is right on every clean image
    y[:5] = (y[:5] + 1) % 3  # ... except 5
    res = noise_robustness(model, (x, y), freqs=[0.0, 0.5, 1.0], width=0.05, norm=30.0, seed=3,
                           batch_size=7)
    assert res.clean_accuracy == pytest.approx(0.75)
    assert res.n_images == 20
    assert res.accuracy[0] == pytest.approx(0.75)  # only the DC bin: the model ignores it
    assert res.drop[0] == pytest.approx(0.0)
    assert res.accuracy[1] < 0.75  # strong high-frequency noise hurts
    again = noise_robustness(model, (x, y), freqs=[0.0, 0.5, 1.0], width=0.05, norm=30.0, seed=3,
                             batch_size=7)
    assert again.accuracy == res.accuracy and again.loss == res.loss
    back = RobustnessResult.load(res.save(tmp_path / "r.json"))
    assert back.accuracy == res.accuracy and back.seed == 3 and back.freqs == [0.0, 0.5, 1.0]
