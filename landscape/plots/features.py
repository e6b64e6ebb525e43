"""Figures for the feature-map analyses, drawn from saved result files (or loaded objects) only.

Every function takes results (objects or paths), an output stem (``.png`` and ``.pdf`` are
written) and returns the written paths.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

KIND_COLORS = {"input": "#000000", "embed": "#555555", "conv": "#1f77b4", "msa": "#d62728",
               "mlp": "#7f7f7f", "pool": "#2ca02c", "head": "#9467bd"}
KIND_MARKERS = {"input": "*", "embed": "s", "conv": "o", "msa": "D", "mlp": ".", "pool": "v",
                "head": "x"}
PathLike = Union[str, Path]


def _load(obj: Any, cls_name: str) -> Any:
    if not isinstance(obj, (str, Path)):
        return obj
    if cls_name == "fourier":
        from ..fourier import FourierResult
        return FourierResult.load(obj)
    if cls_name == "variance":
        from ..variance import VarianceResult
        return VarianceResult.load(obj)
    if cls_name == "robustness":
        from ..robustness import RobustnessResult
        return RobustnessResult.load(obj)
    if cls_name == "cka":
        from ..similarity import CKAResult
        return CKAResult.load(obj)
    if cls_name == "lesion":
        from ..lesion import LesionResult
        return LesionResult.load(obj)
    raise ValueError(cls_name)


def _save(fig: Any, stem: PathLike) -> list[Path]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def _shade_msa(ax: Any, depth: Sequence[float], kinds: Sequence[str]) -> None:
    """Grey bands over MSA blocks (half a step either side of each MSA block's depth)."""
    d = np.asarray(depth, dtype=float)
    step = np.min(np.diff(np.unique(d))) if len(np.unique(d)) > 1 else 0.1
    for di, k in zip(d, kinds):
        if k == "msa":
            ax.axvspan(di - step / 2, di + step / 2, color="0.85", zorder=0, lw=0)


def _by_kind(ax: Any, x: Sequence[float], y: Sequence[float], kinds: Sequence[str],
             color: Optional[str] = None, label: str = "") -> None:
    ax.plot(x, y, "-", color=color or "0.3", lw=1, zorder=1, label=label or None)
    for xi, yi, k in zip(x, y, kinds):
        ax.scatter([xi], [yi], marker=KIND_MARKERS.get(k, "o"), color=KIND_COLORS.get(k, "k"),
                   s=28, zorder=2)


def _kind_legend(ax: Any, kinds: Sequence[str]) -> None:
    from matplotlib.lines import Line2D
    seen = [k for k in KIND_COLORS if k in set(kinds)]
    handles = [Line2D([], [], ls="", marker=KIND_MARKERS[k], color=KIND_COLORS[k], label=k)
               for k in seen]
    ax.legend(handles=handles, fontsize=7, loc="best")


def _labels(results: Sequence[Any], labels: Optional[Sequence[str]]) -> list[str]:
    if labels:
        return list(labels)
    return [str(getattr(r, "label", "") or getattr(r, "config", {}).get("label") or f"model {i}")
            for i, r in enumerate(results)]


def plot_fourier_curves(result: Any, stem: PathLike, title: str = "") -> list[Path]:
    """ΔlogA(f) from 0 to π per block, coloured by depth (Fig. 2a)."""
    r = _load(result, "fourier")
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    cmap = plt.get_cmap("plasma")
    for i in range(len(r.names)):
        fr, d = r.curve(i)
        ls = "--" if r.kinds[i] == "input" else "-"
        ax.plot(fr, d, ls, color=cmap(r.depth[i]), lw=1)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=ax, label="normalized depth")
    ax.set_xlabel("frequency (×π, along the diagonal)")
    ax.set_ylabel("Δ log amplitude")
    ax.set_title(title or f"relative log amplitude ({r.n_images} images)", fontsize=9)
    return _save(fig, stem)


def plot_high_frequency(results: Sequence[Any], stem: PathLike,
                        labels: Optional[Sequence[str]] = None) -> list[Path]:
    """ΔlogA at the highest frequency (π) per block vs normalized depth, MSA shaded (Fig. 8)."""
    rs = [_load(r, "fourier") for r in results]
    labels = _labels(rs, labels)
    fig, axes = plt.subplots(1, len(rs), figsize=(3.6 * len(rs), 3.2), squeeze=False)
    for ax, r, lab in zip(axes[0], rs, labels):
        _shade_msa(ax, r.depth, r.kinds)
        _by_kind(ax, r.depth, r.high_frequency, r.kinds)
        ax.set_title(f"{lab} ({r.n_images} images)", fontsize=9)
        ax.set_xlabel("normalized depth")
        _kind_legend(ax, r.kinds)
    axes[0][0].set_ylabel("Δ log amplitude at π")
    return _save(fig, stem)


def plot_variance(results: Sequence[Any], stem: PathLike,
                  labels: Optional[Sequence[str]] = None, log: bool = True) -> list[Path]:
    """Mean spatial feature-map variance vs normalized depth, MSA shaded (Fig. 9)."""
    rs = [_load(r, "variance") for r in results]
    labels = _labels(rs, labels)
    fig, axes = plt.subplots(1, len(rs), figsize=(3.6 * len(rs), 3.2), squeeze=False)
    for ax, r, lab in zip(axes[0], rs, labels):
        _shade_msa(ax, r.depth, r.kinds)
        _by_kind(ax, r.depth, r.variance, r.kinds)
        if log and min(r.variance) > 0:
            ax.set_yscale("log")
        ax.set_title(f"{lab} ({r.n_images} images)", fontsize=9)
        ax.set_xlabel("normalized depth")
        _kind_legend(ax, r.kinds)
    axes[0][0].set_ylabel("feature map variance")
    return _save(fig, stem)


def plot_robustness(results: Sequence[Any], stem: PathLike,
                    labels: Optional[Sequence[str]] = None) -> list[Path]:
    """Accuracy drop (percentage points) vs noise frequency, one line per model (Fig. 2b)."""
    rs = [_load(r, "robustness") for r in results]
    labels = _labels(rs, labels)
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    for r, lab in zip(rs, labels):
        ax.plot(r.freqs, 100 * r.drop, "o-", ms=3, label=lab)
    ax.set_xlabel("noise frequency (×π)")
    ax.set_ylabel("accuracy drop (pp)")
    r0 = rs[0]
    ax.set_title(f"band ±{r0.width}π, L2 norm {r0.norm}, {r0.n_images} images", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, stem)


def plot_cka(result: Any, stem: PathLike, title: str = "") -> list[Path]:
    """Heatmap of mini-batch CKA between block outputs (Fig. 10)."""
    r = _load(result, "cka")
    m = r.matrix
    fig, ax = plt.subplots(figsize=(4.4, 3.8))
    im = ax.imshow(m, origin="lower", cmap="magma", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="linear CKA")
    ax.set_xlabel("block index")
    ax.set_ylabel("block index")
    ax.set_title(title or f"mini-batch CKA ({r.estimator}, {r.n_images} images)", fontsize=9)
    return _save(fig, stem)


def plot_lesion(results: Sequence[Any], stem: PathLike,
                labels: Optional[Sequence[str]] = None) -> list[Path]:
    """Accuracy with each residual block removed vs normalized depth (Fig. 10)."""
    rs = [_load(r, "lesion") for r in results]
    labels = _labels(rs, labels)
    fig, axes = plt.subplots(1, len(rs), figsize=(3.6 * len(rs), 3.2), squeeze=False)
    for ax, r, lab in zip(axes[0], rs, labels):
        _shade_msa(ax, r.depth, r.kinds)
        _by_kind(ax, r.depth, 100 * np.asarray(r.accuracy), r.kinds)
        ax.axhline(100 * r.baseline_accuracy, color="k", ls="--", lw=0.8, label="intact")
        ax.set_title(f"{lab} ({r.n_images} images)", fontsize=9)
        ax.set_xlabel("normalized depth of removed block")
        _kind_legend(ax, r.kinds)
    axes[0][0].set_ylabel("test accuracy (%)")
    return _save(fig, stem)
