"""Fourier analysis of feature maps: relative log amplitude ΔlogA(f) per block (Fig. 2a, 8).

Matches the paper's ``fourier_analysis.ipynb`` (xxxnell/how-do-vits-work; functions ``fourier``
and ``shift`` and the loop over ``latents``), over many images in eval mode: every block output
``z`` mapped to a grid (B, C, H, W) (tokens reshaped, class token dropped), ``log(|fft2(z)| +
1e-6)``, shifted so zero frequency sits at index ``n // 2`` (``torch.roll`` by ``int(h/2)``, the
same as ``fftshift``), and the *log of the amplitude* averaged over channels and images, giving
one ``(H, W)`` mean log-amplitude spectrum per block (stored centred).

Diagonal read-out (:func:`diagonal_frequencies`, ``readout``):

* ``"paper"`` (default, the notebook's ``latent.diag()[int(h/2):]``): centred indices
  ``n//2 .. n-1``, i.e. ``ω = 2πk/n`` for ``k = 0 .. n-1-n//2``. The last point is ``(n-1)π/n``
  for odd n (6π/7 on a 7x7 map) and ``(n-2)π/n`` for even n (3π/4 on 8x8): the notebook never
  reads the Nyquist bin of an even map. (Its plot labels every curve's last point "1.0π"; here
  every point carries its exact frequency, see :func:`frequency_label`.)
* ``"nyquist"`` (option): ``k = 0 .. n//2``, which ends at exactly π for even n.

``ΔlogA(ω) = logA(ω, ω) - logA(0, 0)``; the "high-frequency value" of a block is ΔlogA at the last
read-out point (the notebook's ``latent[-1]`` of Fig. 8). Because ΔlogA is linear in the
log amplitude, the mean over images of the per-image value equals the value of the mean spectrum;
the per-image values at the high frequency are kept (``per_image``) for the bootstrap in
:mod:`landscape.claims`.

Streaming: running sums of the log amplitude per block (float64), never stored feature maps.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..errors import LandscapeError
from ..store.provenance import atomic_h5
from .streaming import data_description, kept_rows, stream_block_outputs

DEFAULT_EPS = 1e-6  # the notebook's ``abs() + 1e-6`` before the log


def changes_from_previous(names: Sequence[str], kinds: Sequence[str], values: Sequence[float],
                          grids: Sequence[int]) -> list[dict[str, Any]]:
    """``value[i] - value[i-1]`` per entry with its kind, and whether both have the same grid."""
    return [{"name": names[i], "kind": kinds[i], "previous": names[i - 1],
             "value": float(values[i]), "previous_value": float(values[i - 1]),
             "change": float(values[i] - values[i - 1]), "same_grid": grids[i] == grids[i - 1]}
            for i in range(1, len(names))]


# ----------------------------------------------------------------------------- spectra
READOUTS = ("paper", "nyquist")


def log_amplitude(x: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """``log(|FFT2(x)| + eps)`` over the last two axes (not shifted)."""
    return torch.log(torch.fft.fft2(x.to(torch.float64)).abs() + eps)


def _check_readout(readout: str) -> None:
    if readout not in READOUTS:
        raise LandscapeError(f"readout must be one of {READOUTS}, not {readout!r}")


def diagonal_steps(n: int, readout: str = "paper") -> np.ndarray:
    """The diagonal bins ``k`` read (``ω = 2πk/n``): ``0 .. n-1-n//2`` ("paper") or
    ``0 .. n//2`` ("nyquist")."""
    _check_readout(readout)
    return np.arange((n - 1 - n // 2 if readout == "paper" else n // 2) + 1)


def diagonal_frequencies(n: int, readout: str = "paper") -> np.ndarray:
    """Diagonal sample frequencies in units of π: ``2k/n`` for the read-out bins ``k``."""
    return 2.0 * diagonal_steps(n, readout) / n


def frequency_label(k: int, n: int) -> str:
    """Exact frequency ``2πk/n`` as text: "0", "π", "6π/7", "3π/4", "π/2"."""
    from fractions import Fraction
    f = Fraction(2 * int(k), int(n))
    if f == 0:
        return "0"
    num = "π" if f.numerator == 1 else f"{f.numerator}π"
    return num if f.denominator == 1 else f"{num}/{f.denominator}"


def diagonal(spectrum_centered: np.ndarray, readout: str = "paper") -> np.ndarray:
    """Values of a centred (fftshift-ed) square spectrum at ``(ω, ω)``, ``ω = 2πk/n``."""
    s = np.asarray(spectrum_centered)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise LandscapeError(f"diagonal sampling needs a square spectrum, got shape {s.shape}")
    n = s.shape[0]
    idx = (n // 2 + diagonal_steps(n, readout)) % n
    return s[idx, idx]


def relative_log_amplitude(spectrum_centered: np.ndarray, readout: str = "paper"
                           ) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies in units of π, ΔlogA = logA(ω, ω) - logA(0, 0)) along the diagonal of a
    centred mean log-amplitude spectrum."""
    d = diagonal(spectrum_centered, readout)
    return diagonal_frequencies(np.asarray(spectrum_centered).shape[0], readout), d - d[0]


class LogAmplitudeAccumulator:
    """Running mean over images and channels of the log-amplitude spectrum of (B, C, H, W), and
    the per-image ΔlogA at the highest read-out diagonal frequency."""

    def __init__(self, eps: float = DEFAULT_EPS, readout: str = "paper"):
        _check_readout(readout)
        self.eps = eps
        self.readout = readout
        self.total: torch.Tensor | None = None
        self.count = 0  # images * channels
        self.images = 0
        self.per_image: list[np.ndarray] = []

    def update(self, x: torch.Tensor) -> None:
        la = log_amplitude(x, self.eps)
        s = la.sum(dim=(0, 1)).cpu()
        if self.total is None:
            self.total = s
        elif self.total.shape != s.shape:
            raise LandscapeError(f"feature map size changed from {tuple(self.total.shape)} to "
                             f"{tuple(s.shape)}")
        else:
            self.total += s
        k = int(diagonal_steps(x.shape[-1], self.readout)[-1])  # unshifted bin (k, k)
        img = la.mean(dim=1)
        self.per_image.append((img[:, k, k] - img[:, 0, 0]).cpu().numpy().astype(np.float32))
        self.count += x.shape[0] * x.shape[1]
        self.images += x.shape[0]

    def mean_centered(self) -> np.ndarray:
        """The mean log amplitude, fftshift-centred, as float64 (H, W)."""
        if self.total is None:
            raise LandscapeError("no data accumulated")
        return torch.fft.fftshift(self.total / self.count, dim=(-2, -1)).numpy()

    def high_frequency_per_image(self) -> np.ndarray:
        """ΔlogA at the highest read-out frequency, one value per image (float32)."""
        return np.concatenate(self.per_image) if self.per_image else np.zeros(0, np.float32)


# ----------------------------------------------------------------------------- result
@dataclass
class FourierResult:
    """Mean log-amplitude spectra and ΔlogA curves per entry ([input] + spatial blocks)."""

    names: list[str]
    kinds: list[str]
    stages: list[int]
    depth: list[float]
    spectra: list[np.ndarray]  # centred mean log amplitude (H, W) per entry
    n_images: int
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    readout: str = "paper"
    per_image: list[np.ndarray] = field(default_factory=list)  # high-frequency ΔlogA per image

    def curve(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(frequencies / π, ΔlogA) for entry ``i``."""
        return relative_log_amplitude(self.spectra[i], self.readout)

    def grid(self, i: int) -> int:
        """Side of entry ``i``'s square grid."""
        return int(self.spectra[i].shape[0])

    def frequency_labels(self, i: int) -> list[str]:
        """Exact frequency of every read-out point of entry ``i`` ("0", "2π/7", ..., "6π/7")."""
        n = self.grid(i)
        return [frequency_label(k, n) for k in diagonal_steps(n, self.readout)]

    @property
    def high_frequency(self) -> np.ndarray:
        """ΔlogA at the highest read-out diagonal frequency per entry."""
        return np.array([self.curve(i)[1][-1] for i in range(len(self.names))])

    @property
    def high_frequency_at(self) -> np.ndarray:
        """The frequency (units of π) at which :attr:`high_frequency` is read, per entry."""
        return np.array([self.curve(i)[0][-1] for i in range(len(self.names))])

    @property
    def high_frequency_labels(self) -> list[str]:
        """The exact read-out frequency of :attr:`high_frequency` per entry, e.g. "6π/7"."""
        return [self.frequency_labels(i)[-1] for i in range(len(self.names))]

    def changes(self) -> list[dict[str, Any]]:
        """Per entry after the first: change of the high-frequency ΔlogA from the previous entry
        (``same_grid`` False where the resolution changed, so the two are not comparable)."""
        return changes_from_previous(self.names, self.kinds, self.high_frequency,
                                     [s.shape[0] for s in self.spectra])

    def save(self, path: str | Path) -> Path:
        """Write HDF5: one group per entry (spectrum, freqs, delta, per-image value) + attrs."""
        path = Path(path)
        with atomic_h5(path, seal=True) as f:
            f.attrs["kind"] = "fourier"
            f.attrs["n_images"] = self.n_images
            f.attrs["seed"] = -1 if self.seed is None else self.seed
            f.attrs["config"] = json.dumps(self.config)
            f.attrs["metadata"] = json.dumps(self.metadata, default=str)
            f.attrs["skipped"] = json.dumps(self.skipped)
            f.attrs["readout"] = self.readout
            f.create_dataset("depth", data=np.asarray(self.depth, dtype=np.float64))
            f.create_dataset("high_frequency", data=self.high_frequency)
            f.create_dataset("high_frequency_at", data=self.high_frequency_at)
            for i, name in enumerate(self.names):
                g = f.create_group(f"entries/{i:03d}")
                g.attrs["name"] = name
                g.attrs["kind"] = self.kinds[i]
                g.attrs["stage"] = self.stages[i]
                g.attrs["freq_labels"] = json.dumps(self.frequency_labels(i))
                g.create_dataset("spectrum", data=self.spectra[i])
                fr, de = self.curve(i)
                g.create_dataset("freqs", data=fr)
                g.create_dataset("delta", data=de)
                if i < len(self.per_image):
                    g.create_dataset("per_image", data=np.asarray(self.per_image[i], np.float32))
        return path

    @classmethod
    def load(cls, path: str | Path) -> FourierResult:
        import h5py

        from ..store.checksums import verify_h5
        with h5py.File(path, "r") as f:
            if f.attrs.get("kind") != "fourier":
                raise LandscapeError(f"{path} is not a Fourier result")
            verify_h5(f, path)
            keys = sorted(f["entries"].keys())
            ents = [f["entries"][k] for k in keys]
            seed = int(f.attrs["seed"])
            per = [np.asarray(g["per_image"][()]) for g in ents if "per_image" in g]
            return cls(names=[str(g.attrs["name"]) for g in ents],
                       kinds=[str(g.attrs["kind"]) for g in ents],
                       stages=[int(g.attrs["stage"]) for g in ents],
                       depth=[float(v) for v in f["depth"][()]],
                       spectra=[np.asarray(g["spectrum"][()]) for g in ents],
                       n_images=int(f.attrs["n_images"]),
                       config=json.loads(f.attrs["config"]),
                       seed=None if seed < 0 else seed,
                       metadata=json.loads(f.attrs["metadata"]),
                       skipped=json.loads(f.attrs["skipped"]),
                       readout=str(f.attrs.get("readout", "nyquist")),
                       per_image=per if len(per) == len(ents) else [])


def _spatial(out: torch.Tensor, tokens: str | None) -> torch.Tensor | None:
    """Block output as (B, C, H, W), or None if it has no spatial layout (pooled, logits)."""
    import landscape_models as models
    if out.dim() not in (3, 4):
        return None
    try:
        return models.to_grid(out, tokens)
    except ValueError:
        return None


def fourier_analysis(model: nn.Module, data: Any, block_list: Sequence | None = None,
                     samples: int | None = None, batch_size: int = 128,
                     device: torch.device | None = None, eps: float = DEFAULT_EPS,
                     include_input: bool = True, progress: bool = False,
                     readout: str = "paper") -> FourierResult:
    """Mean log-amplitude spectrum per block output (and the input), over ``samples`` images,
    and the per-image high-frequency ΔlogA (``readout`` "paper" or "nyquist").

    Blocks whose output has no square spatial layout (pooled features, logits) are skipped and
    listed in ``result.skipped``. Depth is ``j / L`` over ``[input] + block list``.
    """
    import landscape_models as models
    _check_readout(readout)
    bl = models.blocks(model) if block_list is None else list(block_list)
    accs = {b.name: LogAmplitudeAccumulator(eps, readout) for b in bl}
    inp = LogAmplitudeAccumulator(eps, readout)
    skipped: set[str] = set()
    n = 0
    for x, _y, outs in stream_block_outputs(model, data, bl, samples, batch_size, device,
                                            progress, desc="fourier"):
        n += x.shape[0]
        if include_input:
            inp.update(x)
        for b in bl:
            if b.name in skipped:
                continue
            if b.refused is not None:  # stream not observable: never read at the branch
                skipped.add(b.name)
                continue
            if b.name not in outs:
                raise LandscapeError(f"block {b.name!r} produced no output in the forward pass")
            g = _spatial(outs[b.name], b.tokens)
            if g is None or g.shape[-1] != g.shape[-2]:
                skipped.add(b.name)
                continue
            accs[b.name].update(g)
    rows = kept_rows(bl, skipped, include_input)
    src = {**accs, "input": inp}
    names, kinds, stages, dep = ([r[j] for r in rows] for j in range(4))
    spectra = [src[name].mean_centered() for name in names]
    per = [src[name].high_frequency_per_image() for name in names]
    from ..store.provenance import run_metadata
    cfg = {"analysis": "fourier", "eps": eps, "samples": samples, "batch_size": batch_size,
           "include_input": include_input, "data": data_description(data), "readout": readout,
           "quantity": "mean over images and channels of log(|fft2(z)| + eps), fftshift-centred",
           "diagonal": ("(w, w), w = 2*pi*k/n, k = 0..n-1-n//2 (paper notebook: "
                        "diag()[int(h/2):])" if readout == "paper" else
                        "(w, w), w = 2*pi*k/n, k = 0..n//2 (up to Nyquist)")}
    return FourierResult(names, kinds, stages, dep, spectra, n, cfg, None, run_metadata(),
                         [b.name for b in bl if b.name in skipped], readout, per)
