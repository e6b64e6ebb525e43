"""Figures of Hessian results, drawn from the raw files only (no recomputation).

- :func:`plot_spectrum`: density of the max-eigenvalue spectra (the paper's Fig. 1/4/6/7/12) from
  one or more spectrum HDF5 files, with the negative share and mean positive value in the legend.
- :func:`plot_slq_density`: SLQ spectral density from a density HDF5 file.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

from .figure import FigureFiles, PathLike, legend_outside, new_figure, save


def _kde(values: np.ndarray, grid: np.ndarray, bw: float | None) -> tuple[np.ndarray, float]:
    v = values[np.isfinite(values)]
    if bw is None:  # Silverman's rule of thumb
        s = v.std() if v.size > 1 else 1.0
        bw = 1.06 * (s if s > 0 else 1.0) * max(v.size, 1) ** (-1 / 5)
    d = np.exp(-0.5 * ((grid[:, None] - v[None, :]) / bw) ** 2).sum(1)
    return d / (v.size * bw * np.sqrt(2 * np.pi)), float(bw)


def plot_spectrum(files: Sequence[PathLike], out: PathLike, labels: Sequence[str] | None = None,
                  bandwidth: float | None = None, log: bool = True) -> FigureFiles:
    """Density of all top-k eigenvalues in each spectrum file (Gaussian KDE, Silverman bandwidth
    unless given), log-scaled y as in the paper; writes ``out``.png/.pdf."""
    from ...curvature.spectrum import SpectrumResult
    results = [SpectrumResult.load(f) for f in files]
    labels = list(labels) if labels else [Path(f).parent.name or Path(f).stem for f in files]
    allv = np.concatenate([r.values() for r in results]) if results else np.zeros(1)
    lo, hi = float(np.nanmin(allv)), float(np.nanmax(allv))
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    grid = np.linspace(lo - pad, hi + pad, 600)
    fig = new_figure((5.6, 3.4))
    ax = fig.subplots()
    colors = matplotlib.colormaps["tab10"].colors
    peak = 0.0
    for i, (r, lab) in enumerate(zip(results, labels, strict=False)):
        v = r.values()
        s = r.summary()
        d, _ = _kde(v, grid, bandwidth)
        peak = max(peak, float(np.nanmax(d)) if d.size else 0.0)
        ax.plot(grid, d, color=colors[i % len(colors)], ls=("-", "--", ":")[i // 10 % 3],
                label=f"{lab} (neg {100 * s['negative_share']:.1f}%, "
                      f"mean+ {s['mean_positive']:.3g})")
    ax.axvline(0, color="0.6", lw=0.8, ls="--")
    if log and peak > 0:
        ax.set_yscale("log")
        ax.set_ylim(peak * 1e-4, peak * 3)  # four decades below the highest peak
    k = results[0].config.get("k") if results else "k"
    bs = results[0].config.get("batch_size") if results else "?"
    ax.set_xlabel(f"top-{k} Hessian eigenvalues per mini-batch of {bs}")
    ax.set_ylabel("density")
    ax.set_title("Hessian max-eigenvalue spectra", fontsize=9)
    legend_outside(ax)
    return save(fig, out)


def plot_slq_density(file: PathLike, out: PathLike, log: bool = True,
                     title: str = "") -> FigureFiles:
    """The SLQ density (and its Gaussian width) from a density HDF5 file; ``title`` names the
    model."""
    from ...curvature import DensityResult
    d = DensityResult.load(file)
    fig = new_figure((5, 3.2))
    ax = fig.subplots()
    ax.plot(d.grid, np.maximum(d.density, 1e-12))
    if log:
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(1e-8, float(d.density.max()) * 1e-7))
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel(f"density (SLQ, sigma={d.sigma:.2g})")
    ax.set_title(f"{title + ': ' if title else ''}Hessian eigenvalue density (SLQ)", fontsize=9)
    return save(fig, out)
