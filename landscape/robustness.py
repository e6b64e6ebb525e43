"""Robustness to band-limited noise (Fig. 2b): accuracy drop against noise frequency.

Noise (:func:`band_limited_noise`): draw base noise per image (``"gaussian"``: N(0, 1), or
``"sign"``: sign-Gaussian, i.e. ±1), take its 2-D DFT over (H, W), keep only the frequencies
whose normalized radius lies in ``[f - width, f + width]``, inverse DFT (real part; the mask is
symmetric so the imaginary part is round-off), and rescale every image to L2 norm ``norm``
(over C, H, W) in the model's (normalized) input space.

Normalized radius (:func:`normalized_radius`), in units of π: with ``ω_y = 2π fftfreq(H)``,
``ω_x = 2π fftfreq(W)`` (each in [-π, π)), ``r = sqrt(ω_y² + ω_x²) / (√2 π)`` lies in [0, 1];
the diagonal frequency ``(ω, ω)`` has ``r = ω / π``, the same axis as the Fourier analysis.
Frequencies ``f`` and half-widths are given in units of π.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .fourier import _eval_mode, _image_batches, _model_device, data_description
from .provenance import JsonResult


def normalized_radius(h: int, w: int) -> torch.Tensor:
    """(H, W) radius of each DFT bin in units of π, ``sqrt(ωy² + ωx²) / (√2 π)`` in [0, 1]."""
    wy = 2 * torch.fft.fftfreq(h, dtype=torch.float64)  # ω / π
    wx = 2 * torch.fft.fftfreq(w, dtype=torch.float64)
    return torch.sqrt(wy[:, None] ** 2 + wx[None, :] ** 2) / math.sqrt(2.0)


def band_mask(h: int, w: int, f: float, width: float) -> torch.Tensor:
    """Boolean (H, W) mask (unshifted DFT layout) of bins with ``|r - f| <= width`` (units of π)."""
    r = normalized_radius(h, w)
    return (r - f).abs() <= width + 1e-12


def band_limited_noise(shape: Sequence[int], f: float, width: float, norm: float,
                       generator: Optional[torch.Generator] = None, base: str = "gaussian",
                       dtype: torch.dtype = torch.float32,
                       device: Optional[torch.device] = None) -> torch.Tensor:
    """Noise of ``shape`` (B, C, H, W) whose spectrum is confined to the band around ``f``
    (half-width ``width``, units of π), each image scaled to L2 norm ``norm``."""
    if len(shape) != 4:
        raise ValueError(f"shape must be (B, C, H, W), got {tuple(shape)}")
    b, c, h, w = shape
    mask = band_mask(h, w, f, width)
    if not bool(mask.any()):
        raise ValueError(f"no frequency of a {h}x{w} grid lies within {f} ± {width} (units of pi)")
    z = torch.randn(tuple(shape), generator=generator, dtype=torch.float64)
    if base == "sign":
        z = torch.sign(z)
    elif base != "gaussian":
        raise ValueError(f"base must be 'gaussian' or 'sign', not {base!r}")
    spec = torch.fft.fft2(z) * mask
    noise = torch.fft.ifft2(spec).real
    norms = noise.flatten(1).norm(dim=1)
    if bool((norms == 0).any()):
        raise ValueError("band-limited noise vanished for some image (band too narrow)")
    noise = noise * (norm / norms).view(-1, 1, 1, 1)
    return noise.to(dtype=dtype, device=device)


@dataclass
class RobustnessResult(JsonResult):
    """Accuracy on clean and noisy images for each noise frequency."""

    KIND = "robustness"
    DERIVED = ("drop",)

    freqs: list[float]  # units of pi
    accuracy: list[float]
    loss: list[float]
    clean_accuracy: float
    clean_loss: float
    width: float
    norm: float
    base: str
    n_images: int
    config: dict[str, Any] = field(default_factory=dict)
    seed: Optional[int] = None
    metadata: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def drop(self) -> np.ndarray:
        """Accuracy drop (clean - noisy) per frequency, in accuracy units (0..1)."""
        return self.clean_accuracy - np.asarray(self.accuracy)


def noise_robustness(model: nn.Module, data: Any, freqs: Sequence[float] = tuple(np.linspace(0, 1, 11)),
                     width: float = 0.05, norm: float = 1.0, seed: int = 0,
                     base: str = "gaussian", samples: Optional[int] = None,
                     batch_size: int = 256, device: Optional[torch.device] = None,
                     progress: bool = False, label: str = "") -> RobustnessResult:
    """Accuracy under band-limited noise at each frequency (units of π); seeded per frequency
    (generator seed ``seed + 1000003 * i`` for the i-th frequency, drawn batch after batch)."""
    from tqdm import tqdm
    dev = _model_device(model, device)
    n = _image_batches(data, samples, batch_size)[1]
    if getattr(data, "labels", None) is None and not isinstance(data, (tuple, list)):
        raise ValueError("robustness needs labels")
    freqs = [float(f) for f in freqs]
    correct = np.zeros(len(freqs) + 1)
    loss = np.zeros(len(freqs) + 1)
    gens = [torch.Generator().manual_seed(int(seed) + 1000003 * i) for i in range(len(freqs))]
    with _eval_mode(model), torch.no_grad(), \
            tqdm(total=n * (len(freqs) + 1), desc="robustness", unit="img",
                 disable=not progress) as bar:
        it, _ = _image_batches(data, samples, batch_size)
        for x, y in it:
            x, y = x.to(dev), y.to(dev)
            for j in range(len(freqs) + 1):
                xin = x
                if j > 0:
                    xin = x + band_limited_noise(x.shape, freqs[j - 1], width, norm,
                                                 gens[j - 1], base, x.dtype, dev)
                logits = model(xin)
                correct[j] += float((logits.argmax(1) == y).sum())
                loss[j] += float(F.cross_entropy(logits.float(), y, reduction="sum"))
                bar.update(len(x))
    acc, loss = correct / n, loss / n
    from .provenance import run_metadata
    cfg = {"analysis": "robustness", "freqs": freqs, "width": width, "norm": norm, "base": base,
           "samples": samples, "batch_size": batch_size, "seed": seed,
           "data": data_description(data),
           "noise": "FFT of base noise masked to |r - f| <= width (r = |omega| / (sqrt2 pi)), "
                    "inverse FFT, per-image L2 norm = norm, added to the normalized input"}
    return RobustnessResult(freqs, acc[1:].tolist(), loss[1:].tolist(), float(acc[0]),
                            float(loss[0]), width, norm, base, n, cfg, seed, run_metadata(), label)
