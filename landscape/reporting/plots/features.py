"""Figures for the feature-map analyses, drawn from saved result files (or loaded objects) only.

Every function takes results (objects or paths), an output stem (``.png`` and ``.pdf`` are
written) and returns the written paths.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.colors import Normalize

from ...errors import LandscapeError
from .figure import (
    FigureFiles,
    PathLike,
    legend_outside,
    new_figure,
    panel_grid,
    result_labels,
    save,
)

KIND_COLORS = {"input": "#000000", "embed": "#555555", "conv": "#1f77b4", "msa": "#d62728",
               "mlp": "#7f7f7f", "pool": "#2ca02c", "head": "#9467bd"}
KIND_MARKERS = {"input": "*", "embed": "s", "conv": "o", "msa": "D", "mlp": ".", "pool": "v",
                "head": "x"}


def _load(obj: Any, cls_name: str) -> Any:
    if not isinstance(obj, (str, Path)):
        return obj
    if cls_name == "fourier":
        from ...features.fourier import FourierResult
        return FourierResult.load(obj)
    if cls_name == "variance":
        from ...features.variance import VarianceResult
        return VarianceResult.load(obj)
    if cls_name == "robustness":
        from ...features.robustness import RobustnessResult
        return RobustnessResult.load(obj)
    if cls_name == "cka":
        from ...features.similarity import CKAResult
        return CKAResult.load(obj)
    if cls_name == "lesion":
        from ...features.lesion import LesionResult
        return LesionResult.load(obj)
    raise LandscapeError(cls_name)


def _shade_msa(ax: Any, depth: Sequence[float], kinds: Sequence[str]) -> None:
    """Grey bands over MSA blocks (half a step either side of each MSA block's depth)."""
    d = np.asarray(depth, dtype=float)
    step = np.min(np.diff(np.unique(d))) if len(np.unique(d)) > 1 else 0.1
    for di, k in zip(d, kinds, strict=False):
        if k == "msa":
            ax.axvspan(di - step / 2, di + step / 2, color="0.85", zorder=0, lw=0)


def _by_kind(ax: Any, x: Sequence[float], y: Sequence[float], kinds: Sequence[str],
             color: str | None = None, label: str = "") -> None:
    ax.plot(x, y, "-", color=color or "0.3", lw=1, zorder=1, label=label or None)
    for xi, yi, k in zip(x, y, kinds, strict=False):
        ax.scatter([xi], [yi], marker=KIND_MARKERS.get(k, "o"), color=KIND_COLORS.get(k, "k"),
                   s=28, zorder=2)


def _kind_legend(ax: Any, kinds: Sequence[str]) -> None:
    """Marker legend of the block kinds, outside the axes (never over the data)."""
    from matplotlib.lines import Line2D
    seen = [k for k in KIND_COLORS if k in set(kinds)]
    handles = [Line2D([], [], ls="", marker=KIND_MARKERS[k], color=KIND_COLORS[k], label=k)
               for k in seen]
    extra = [h for h in ax.get_legend_handles_labels()[0]]
    legend_outside(ax, handles=handles + extra)


def _depth_panels(results: Sequence[Any], labels: Sequence[str], ylabel: str,
                  xlabel: str = "normalized depth") -> tuple[Any, list[Any]]:
    """One panel per model in rows of three (readable at page width), shared y label."""
    fig, axes = panel_grid(len(results), (4.4, 3.0))
    for ax, r, lab in zip(axes, results, labels, strict=False):
        ax.set_title(f"{lab} ({r.n_images} images)", fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    return fig, axes


def plot_fourier_curves(result: Any, stem: PathLike, title: str = "") -> FigureFiles:
    """ΔlogA(f) from 0 to π per block, coloured by depth (Fig. 2a)."""
    r = _load(result, "fourier")
    fig = new_figure((4.6, 3.4))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["plasma"]
    for i in range(len(r.names)):
        fr, d = r.curve(i)
        ls = "--" if r.kinds[i] == "input" else "-"
        ax.plot(fr, d, ls, color=cmap(r.depth[i]), lw=1)
    sm = matplotlib.cm.ScalarMappable(cmap=cmap, norm=Normalize(0, 1))
    fig.colorbar(sm, ax=ax, label="normalized depth")
    ax.set_xlabel("frequency (×π, along the diagonal)")
    ax.set_ylabel("Δ log amplitude")
    ax.set_title(title or f"relative log amplitude ({r.n_images} images)", fontsize=9)
    return save(fig, stem)


def grid_segments(grids: Sequence[int]) -> list[list[int]]:
    """Runs of consecutive entries on the same grid (a resolution change starts a new run)."""
    segs: list[list[int]] = []
    for i, g in enumerate(grids):
        if segs and grids[segs[-1][-1]] == g:
            segs[-1].append(i)
        else:
            segs.append([i])
    return segs


def plot_high_frequency(results: Sequence[Any], stem: PathLike,
                        labels: Sequence[str] | None = None,
                        min_freq: float | None = None) -> FigureFiles:
    """ΔlogA at the high read-out frequency per block vs normalized depth, MSA shaded (the paper
    notebook's Fig. 2a/8 style): one line per resolution segment, never across a grid change (the
    read-out frequency changes there), each segment labelled with its map size and frequency;
    segments read below ``min_freq`` π (default: the claims' ``FOURIER_MIN_FREQ``, 3π/4; e.g.
    π/2 on a 4×4 map: no high frequency) are dashed and grey. The y label names the frequency."""
    from ...claims.features import FOURIER_MIN_FREQ
    min_freq = FOURIER_MIN_FREQ if min_freq is None else min_freq
    rs = [_load(r, "fourier") for r in results]
    labels = result_labels(rs, labels)
    freqs = sorted({lab for r in rs for lab in r.high_frequency_labels})
    ylabel = (f"ΔlogA at {freqs[0]}" if len(freqs) == 1 else
              "ΔlogA at each map's highest diagonal frequency")
    fig, axes = _depth_panels(rs, labels, ylabel)
    for ax, r in zip(axes, rs, strict=False):
        _shade_msa(ax, r.depth, r.kinds)
        grids = [r.grid(i) for i in range(len(r.names))]
        at, hf, flab = r.high_frequency_at, r.high_frequency, r.high_frequency_labels
        for seg in grid_segments(grids):
            low = float(at[seg[0]]) < min_freq - 1e-9
            x = [r.depth[i] for i in seg]
            y = [hf[i] for i in seg]
            ax.plot(x, y, "--" if low else "-", color="0.65" if low else "0.3", lw=1, zorder=1)
            for i in seg:
                ax.scatter([r.depth[i]], [hf[i]], marker=KIND_MARKERS.get(r.kinds[i], "o"),
                           color="0.65" if low else KIND_COLORS.get(r.kinds[i], "k"), s=28,
                           zorder=2)
            n = grids[seg[0]]
            ax.annotate(f"{n}×{n}: {flab[seg[0]]}" + (" (no high freq.)" if low else ""),
                        (x[0], y[0]), textcoords="offset points", xytext=(0, 6), fontsize=6,
                        color="0.4")
        _kind_legend(ax, r.kinds)
    return save(fig, stem)


def plot_variance(results: Sequence[Any], stem: PathLike,
                  labels: Sequence[str] | None = None, log: bool = True) -> FigureFiles:
    """Mean spatial feature-map variance vs normalized depth, MSA shaded (Fig. 9)."""
    rs = [_load(r, "variance") for r in results]
    labels = result_labels(rs, labels)
    fig, axes = _depth_panels(rs, labels, "feature map variance")
    for ax, r in zip(axes, rs, strict=False):
        _shade_msa(ax, r.depth, r.kinds)
        _by_kind(ax, r.depth, r.variance, r.kinds)
        if log and min(r.variance) > 0:
            ax.set_yscale("log")
        _kind_legend(ax, r.kinds)
    return save(fig, stem)


def plot_robustness(results: Sequence[Any], stem: PathLike,
                    labels: Sequence[str] | None = None) -> FigureFiles:
    """Accuracy drop (percentage points) vs noise frequency, one line per model (Fig. 2b)."""
    rs = [_load(r, "robustness") for r in results]
    labels = result_labels(rs, labels)
    fig = new_figure((5.6, 3.4))
    ax = fig.subplots()
    for r, lab in zip(rs, labels, strict=False):
        ax.plot(r.freqs, 100 * r.drop, "o-", ms=3, label=lab)
    ax.set_xlabel("noise frequency (×π)")
    ax.set_ylabel("accuracy drop (pp)")
    r0 = rs[0]
    ax.set_title(f"band ±{r0.width:.3g}π, L2 norm {r0.norm:.3g}, {r0.n_images} images",
                 fontsize=9)
    ax.grid(alpha=0.3)
    legend_outside(ax, fontsize=8)
    return save(fig, stem)


def plot_cka(result: Any, stem: PathLike, title: str = "") -> FigureFiles:
    """Heatmap of mini-batch CKA between block outputs (Fig. 10)."""
    r = _load(result, "cka")
    m = r.matrix
    fig = new_figure((4.4, 3.8))
    ax = fig.subplots()
    im = ax.imshow(m, origin="lower", cmap="magma", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="linear CKA")
    ax.set_xlabel("block index")
    ax.set_ylabel("block index")
    ax.set_title(title or f"mini-batch CKA ({r.estimator}, {r.n_images} images)", fontsize=9)
    return save(fig, stem)


def plot_lesion(results: Sequence[Any], stem: PathLike,
                labels: Sequence[str] | None = None) -> FigureFiles:
    """Accuracy with each residual block removed vs normalized depth (Fig. 10)."""
    rs = [_load(r, "lesion") for r in results]
    labels = result_labels(rs, labels)
    fig, axes = _depth_panels(rs, labels, "test accuracy (%)", "normalized depth of removed block")
    for ax, r in zip(axes, rs, strict=False):
        _shade_msa(ax, r.depth, r.kinds)
        _by_kind(ax, r.depth, 100 * np.asarray(r.accuracy), r.kinds)
        ax.axhline(100 * r.baseline_accuracy, color="k", ls="--", lw=0.8, label="intact")
        _kind_legend(ax, r.kinds)
    return save(fig, stem)
