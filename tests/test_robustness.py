"""Band-limited noise: spectrum confined to the band, exact norm, seeded; accuracy bookkeeping."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from landscape.features.robustness import (
    PAPER_WIDTH,
    RobustnessResult,
    band_limited_noise,
    band_mask,
    noise_robustness,
    normalized_radius,
    paper_band_mask,
    paper_frequency_noise,
)

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
                           batch_size=7, protocol="radial")
    assert res.clean_accuracy == pytest.approx(0.75)
    assert res.n_images == 20
    assert res.accuracy[0] == pytest.approx(0.75)  # only the DC bin: the model ignores it
    assert res.drop[0] == pytest.approx(0.0)
    assert res.accuracy[1] < 0.75  # strong high-frequency noise hurts
    again = noise_robustness(model, (x, y), freqs=[0.0, 0.5, 1.0], width=0.05, norm=30.0, seed=3,
                             batch_size=7, protocol="radial")
    assert again.accuracy == res.accuracy and again.loss == res.loss
    back = RobustnessResult.load(res.save(tmp_path / "r.json"))
    assert back.accuracy == res.accuracy and back.seed == 3 and back.freqs == [0.0, 0.5, 1.0]
    assert back.protocol == "radial" and len(back.correct) == 4
    assert [np.mean(c) for c in back.correct] == pytest.approx([0.75] + res.accuracy)


# ----------------------------------------------------------------------------- paper protocol
RING_HALF_PI = np.array([  # f = π/2, s = 0.2 rad on 8x8: squares of side 4 minus side 2
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 1, 1, 1, 1, 0, 0],
    [0, 0, 1, 0, 0, 1, 0, 0],
    [0, 0, 1, 0, 0, 1, 0, 0],
    [0, 0, 1, 1, 1, 1, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0]], dtype=bool)
RING_PI = np.ones((8, 8), dtype=bool)  # f = π: side 8 (clipped) minus side 6
RING_PI[1:7, 1:7] = False


def _notebook_mask(f_rad, s_rad, h):
    # FreqAttack._fourier_mask / _center_mask of ops/adversarial.py, transcribed
    def center(w1, w2):
        w1 = w2 if w1 > w2 else w1
        w1 = 0 if w1 < 0 else w1
        return F.pad(torch.ones([w1, w1]), [int((w2 - w1) / 2)] * 4)
    return (center(int(((f_rad + s_rad) * h) / (2 * math.pi)) * 2, h)
            - center(int(((f_rad - s_rad) * h) / (2 * math.pi)) * 2, h)).bool().numpy()


def test_paper_band_mask_on_8x8_equals_hand_built():
    np.testing.assert_array_equal(paper_band_mask(8, 8, 0.5, centered=True).numpy(), RING_HALF_PI)
    np.testing.assert_array_equal(paper_band_mask(8, 8, 1.0, centered=True).numpy(), RING_PI)
    # the unshifted layout is the same mask rolled by n/2
    np.testing.assert_array_equal(paper_band_mask(8, 8, 0.5).numpy(),
                                  np.roll(RING_HALF_PI, (4, 4), axis=(0, 1)))
    for f in (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0):
        for h in (8, 28):
            np.testing.assert_array_equal(paper_band_mask(h, h, f, centered=True).numpy(),
                                          _notebook_mask(f * math.pi, 0.2, h)), (f, h)
    assert pytest.approx(0.2 / math.pi) == PAPER_WIDTH


def test_paper_noise_matches_freqattack_and_keeps_its_amplitude():
    g = torch.Generator().manual_seed(4)
    noise = paper_frequency_noise((2, 3, 8, 8), 0.5, eps=0.3, generator=g, dtype=torch.float64)
    delta = 0.3 * torch.sign(torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(4),
                                         dtype=torch.float64))
    # FreqAttack: fft2, shift, amplitude * mask, recombine with the phase, shift, ifft2, real
    x = torch.roll(torch.fft.fft2(delta), shifts=(4, 4), dims=(2, 3))
    mask = torch.from_numpy(_notebook_mask(0.5 * math.pi, 0.2, 8))
    x = (mask * x.abs()) * torch.exp(1j * x.angle())
    ref = torch.fft.ifft2(torch.roll(x, shifts=(4, 4), dims=(2, 3))).real
    torch.testing.assert_close(noise, ref)
    # fixed amplitude, not renormalised: twice eps gives twice the noise
    g2 = torch.Generator().manual_seed(4)
    torch.testing.assert_close(paper_frequency_noise((2, 3, 8, 8), 0.5, eps=0.6, generator=g2,
                                                     dtype=torch.float64), 2 * noise)


def test_paper_protocol_is_the_default():
    torch.manual_seed(0)
    model = MeanFree()
    x = torch.randn(12, 1, 8, 8)
    y = model(x).argmax(1)
    res = noise_robustness(model, (x, y), freqs=[0.0, 1.0], eps=0.0, seed=1, batch_size=5)
    assert res.protocol == "paper" and res.base == "sign"
    assert res.width == pytest.approx(PAPER_WIDTH)
    assert res.accuracy == [1.0, 1.0] and res.clean_accuracy == 1.0  # eps 0: no noise
    loud = noise_robustness(model, (x, y), freqs=[1.0], eps=50.0, seed=1, batch_size=5)
    assert loud.accuracy[0] < 1.0
