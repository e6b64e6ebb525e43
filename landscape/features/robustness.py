"""Robustness to band-limited noise (Fig. 2b): accuracy drop against noise frequency.

Two protocols (``protocol``):

``"paper"`` (default): the paper code's ``FreqAttack`` with the ``Random`` attack
    (xxxnell/how-do-vits-work, ``ops/adversarial.py``): the perturbation ``δ = eps · sign(N(0, 1))``
    (fixed amplitude per pixel) is Fourier transformed, shifted (zero frequency at ``n // 2``),
    multiplied by a *square* band ``mask1 - mask2`` (``FreqAttack._fourier_mask``: centred squares
    of side ``2 · int((f ± s) · h / 2π)``, clipped to ``[0, h]``), shifted back, inverse
    transformed, and its real part added to the image. No renormalisation: the energy of the noise
    is that of the band. Here ``f`` and ``s`` are given in units of π (``FreqAttack`` takes
    radians; ``s = 0.2`` rad is :data:`PAPER_WIDTH` = 0.2/π), and the same rule is applied to the
    width axis with ``w`` (the paper code uses ``h`` for both; equal for square images). On an odd
    grid the square covers the offsets ``-m .. m-1`` around the centre, as on an even one (the
    paper code assumes even sizes).

``"radial"`` (option, this project's earlier default): base noise (``"gaussian"`` N(0, 1) or
    ``"sign"``), keep the DFT bins whose normalized radius lies in ``[f - width, f + width]``
    (:func:`band_mask`), inverse DFT, and rescale every image to L2 norm ``norm`` (over C, H, W).
    Normalized radius (:func:`normalized_radius`), in units of π: ``r = sqrt(ωy² + ωx²) / (√2 π)``
    in [0, 1]; the diagonal frequency ``(ω, ω)`` has ``r = ω / π``.

Both act in the model's (normalized) input space. Correctness per image and condition is kept
(``correct``) for the bootstrap in :mod:`landscape.claims`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..device import eval_mode, model_device
from ..errors import LandscapeError
from ..settings import ROBUSTNESS_PROTOCOLS, RobustnessSettings, default_of
from ..store.provenance import JsonResult
from .streaming import data_description, image_batches

# The protocols' defaults live in landscape.settings (RobustnessSettings, ROBUSTNESS_PROTOCOLS).
PROTOCOLS = tuple(ROBUSTNESS_PROTOCOLS)
PAPER_WIDTH = ROBUSTNESS_PROTOCOLS["paper"]["width"]  # FreqAttack's s = 0.2 rad, units of π
PAPER_EPS = default_of(RobustnessSettings, "eps")  # sign-noise amplitude (normalized pixels)
RADIAL_WIDTH = ROBUSTNESS_PROTOCOLS["radial"]["width"]  # radial band half-width (units of π)
RADIAL_NORM = default_of(RobustnessSettings, "norm")  # radial: L2 norm of the noise per image


def normalized_radius(h: int, w: int) -> torch.Tensor:
    """(H, W) radius of each DFT bin in units of π, ``sqrt(ωy² + ωx²) / (√2 π)`` in [0, 1]."""
    wy = 2 * torch.fft.fftfreq(h, dtype=torch.float64)  # ω / π
    wx = 2 * torch.fft.fftfreq(w, dtype=torch.float64)
    return torch.sqrt(wy[:, None] ** 2 + wx[None, :] ** 2) / math.sqrt(2.0)


def band_mask(h: int, w: int, f: float, width: float) -> torch.Tensor:
    """Boolean (H, W) mask (unshifted DFT layout) of bins with ``|r - f| <= width`` (units of π)."""
    r = normalized_radius(h, w)
    return (r - f).abs() <= width + 1e-12


def _paper_half_side(f: float, s: float, n: int) -> int:
    """``int(((f + s) * n) / (2π))`` of ``FreqAttack._fourier_mask`` with f, s in radians, as the
    half side of the centred square, clipped to ``[0, n/2]`` (``_center_mask``'s clipping)."""
    m = int(((f * math.pi + s * math.pi) * n) / (2 * math.pi))
    return min(max(m, 0), (n + 1) // 2)


def _centred_square(n: int, m: int) -> torch.Tensor:
    """(n,) boolean: offsets ``-m .. m-1`` around index ``n // 2`` (the shifted zero frequency)."""
    off = torch.arange(n) - n // 2
    return (off >= -m) & (off <= m - 1)


def paper_band_mask(h: int, w: int, f: float, s: float = PAPER_WIDTH,
                    centered: bool = False) -> torch.Tensor:
    """Boolean (H, W) square-ring mask of ``FreqAttack._fourier_mask`` for frequency ``f`` and
    half-width ``s`` (units of π): the centred square of half side ``int((f + s) n / 2)`` minus
    that of ``int((f - s) n / 2)``. ``centered`` gives the shifted layout (zero frequency at
    ``(h // 2, w // 2)``), else the unshifted DFT layout."""
    outer = _centred_square(h, _paper_half_side(f, s, h))[:, None] & \
        _centred_square(w, _paper_half_side(f, s, w))[None, :]
    inner = _centred_square(h, _paper_half_side(f, -s, h))[:, None] & \
        _centred_square(w, _paper_half_side(f, -s, w))[None, :]
    m = outer & ~inner
    return m if centered else torch.fft.ifftshift(m, dim=(-2, -1))


def paper_frequency_noise(shape: Sequence[int], f: float, s: float = PAPER_WIDTH,
                          eps: float = PAPER_EPS, generator: torch.Generator | None = None,
                          base: str = RobustnessSettings.base, dtype: torch.dtype = torch.float32,
                          device: torch.device | None = None) -> torch.Tensor:
    """``FreqAttack(Random(eps), f, s)`` noise: ``Re ifft2(mask · fft2(eps · sign(N(0, 1))))``
    for (B, C, H, W) ``shape``, f and s in units of π. May be all zeros for an empty band.
    ``base`` "" is the paper protocol's (sign)."""
    if len(shape) != 4:
        raise LandscapeError(f"shape must be (B, C, H, W), got {tuple(shape)}")
    _, _, h, w = shape
    base = base or ROBUSTNESS_PROTOCOLS["paper"]["base"]
    z = torch.randn(tuple(shape), generator=generator, dtype=torch.float64)
    if base == "sign":
        z = torch.sign(z)
    elif base != "gaussian":
        raise LandscapeError(f"base must be 'gaussian' or 'sign', not {base!r}")
    mask = paper_band_mask(h, w, f, s)
    noise = torch.fft.ifft2(torch.fft.fft2(eps * z) * mask).real
    return noise.to(dtype=dtype, device=device)


def band_limited_noise(shape: Sequence[int], f: float, width: float, norm: float,
                       generator: torch.Generator | None = None,
                       base: str = RobustnessSettings.base, dtype: torch.dtype = torch.float32,
                       device: torch.device | None = None) -> torch.Tensor:
    """Radial protocol: noise of ``shape`` (B, C, H, W) whose spectrum is confined to the band
    around ``f`` (half-width ``width``, units of π), each image scaled to L2 norm ``norm``.
    ``base`` "" is the radial protocol's (gaussian)."""
    if len(shape) != 4:
        raise LandscapeError(f"shape must be (B, C, H, W), got {tuple(shape)}")
    b, c, h, w = shape
    base = base or ROBUSTNESS_PROTOCOLS["radial"]["base"]
    mask = band_mask(h, w, f, width)
    if not bool(mask.any()):
        raise LandscapeError(f"no frequency of a {h}x{w} grid lies within {f} ± {width} "
                             "(units of pi)")
    z = torch.randn(tuple(shape), generator=generator, dtype=torch.float64)
    if base == "sign":
        z = torch.sign(z)
    elif base != "gaussian":
        raise LandscapeError(f"base must be 'gaussian' or 'sign', not {base!r}")
    spec = torch.fft.fft2(z) * mask
    noise = torch.fft.ifft2(spec).real
    norms = noise.flatten(1).norm(dim=1)
    if bool((norms == 0).any()):
        raise LandscapeError("band-limited noise vanished for some image (band too narrow)")
    noise = noise * (norm / norms).view(-1, 1, 1, 1)
    return noise.to(dtype=dtype, device=device)


def noise_description(protocol: str, base: str) -> str:
    """How the noise of ``protocol`` with base noise ``base`` is made (stored with a result)."""
    z = "sign(N(0, 1))" if base == "sign" else "N(0, 1)"
    if protocol == "paper":
        return (f"FreqAttack(Random(eps)) of ops/adversarial.py with base noise eps * {z}: square "
                "band of the shifted spectrum, sides 2*int((f +- s) n / 2) (s = width), not "
                "renormalized, real part added to the normalized input")
    return (f"FFT of base noise {z} masked to |r - f| <= width (r = |omega| / (sqrt2 pi)), "
            "inverse FFT, per-image L2 norm = norm, added to the normalized input")


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
    seed: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    protocol: str = "radial"
    eps: float | None = None
    correct: list[list[int]] = field(default_factory=list)  # [clean] + per frequency, per image

    @property
    def drop(self) -> np.ndarray:
        """Accuracy drop (clean - noisy) per frequency, in accuracy units (0..1)."""
        return self.clean_accuracy - np.asarray(self.accuracy)


def noise_robustness(model: nn.Module, data: Any,
                     freqs: int | Sequence[float] = RobustnessSettings.freqs,
                     width: float | None = RobustnessSettings.width,
                     norm: float = RobustnessSettings.norm, seed: int = 0,
                     base: str | None = RobustnessSettings.base, samples: int | None = None,
                     batch_size: int = 256, device: torch.device | None = None,
                     progress: bool = False, label: str = "",
                     protocol: str = RobustnessSettings.protocol,
                     eps: float = RobustnessSettings.eps) -> RobustnessResult:
    """Accuracy under band-limited noise at each frequency (units of π); seeded per frequency
    (generator seed ``seed + 1000003 * i`` for the i-th frequency, drawn batch after batch).
    Defaults: :class:`~landscape.settings.RobustnessSettings`' (as ``landscape robustness`` and
    ``analyze``); ``freqs`` an integer n: n frequencies evenly in [0, 1].

    ``protocol="paper"``: ``FreqAttack`` square band, half-width ``width`` (0 or None:
    :data:`PAPER_WIDTH`), noise ``eps · sign`` (``base`` "" or None: "sign"), not renormalised.
    ``protocol="radial"``: radial band of half-width ``width`` (0 or None: 0.05), ``base`` ""
    or None: "gaussian", every image's noise scaled to L2 norm ``norm``.
    """
    from tqdm import tqdm
    if protocol not in PROTOCOLS:
        raise LandscapeError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
    paper = protocol == "paper"
    width = float(width) if width else (PAPER_WIDTH if paper else RADIAL_WIDTH)
    base = base or ROBUSTNESS_PROTOCOLS[protocol]["base"]
    if isinstance(freqs, int):
        freqs = np.linspace(0, 1, freqs).tolist()
    dev = model_device(model, device)
    n = image_batches(data, samples, batch_size)[1]
    if getattr(data, "labels", None) is None and not isinstance(data, (tuple, list)):
        raise LandscapeError("robustness needs labels")
    freqs = [float(f) for f in freqs]
    correct = np.zeros(len(freqs) + 1)
    loss = np.zeros(len(freqs) + 1)
    per_image: list[list[int]] = [[] for _ in range(len(freqs) + 1)]
    gens = [torch.Generator().manual_seed(int(seed) + 1000003 * i) for i in range(len(freqs))]
    with eval_mode(model), torch.no_grad(), \
            tqdm(total=n * (len(freqs) + 1), desc="robustness", unit="img",
                 disable=not progress) as bar:
        it, _ = image_batches(data, samples, batch_size)
        for x, y in it:
            x, y = x.to(dev), y.to(dev)
            for j in range(len(freqs) + 1):
                xin = x
                if j > 0 and paper:
                    xin = x + paper_frequency_noise(x.shape, freqs[j - 1], width, eps,
                                                    gens[j - 1], base, x.dtype, dev)
                elif j > 0:
                    xin = x + band_limited_noise(x.shape, freqs[j - 1], width, norm,
                                                 gens[j - 1], base, x.dtype, dev)
                logits = model(xin)
                hit = logits.argmax(1) == y
                per_image[j].extend(int(v) for v in hit.tolist())
                correct[j] += float(hit.sum())
                loss[j] += float(F.cross_entropy(logits.float(), y, reduction="sum"))
                bar.update(len(x))
    acc, loss = correct / n, loss / n
    from ..store.provenance import run_metadata
    cfg = {"analysis": "robustness", "protocol": protocol, "freqs": freqs, "width": width,
           "norm": norm if not paper else None, "eps": eps if paper else None, "base": base,
           "samples": samples, "batch_size": batch_size, "seed": seed,
           "data": data_description(data),
           "noise": noise_description(protocol, base)}
    return RobustnessResult(freqs, acc[1:].tolist(), loss[1:].tolist(), float(acc[0]),
                            float(loss[0]), width, norm if not paper else 0.0, base, n, cfg, seed,
                            run_metadata(), label, protocol, eps if paper else None, per_image)
