"""Figures of loss surfaces, drawn from the raw HDF5 files only (no recomputation).

``plot_surface(path, out_dir)``: 1-D files give loss + accuracy curves; 2-D files give a
contour, a filled contour and a 3-D surface per quantity; non-finite (diverged) and unfinished
points are masked. ``plot_surface_comparison`` draws several models' 2-D surfaces side by side as
the loss increase over each model's centre on one shared set of contour levels (like the paper's
Fig. 1), so a flatter model shows fewer contours. ``plot_trajectory`` overlays a projected
training trajectory on contours. ``export_vtp`` writes the surface as VTK PolyData for ParaView.
PNG and PDF for every figure; axes are α (first direction) and β (second direction).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm

from ...errors import LandscapeError
from ...surface import load_surface
from .figure import FigureFiles, new_figure, panel_grid, save

Levels = int | Sequence[float]
QUANTITY_NAMES = {"loss": "loss", "acc": "accuracy"}
Quantity = str | Sequence[str]


def _masked(z: np.ndarray, done: np.ndarray | None) -> np.ma.MaskedArray:
    bad = ~np.isfinite(z)
    if done is not None:
        bad |= ~done.astype(bool)
    return np.ma.masked_array(z, mask=bad)


def _levels(z: np.ma.MaskedArray, vmax: float | None, n: Levels) -> np.ndarray:
    if not isinstance(n, (int, np.integer)):
        return np.asarray(n, dtype=float)
    lo = float(z.min()) if z.count() else 0.0
    hi = float(vmax) if vmax is not None else (float(z.max()) if z.count() else 1.0)
    if not hi > lo:
        hi = lo + 1e-6
    return np.linspace(lo, hi, int(n))


def _direction_name(r: Any) -> str:
    """"filter-normalized", "layer-normalized", ... from the file's recorded identity."""
    text = str(r.attrs.get("identity", "")) + str(r.attrs.get("config", ""))
    for norm in ("filter", "layer", "model"):
        if f'"norm": "{norm}"' in text or f"{norm}-normalized" in text:
            return f"{norm}-normalized"
    if '"kind": "pca"' in text or "trajectory" in text:
        return "PCA"
    return "random"


def _quantity_title(k: str, log: bool = False) -> str:
    """``train_loss`` -> "training loss", ``train_loss_l2_paper`` -> "training loss + L2"
    (``log`` adds "log")."""
    split, _, rest = k.partition("_")
    split = {"train": "training", "test": "test"}.get(split, split)
    what = " ".join(QUANTITY_NAMES.get(w, w) for w in rest.split("_")[:1])
    if "_l2" in "_" + rest:
        what += " + L2"
    return f"{'log ' if log and 'loss' in rest else ''}{split} {what}"


def axis_labels(ax: Any, r: Any, dims: int = 2) -> None:
    """α (and β) along the file's directions, named by their normalization."""
    name = _direction_name(r)
    ax.set_xlabel(f"α (along {name} direction 1)")
    if dims == 2:
        ax.set_ylabel(f"β (along {name} direction 2)")


def plot_surface(path: str | Path, out_dir: str | Path, *,
                 quantities: Sequence[str] | None = None, vmax: float | None = None,
                 levels: Levels = 30, log: bool = False, label: str = "") -> FigureFiles:
    """All figures of a surface file into ``out_dir``; returns the files written.

    ``quantities``: dataset names (default: every ``*_loss*`` and ``*_acc`` dataset); ``vmax``
    clips the loss colour scale (the reference's ``--vmax``); ``levels``: a count or the contour
    levels themselves; ``log`` plots log(loss); ``label`` names the model in the titles.
    """
    r = load_surface(path)
    out_dir = Path(out_dir)
    names = list(quantities) if quantities else sorted(
        k for k in r.arrays if (k.endswith("_acc") or "_loss" in k) and not k.endswith("_done"))
    files = FigureFiles()
    x, y = r.xcoordinates, r.ycoordinates
    who = f"{label}: " if label else ""
    if y is None:
        splits = sorted({k.split("_")[0] for k in names})
        for split in splits:
            done = r.arrays.get(f"{split}_done")
            fig = new_figure((5, 3.6))
            ax = fig.subplots()
            for k in names:
                if k.startswith(split + "_") and "_loss" in k:
                    ax.plot(x, _masked(r.arrays[k], done), label=_quantity_title(k))
            axis_labels(ax, r, 1)
            ax.set_ylabel("loss")
            if log:
                ax.set_yscale("log")
            if vmax is not None:
                ax.set_ylim(top=vmax)
            ax.legend(loc="upper left", fontsize=7)
            if f"{split}_acc" in r.arrays:
                ax2 = ax.twinx()
                ax2.plot(x, 100 * _masked(r.arrays[f"{split}_acc"], done), "r--", label="accuracy")
                ax2.set_ylabel("accuracy (%)", color="r")
            ax.set_title(f"{who}{_quantity_title(split + '_loss')} along the direction",
                         fontsize=9)
            files.add(save(fig, out_dir / f"{split}_1d"))
        return files
    X, Y = np.meshgrid(x, y)
    for k in names:
        split = k.split("_")[0]
        z = _masked(np.log(r.arrays[k]) if log and "_loss" in k else r.arrays[k],
                    r.arrays.get(f"{split}_done"))
        lv = _levels(z, vmax if "_loss" in k else None, levels)
        title = f"{who}{_quantity_title(k, log)}"
        fig = new_figure((4.5, 4))
        ax = fig.subplots()
        cs = ax.contour(X, Y, z, levels=lv, cmap="summer")
        ax.clabel(cs, inline=True, fontsize=6)
        axis_labels(ax, r)
        ax.set_title(f"{title} (own levels)", fontsize=9)
        files.add(save(fig, out_dir / f"{k}_2dcontour"))
        fig = new_figure((5, 4))
        ax = fig.subplots()
        cf = ax.contourf(X, Y, z, levels=lv, cmap="viridis")
        fig.colorbar(cf, ax=ax, label=_quantity_title(k, log))
        axis_labels(ax, r)
        ax.set_title(f"{title} (own levels)", fontsize=9)
        files.add(save(fig, out_dir / f"{k}_2dcontourf"))
        fig = new_figure((5, 4))
        ax = fig.add_subplot(projection="3d")
        zz = np.where(z.mask, np.nan, z.filled(np.nan))
        if vmax is not None and "_loss" in k:
            zz = np.where(zz > vmax, np.nan, zz)
        ax.plot_surface(X, Y, zz, cmap="coolwarm", linewidth=0, antialiased=True)
        axis_labels(ax, r)
        ax.set_zlabel(_quantity_title(k, log))
        ax.set_title(title, fontsize=9)
        files.add(save(fig, out_dir / f"{k}_3dsurface"))
    return files


def _increase(path: str | Path, quantity: str) -> tuple[Any, np.ma.MaskedArray, float]:
    """(surface, quantity minus its value at the grid point nearest the origin, that value)."""
    r = load_surface(path)
    if r.ycoordinates is None:
        raise LandscapeError(f"{path}: a comparison needs 2-D surfaces")
    if quantity not in r.arrays:
        raise LandscapeError(f"{path} has no {quantity!r} dataset")
    z = _masked(np.asarray(r.arrays[quantity], dtype=float),
                r.arrays.get(f"{quantity.split('_')[0]}_done"))
    xx, yy = np.meshgrid(r.xcoordinates, r.ycoordinates)
    centre = float(z[np.unravel_index(np.argmin(xx ** 2 + yy ** 2), z.shape)])
    return r, z - centre, centre


def shared_levels(increases: Sequence[np.ma.MaskedArray], n: int = 12,
                  vmax: float | None = None) -> np.ndarray:
    """Contour levels common to every surface: from a small positive increase up to the largest
    (or ``vmax``); log-spaced when the increases span more than two decades, else linear
    from 0."""
    vals = np.concatenate([np.ma.compressed(z) for z in increases]) if increases else np.zeros(0)
    pos = vals[vals > 0]
    hi = float(vmax) if vmax is not None else (float(pos.max()) if pos.size else 1.0)
    if not pos.size or hi <= 0:
        return np.linspace(0.0, 1.0, n)
    lo = max(float(np.percentile(pos, 5)), hi * 1e-4)
    if hi / lo > 100:
        return np.geomspace(lo, hi, n)
    return np.linspace(0.0, hi, n)


def plot_surface_comparison(paths: Sequence[str | Path], out_stem: str | Path,
                            labels: Sequence[str] | None = None, *,
                            quantity: Quantity = "train_loss", levels: int = 12,
                            vmax: float | None = None) -> FigureFiles:
    """Several models' 2-D surfaces, one panel each, as the increase of ``quantity`` (one name,
    or one per file) over each model's centre on one shared set of contour levels and one colour
    bar."""
    if not paths:
        raise LandscapeError("no surface file given")
    names = [quantity] * len(paths) if isinstance(quantity, str) else list(quantity)
    data = [_increase(p, q) for p, q in zip(paths, names, strict=False)]
    labels = [str(lab) for lab in labels] if labels else [Path(p).parent.name for p in paths]
    lv = shared_levels([z for _, z, _ in data], levels, vmax)
    norm = LogNorm(lv[0], lv[-1]) if lv[0] > 0 else None
    fig, axes = panel_grid(len(data), (4.0, 3.6))
    cf = None
    for ax, (r, z, centre), lab, q in zip(axes, data, labels, names, strict=False):
        X, Y = np.meshgrid(r.xcoordinates, r.ycoordinates)
        if norm is not None:  # below the first level (the centre): the "under" colour
            z = np.ma.maximum(z, lv[0] / 2)
        cf = ax.contourf(X, Y, z, levels=lv, cmap="viridis", norm=norm, extend="both")
        ax.contour(X, Y, z, levels=lv, colors="k", linewidths=0.4, norm=norm)
        ax.plot([0], [0], "r*", ms=7)
        axis_labels(ax, r)
        ax.set_title(f"{lab}: {_quantity_title(q)} (centre {centre:.3g})", fontsize=9)
        ax.set_aspect("equal")
    what = _quantity_title(names[0]) if len(set(names)) == 1 else "loss"
    cb = fig.colorbar(cf, ax=axes, shrink=0.9, label=f"{what} increase over the centre")
    cb.set_ticks(lv, labels=[f"{v:.3g}" for v in lv])
    cb.minorticks_off()
    return save(fig, out_stem)


def plot_trajectory(surface_path: str | Path, coords: np.ndarray, out_stem: str | Path, *,
                    quantity: str | None = None, explained: Sequence[float] | None = None,
                    vmax: float | None = None, levels: Levels = 30) -> FigureFiles:
    """Training trajectory ``coords`` (T, 2) drawn over the contours of a 2-D surface."""
    r = load_surface(surface_path)
    if r.ycoordinates is None:
        raise LandscapeError("trajectory overlay needs a 2-D surface")
    quantity = quantity or next(k for k in sorted(r.arrays) if k.endswith("_loss"))
    split = quantity.split("_")[0]
    z = _masked(r.arrays[quantity], r.arrays.get(f"{split}_done"))
    X, Y = np.meshgrid(r.xcoordinates, r.ycoordinates)
    fig = new_figure((5, 4.5))
    ax = fig.subplots()
    cs = ax.contour(X, Y, z, levels=_levels(z, vmax, levels), cmap="summer")
    ax.clabel(cs, inline=True, fontsize=6)
    c = np.asarray(coords)
    ax.plot(c[:, 0], c[:, 1], "r.-", markersize=4)
    ax.plot(c[-1, 0], c[-1, 1], "k*", markersize=8)
    if explained is not None:
        ax.set_xlabel(f"1st PC: {100 * explained[0]:.1f} %")
        ax.set_ylabel(f"2nd PC: {100 * explained[1]:.1f} %")
    else:
        axis_labels(ax, r)
    ax.set_title(f"training trajectory over {_quantity_title(quantity)}", fontsize=9)
    return save(fig, out_stem)


def export_vtp(path: str | Path, out: str | Path, quantity: str | None = None,
               zmax: float | None = None) -> Path:
    """The surface as VTK XML PolyData (.vtp, ASCII) for ParaView: points (x, y, z=loss) with
    the loss as point data, quads between neighbours; non-finite points clipped to ``zmax``
    (default: the finite maximum)."""
    r = load_surface(path)
    if r.ycoordinates is None:
        raise LandscapeError("VTK export needs a 2-D surface")
    quantity = quantity or next(k for k in sorted(r.arrays) if k.endswith("_loss"))
    z = np.array(r.arrays[quantity], dtype=np.float64)
    fin = np.isfinite(z)
    top = zmax if zmax is not None else (z[fin].max() if fin.any() else 0.0)
    z = np.where(fin, np.minimum(z, top), top)
    ny, nx = z.shape
    X, Y = np.meshgrid(r.xcoordinates, r.ycoordinates)
    pts = np.stack([X.ravel(), Y.ravel(), z.ravel()], 1)
    quads = [(iy * nx + ix, iy * nx + ix + 1, (iy + 1) * nx + ix + 1, (iy + 1) * nx + ix)
             for iy in range(ny - 1) for ix in range(nx - 1)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fmt = lambda a: " ".join(repr(float(v)) for v in np.ravel(a))  # noqa: E731
    conn = " ".join(str(i) for q in quads for i in q)
    offs = " ".join(str(4 * (i + 1)) for i in range(len(quads)))
    out.write_text(
        '<?xml version="1.0"?>\n<VTKFile type="PolyData" version="0.1" byte_order="LittleEndian">\n'
        f'<PolyData><Piece NumberOfPoints="{len(pts)}" NumberOfPolys="{len(quads)}">\n'
        f'<PointData Scalars="{quantity}"><DataArray type="Float64" Name="{quantity}" '
        f'format="ascii">{fmt(z)}</DataArray></PointData>\n'
        f'<Points><DataArray type="Float64" NumberOfComponents="3" format="ascii">{fmt(pts)}'
        '</DataArray></Points>\n'
        f'<Polys><DataArray type="Int64" Name="connectivity" format="ascii">{conn}</DataArray>\n'
        f'<DataArray type="Int64" Name="offsets" format="ascii">{offs}</DataArray></Polys>\n'
        '</Piece></PolyData></VTKFile>\n')
    return out


def _config(path: str | Path) -> dict:
    r = load_surface(path)
    try:
        return json.loads(r.attrs.get("config", "{}"))
    except (TypeError, ValueError):
        return {}
