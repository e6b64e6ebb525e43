"""What every figure module shares: a figure that needs no pyplot, saving, labels, panel grids.

Figures are plain :class:`matplotlib.figure.Figure` objects, never registered with pyplot, so no
backend is chosen at import (a notebook keeps its own) and ``savefig`` renders PNG and PDF on a
headless machine. Every plotting function returns :class:`FigureFiles`: the written paths, with
the drawn figures attached so a caller (or a test) can read the axes back.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

PathLike = str | Path


class FigureFiles(list):
    """The files written for one or more figures (PNG, then PDF, per figure); ``figures`` holds
    the drawn :class:`~matplotlib.figure.Figure` objects and ``axes`` all their axes."""

    def __init__(self, paths: Iterable[Path] = (), figures: Iterable[Figure] = ()):
        super().__init__(paths)
        self.figures: list[Figure] = list(figures)

    @property
    def axes(self) -> list[Any]:
        """Every axes of every figure, in drawing order."""
        return [ax for f in self.figures for ax in f.axes]

    def add(self, other: FigureFiles) -> FigureFiles:
        """Append another result's files and figures; returns ``self``."""
        self.extend(other)
        self.figures.extend(getattr(other, "figures", []))
        return self


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A figure independent of pyplot (no backend needed until it is saved)."""
    return Figure(figsize=figsize)


def save(fig: Figure, stem: PathLike, dpi: int = 150) -> FigureFiles:
    """``stem``.png and ``stem``.pdf (the stem's own suffix, if any, is kept in the name),
    each rendered in memory and written atomically (a full disk: one line naming the file,
    the earlier figure kept)."""
    import io

    from ...store.provenance import atomic_write
    stem = Path(stem)
    paths = []
    for ext in ("png", "pdf"):
        p = stem.with_name(f"{stem.name}.{ext}")
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=dpi, bbox_inches="tight")
        with atomic_write(p, size=buf.getbuffer().nbytes) as tmp:
            tmp.write_bytes(buf.getbuffer())
        paths.append(p)
    return FigureFiles(paths, [fig])


def result_labels(results: Sequence[Any], labels: Sequence[str] | None = None) -> list[str]:
    """``labels`` when given, else each result's ``label`` (attribute or config entry), else
    ``model i``."""
    if labels:
        return [str(lab) for lab in labels]
    out = []
    for i, r in enumerate(results):
        cfg = getattr(r, "config", None)
        lab = getattr(r, "label", "") or (cfg.get("label") if isinstance(cfg, dict) else "")
        out.append(str(lab or f"model {i}"))
    return out


def panel_grid(n: int, panel: tuple[float, float] = (4.2, 3.2), max_cols: int = 3,
               **subplot_kw: Any) -> tuple[Figure, list[Any]]:
    """A figure with ``n`` panels in rows of at most ``max_cols`` (readable at page width);
    unused cells are hidden. Returns (figure, the ``n`` axes in reading order)."""
    n = max(int(n), 1)
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig = new_figure((panel[0] * cols, panel[1] * rows))
    grid = fig.subplots(rows, cols, squeeze=False, **subplot_kw)
    axes = [ax for row in grid for ax in row]
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.set_layout_engine("constrained")
    return fig, axes[:n]


def legend_outside(ax: Any, fontsize: float = 7, **kw: Any) -> Any:
    """A legend right of the axes, outside the data area (never covers a curve)."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                     fontsize=fontsize, frameon=False, **kw)
