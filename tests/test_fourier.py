"""Fourier analysis: closed-form signals and fixed filters with known transfer functions."""
import math

import landscape_models as models
import numpy as np
import pytest
import torch
import torch.nn as nn
from cases import Chain, DepthwiseCircular

from landscape.features.fourier import (
    FourierResult,
    diagonal,
    diagonal_frequencies,
    fourier_analysis,
    frequency_label,
    log_amplitude,
    relative_log_amplitude,
)

torch.set_num_threads(1)


def transfer_1d(k1d, w):
    """|sum_j k_j exp(-i w j)| for a symmetric 3-tap kernel centred at 0."""
    a, b, c = k1d
    return abs(b + (a + c) * np.cos(w)) if a == c else None


def test_diagonal_frequencies_even_and_odd():
    # the paper notebook: shift(latent).diag()[int(h/2):] -> k = 0 .. n-1-n//2
    assert np.allclose(diagonal_frequencies(8), [0, 0.25, 0.5, 0.75])
    assert np.allclose(diagonal_frequencies(7), [0, 2 / 7, 4 / 7, 6 / 7])
    assert np.allclose(diagonal_frequencies(4), [0, 0.5])
    assert np.allclose(diagonal_frequencies(8, "nyquist"), [0, 0.25, 0.5, 0.75, 1.0])
    assert np.allclose(diagonal_frequencies(7, "nyquist"), [0, 2 / 7, 4 / 7, 6 / 7])
    with pytest.raises(ValueError):
        diagonal_frequencies(8, "pi")


def test_diagonal_matches_the_notebook_indexing():
    for n in (4, 7, 8):
        x = torch.randn(2, 3, n, n, dtype=torch.float64)
        f = torch.log(torch.fft.fft2(x).abs() + 1e-6)                  # notebook fourier()
        f = torch.roll(f, shifts=(int(n / 2), int(n / 2)), dims=(2, 3))  # notebook shift()
        nb = f.mean(dim=(0, 1)).diag()[int(n / 2):]
        nb = (nb - nb[0]).numpy()
        spec = torch.fft.fftshift(log_amplitude(x).mean(dim=(0, 1))).numpy()
        np.testing.assert_allclose(relative_log_amplitude(spec)[1], nb, atol=1e-12)


def test_frequency_labels_are_exact():
    assert [frequency_label(k, 7) for k in range(4)] == ["0", "2π/7", "4π/7", "6π/7"]
    assert [frequency_label(k, 8) for k in range(5)] == ["0", "π/4", "π/2", "3π/4", "π"]
    assert frequency_label(1, 4) == "π/2"


@pytest.mark.parametrize("n", [7, 8])
def test_single_diagonal_frequency_is_found(n):
    # cos(2*pi*k*(h+w)/n): amplitude n^2/2 at (k, k) and (-k, -k), zero elsewhere
    k = 2
    h = torch.arange(n, dtype=torch.float64)
    x = torch.cos(2 * math.pi * k * (h[:, None] + h[None, :]) / n)[None, None]
    spec = torch.fft.fftshift(log_amplitude(x, eps=1e-12)[0, 0]).numpy()
    d = diagonal(spec)
    assert d[k] == pytest.approx(math.log(n * n / 2), abs=1e-9)
    others = np.delete(d, k)
    assert np.all(others < math.log(1e-6))


def test_nyquist_checkerboard_is_the_last_diagonal_point():
    n = 8
    h = torch.arange(n)
    x = ((-1.0) ** (h[:, None] + h[None, :])).to(torch.float64)[None, None]
    spec = torch.fft.fftshift(log_amplitude(x, eps=0.0)[0, 0]).numpy()
    fr, _ = relative_log_amplitude(np.where(np.isfinite(spec), spec, -50.0), "nyquist")
    d = diagonal(spec, "nyquist")
    assert diagonal(spec)[-1] < 0  # the paper's read-out stops at 3π/4 and misses it
    assert fr[-1] == 1.0
    assert d[-1] == pytest.approx(math.log(n * n), abs=1e-9)
    assert spec[0, 0] == pytest.approx(math.log(n * n), abs=1e-9)  # fftshift puts Nyquist at 0


def _run(model, mapping, x, **kw):
    bl = models.named_blocks(model, mapping)
    return fourier_analysis(model, x, block_list=bl, **kw)


def test_identity_block_gives_zero_change():
    torch.manual_seed(0)
    model = Chain(nn.Identity())
    x = torch.randn(6, 3, 8, 8)
    res = _run(model, {"layers.0": "conv"}, x)
    assert res.names == ["input", "layers.0"]
    np.testing.assert_allclose(res.spectra[1], res.spectra[0], atol=1e-12)
    assert res.high_frequency[1] - res.high_frequency[0] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(res.curve(1)[1], res.curve(0)[1], atol=1e-12)
    assert res.changes()[0]["change"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n", [8, 7])
@pytest.mark.parametrize("k1d,sign", [([1 / 8, 6 / 8, 1 / 8], -1), ([-1 / 4, 6 / 4, -1 / 4], +1)])
def test_fixed_filter_shifts_curve_by_its_transfer_function(n, k1d, sign):
    torch.manual_seed(1)
    model = Chain(DepthwiseCircular(2, k1d))
    x = torch.randn(5, 2, n, n, dtype=torch.float64)
    res = _run(model, {"layers.0": "conv"}, x, eps=0.0, batch_size=2, readout="nyquist")
    fr, d_in = res.curve(0)
    _, d_out = res.curve(1)
    w = np.pi * fr
    h = np.array([transfer_1d(k1d, wi) for wi in w]) ** 2  # H(w, w) = h(w)^2
    predicted = np.log(h) - np.log(h[0])
    np.testing.assert_allclose(d_out - d_in, predicted, atol=1e-10)
    change = res.high_frequency[1] - res.high_frequency[0]
    assert np.sign(change) == sign
    if n % 2 == 0:  # exactly pi: blur [1,6,1]/8 -> log(1/4); sharpen [-1,6,-1]/4 -> log 4
        assert change == pytest.approx(math.log(0.25) if sign < 0 else math.log(4.0), abs=1e-10)


def test_streaming_matches_one_batch_and_tokens_drop_cls(tmp_path):
    torch.manual_seed(2)

    class Tok(nn.Module):  # (B, C, H, W) -> (B, 1 + HW, C) with a class token
        def forward(self, x):
            t = x.flatten(2).transpose(1, 2)
            return torch.cat([torch.full_like(t[:, :1], 100.0), t], 1)

    class Head(nn.Module):
        def forward(self, t):
            return t.mean(1)

    model = Chain(Tok(), Head())
    x = torch.randn(10, 3, 6, 6)
    bl = models.named_blocks(model, {"layers.0": "embed", "layers.1": "head"})
    one = fourier_analysis(model, x, block_list=bl, batch_size=10)
    many = fourier_analysis(model, x, block_list=bl, batch_size=3)
    assert one.n_images == many.n_images == 10
    assert one.skipped == ["layers.1"]
    np.testing.assert_allclose(one.spectra[1], many.spectra[1], atol=1e-12)
    np.testing.assert_allclose(one.spectra[1], one.spectra[0], atol=1e-12)  # cls dropped
    sub = fourier_analysis(model, x, block_list=bl, samples=4)
    assert sub.n_images == 4
    p = one.save(tmp_path / "f.h5")
    back = FourierResult.load(p)
    assert back.names == one.names and back.kinds == ["input", "embed"]
    np.testing.assert_allclose(back.spectra[1], one.spectra[1])
    assert back.n_images == 10 and "versions" in back.metadata
    assert back.readout == "paper" and back.high_frequency_labels == ["2π/3", "2π/3"]
    np.testing.assert_allclose(back.per_image[1], one.per_image[1])


def test_per_image_values_average_to_the_mean_curve():
    torch.manual_seed(3)
    model = Chain(DepthwiseCircular(2, [1 / 8, 6 / 8, 1 / 8]))
    x = torch.randn(7, 2, 7, 7, dtype=torch.float64)
    res = _run(model, {"layers.0": "conv"}, x, batch_size=3)
    assert [len(p) for p in res.per_image] == [7, 7]
    np.testing.assert_allclose([p.mean() for p in res.per_image], res.high_frequency, atol=1e-5)
    assert res.high_frequency_labels == ["6π/7", "6π/7"]


def test_eval_mode_used_and_restored():
    model = Chain(nn.Dropout(0.9))
    model.train()
    x = torch.randn(4, 1, 4, 4)
    res = _run(model, {"layers.0": "conv"}, x)
    np.testing.assert_allclose(res.spectra[1], res.spectra[0], atol=1e-12)  # dropout off
    assert model.training and model.layers[0].training


def test_cli_smoke_on_a_registry_model(tmp_path):
    from landscape.cli import main
    from landscape.features.fourier import FourierResult
    from landscape.features.variance import VarianceResult
    from landscape.loading import checkpoint
    torch.manual_seed(0)
    m = models.create("vit_tiny", num_classes=10, in_chans=1, img_size=28)
    ck = checkpoint.save(tmp_path / "vit.pt", m, dataset="fashion-mnist", seed=0, epoch=0)
    out = tmp_path / "out"
    for cmd in ("fourier", "variance"):
        assert main([cmd, str(ck), "--samples", "8", "--batch-size", "4", "--device", "cpu",
                     "--out", str(out), "--quiet"]) == 0
    f = FourierResult.load(out / "fourier_vit.h5")
    v = VarianceResult.load(out / "variance_vit.json")
    assert f.n_images == v.n_images == 8
    assert f.kinds[:3] == ["input", "embed", "msa"] and "head" in f.skipped
    assert f.config["identity"]["checkpoint_sha256"] == f.config["checkpoint"]["sha256"]
    assert (out / "fourier_high_frequency.png").exists() and (out / "variance.pdf").exists()
