"""Figures of the AlterNet build-up and of the data-size / locality studies, from raw JSON only.

* :func:`plot_buildup`: validation accuracy and NLL of every candidate of an AlterNet search
  (``search.json``) over the build-up sequence, like the paper's Fig. 12 (left); accepted steps
  are filled and joined, rejected (reverted) steps are hollow; error bars = seed spread (std).
* :func:`plot_comparison`: held-out accuracy / NLL of the final AlterNet, the baseline CNN and the
  other models (``comparison.json``), mean +- std over seeds.
* :func:`plot_spectra`: Hessian max-eigenvalue spectra (histograms, log density) of a study file
  (``data_size.json`` for Fig. 4, ``locality.json`` for Fig. 7), one panel per model, one colour
  per setting; :func:`plot_locality` adds error and NLL per window.

PNG and PDF for every figure.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from ...errors import LandscapeError
from .figure import FigureFiles, PathLike, legend_outside, new_figure, panel_grid, save


def _read(path: PathLike) -> Any:
    return json.loads(Path(path).read_text())


def plot_buildup(log_path: PathLike, out_stem: PathLike) -> FigureFiles:
    """Accuracy and NLL over the candidates of an AlterNet search log (Fig. 12 left)."""
    log = _read(log_path)
    cands = log["candidates"]
    if not cands:
        raise LandscapeError(f"{log_path} holds no finished candidate yet")
    x = np.arange(len(cands))
    acc = np.array([c["acc_mean"] for c in cands]) * 100
    acc_e = np.array([c["acc_spread"]["std"] for c in cands]) * 100
    nll = np.array([c["nll_mean"] for c in cands])
    nll_e = np.array([c["nll_spread"]["std"] for c in cands])
    ok = np.array([bool(c["accepted"]) for c in cands])
    labels = [c["pattern"] for c in cands]
    fig = new_figure((max(5.0, 0.9 * len(cands) + 2), 5.5))
    axes = fig.subplots(2, 1, sharex=True)
    for ax, y, e, name, col in ((axes[0], acc, acc_e, "val. accuracy (%)", "tab:blue"),
                                (axes[1], nll, nll_e, "val. NLL", "tab:red")):
        ax.errorbar(x[ok], y[ok], yerr=e[ok], fmt="o-", color=col, capsize=3, label="accepted")
        if (~ok).any():
            ax.errorbar(x[~ok], y[~ok], yerr=e[~ok], fmt="o", mfc="white", color=col, capsize=3,
                        label="rejected (reverted)")
            for i in np.flatnonzero(~ok):
                p = cands[i].get("parent")
                if p is not None:
                    ax.plot([p, i], [y[p], y[i]], ":", color=col, lw=0.8)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    axes[1].set_xticks(x)
    axes[1].set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    axes[1].set_xlabel("candidate (stage pattern, C = conv, M = MSA)")
    metric = log.get("search", {}).get("metric", "nll")
    final = (log.get("final") or {}).get("pattern", "(unfinished)")
    n_seeds = len(log.get("search", {}).get("seeds", []))
    axes[0].set_title(f"AlterNet build-up (metric: val. {metric}, {n_seeds} seed(s)); "
                      f"final {final}", fontsize=9)
    return save(fig, out_stem)


def plot_comparison(path: PathLike, out_stem: PathLike) -> FigureFiles:
    """Held-out accuracy and NLL per model (mean +- std over seeds)."""
    doc = _read(path)
    items = list(doc["models"].items())
    labels = [k for k, _ in items]
    fig = new_figure((max(6.0, 1.6 * len(items) + 3), 3.2))
    axes = fig.subplots(1, 2)
    for ax, key, scale, name in ((axes[0], "test_acc_spread", 100, "test accuracy (%)"),
                                 (axes[1], "test_nll_spread", 1, "test NLL")):
        m = [v[key]["mean"] * scale for _, v in items]
        s = [v[key]["std"] * scale for _, v in items]
        ax.bar(range(len(items)), m, yerr=s, capsize=4,
               color=matplotlib.colormaps["tab10"](np.arange(len(items))))
        ax.set_xticks(range(len(items)))
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(name)
        lo = min(a - b for a, b in zip(m, s, strict=False))
        hi = max(a + b for a, b in zip(m, s, strict=False))
        pad = 0.15 * (hi - lo) + 1e-9
        ax.set_ylim(max(0.0, lo - 3 * pad), hi + pad)
        ax.grid(axis="y", alpha=0.3)
    fig.subplots_adjust(wspace=0.4)
    fig.suptitle(f"held-out test set ({doc.get('test_size', '?')} images), mean +- std over "
                 f"{len(doc.get('seeds', []))} seeds", fontsize=9)
    return save(fig, out_stem)


def _finite(a: Any) -> np.ndarray:
    v = np.asarray(a, dtype=float).ravel()
    return v[np.isfinite(v)]


def _hist(ax: Any, vals: np.ndarray, bins: np.ndarray, label: str, color: Any) -> None:
    ax.hist(vals, bins=bins, density=True, histtype="step", color=color, label=label, lw=1.4)
    ax.plot(vals, np.zeros_like(vals), "|", color=color, ms=8, transform=ax.get_xaxis_transform())


def plot_spectra(path: PathLike, out_stem: PathLike) -> FigureFiles:
    """Max-eigenvalue spectra of a study file: one panel per model, one line per setting."""
    doc = _read(path)
    runs = doc["runs"]
    models = list(dict.fromkeys(r["model_label"] for r in runs))
    fig, axes = panel_grid(len(models), (5.4, 3.4), max_cols=2)
    for ax, m in zip(axes, models, strict=False):
        rs = [r for r in runs if r["model_label"] == m]
        vals = [_finite(r["spectrum"]["eigenvalues"]) for r in rs]
        allv = np.concatenate(vals) if vals else np.zeros(0)
        if allv.size == 0:
            ax.set_title(f"{m}: no finished spectrum", fontsize=9)
            continue
        lo, hi = float(allv.min()), float(allv.max())
        if hi <= lo:
            hi = lo + 1.0
        nb = int(np.clip(allv.size / max(len(rs), 1), 8, 40))  # ~ eigenvalues per setting
        bins = np.linspace(lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo), nb + 1)
        colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(rs)))
        for r, v, c in zip(rs, vals, colors, strict=False):
            s = r["spectrum"]["summary"]
            _hist(ax, v, bins,
                  f"{r['setting_label']} (neg {100 * s['negative_share']:.0f}%)", c)
        ax.axvline(0, color="grey", lw=0.6)
        ax.set_yscale("log")
        ax.set_xlabel("Hessian max eigenvalue")
        ax.set_ylabel("density")
        ax.set_title(m, fontsize=9)
        legend_outside(ax, title="setting (negative share)", title_fontsize=7)
    fig.suptitle(doc.get("title", "Hessian max-eigenvalue spectra"), fontsize=10)
    return save(fig, out_stem)


def plot_locality(path: PathLike, out_stem: PathLike) -> FigureFiles:
    """Error, NLL and negative-eigenvalue share per attention window (Fig. 7 right)."""
    doc = _read(path)
    rows = doc["summary"]
    labels = [r["setting_label"] for r in rows]
    fig, axes = panel_grid(3, (4.2, 3.2))
    for ax, key, scale, name in ((axes[0], "test_err", 100, "test error (%)"),
                                 (axes[1], "test_nll", 1, "test NLL"),
                                 (axes[2], "negative_share", 100, "negative eigenvalues (%)")):
        m = np.array([r[key]["mean"] for r in rows]) * scale
        s = np.array([r[key]["std"] for r in rows]) * scale
        ax.errorbar(range(len(rows)), m, yerr=s, fmt="o-", capsize=4)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels)
        ax.set_xlabel("attention window")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    fig.suptitle(doc.get("title", "locality"), fontsize=10)
    return save(fig, out_stem)
