"""Figures of loss surfaces, drawn from the raw HDF5 files only (no recomputation).

``plot_surface(path, out_dir)``: 1-D files give loss + accuracy curves; 2-D files give a
contour, a filled contour and a 3-D surface per quantity; non-finite (diverged) and unfinished
points are masked. ``plot_trajectory`` overlays a projected training trajectory on contours.
``export_vtp`` writes the surface as VTK PolyData for ParaView. PNG and PDF for every figure.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..surface import load_surface  # noqa: E402


def _save(fig: "plt.Figure", stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "pdf"):
        p = stem.with_suffix("." + ext)
        fig.savefig(p, dpi=150, bbox_inches="tight")
        out.append(p)
    plt.close(fig)
    return out


def _masked(z: np.ndarray, done: Optional[np.ndarray]) -> np.ma.MaskedArray:
    bad = ~np.isfinite(z)
    if done is not None:
        bad |= ~done.astype(bool)
    return np.ma.masked_array(z, mask=bad)


def _levels(z: np.ma.MaskedArray, vmax: Optional[float], n: int) -> np.ndarray:
    lo = float(z.min()) if z.count() else 0.0
    hi = float(vmax) if vmax is not None else (float(z.max()) if z.count() else 1.0)
    if not hi > lo:
        hi = lo + 1e-6
    return np.linspace(lo, hi, n)


def plot_surface(path: str | Path, out_dir: str | Path, *, quantities: Optional[Sequence[str]] = None,
                 vmax: Optional[float] = None, levels: int = 30, log: bool = False) -> list[Path]:
    """All figures of a surface file into ``out_dir``; returns the files written.

    ``quantities``: dataset names (default: every ``*_loss*`` and ``*_acc`` dataset); ``vmax``
    clips the loss colour scale (the reference's ``--vmax``); ``log`` plots log(loss).
    """
    r = load_surface(path)
    out_dir = Path(out_dir)
    names = list(quantities) if quantities else sorted(
        k for k in r.arrays if (k.endswith("_acc") or "_loss" in k) and not k.endswith("_done"))
    files: list[Path] = []
    x, y = r.xcoordinates, r.ycoordinates
    if y is None:
        splits = sorted({k.split("_")[0] for k in names})
        for split in splits:
            done = r.arrays.get(f"{split}_done")
            fig, ax = plt.subplots(figsize=(5, 3.6))
            for k in names:
                if k.startswith(split + "_") and "_loss" in k:
                    ax.plot(x, _masked(r.arrays[k], done), label=k)
            ax.set_xlabel("x")
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
            ax.set_title(f"{split} loss along the direction")
            files += _save(fig, out_dir / f"{split}_1d")
        return files
    X, Y = np.meshgrid(x, y)
    for k in names:
        split = k.split("_")[0]
        z = _masked(np.log(r.arrays[k]) if log and "_loss" in k else r.arrays[k],
                    r.arrays.get(f"{split}_done"))
        lv = _levels(z, vmax if "_loss" in k else None, levels)
        fig, ax = plt.subplots(figsize=(4.5, 4))
        cs = ax.contour(X, Y, z, levels=lv, cmap="summer")
        ax.clabel(cs, inline=True, fontsize=6)
        ax.set_title(k)
        files += _save(fig, out_dir / f"{k}_2dcontour")
        fig, ax = plt.subplots(figsize=(5, 4))
        cf = ax.contourf(X, Y, z, levels=lv, cmap="viridis")
        fig.colorbar(cf, ax=ax)
        ax.set_title(k)
        files += _save(fig, out_dir / f"{k}_2dcontourf")
        fig = plt.figure(figsize=(5, 4))
        ax = fig.add_subplot(projection="3d")
        zz = np.where(z.mask, np.nan, z.filled(np.nan))
        if vmax is not None and "_loss" in k:
            zz = np.where(zz > vmax, np.nan, zz)
        ax.plot_surface(X, Y, zz, cmap="coolwarm", linewidth=0, antialiased=True)
        ax.set_title(k)
        files += _save(fig, out_dir / f"{k}_3dsurface")
    return files


def plot_trajectory(surface_path: str | Path, coords: np.ndarray, out_stem: str | Path, *,
                    quantity: Optional[str] = None, explained: Optional[Sequence[float]] = None,
                    vmax: Optional[float] = None, levels: int = 30) -> list[Path]:
    """Training trajectory ``coords`` (T, 2) drawn over the contours of a 2-D surface."""
    r = load_surface(surface_path)
    if r.ycoordinates is None:
        raise ValueError("trajectory overlay needs a 2-D surface")
    quantity = quantity or next(k for k in sorted(r.arrays) if k.endswith("_loss"))
    split = quantity.split("_")[0]
    z = _masked(r.arrays[quantity], r.arrays.get(f"{split}_done"))
    X, Y = np.meshgrid(r.xcoordinates, r.ycoordinates)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    cs = ax.contour(X, Y, z, levels=_levels(z, vmax, levels), cmap="summer")
    ax.clabel(cs, inline=True, fontsize=6)
    c = np.asarray(coords)
    ax.plot(c[:, 0], c[:, 1], "r.-", markersize=4)
    ax.plot(c[-1, 0], c[-1, 1], "k*", markersize=8)
    if explained is not None:
        ax.set_xlabel(f"1st PC: {100 * explained[0]:.1f} %")
        ax.set_ylabel(f"2nd PC: {100 * explained[1]:.1f} %")
    return _save(fig, Path(out_stem))


def export_vtp(path: str | Path, out: str | Path, quantity: Optional[str] = None,
               zmax: Optional[float] = None) -> Path:
    """The surface as VTK XML PolyData (.vtp, ASCII) for ParaView: points (x, y, z=loss) with
    the loss as point data, quads between neighbours; non-finite points clipped to ``zmax``
    (default: the finite maximum)."""
    r = load_surface(path)
    if r.ycoordinates is None:
        raise ValueError("VTK export needs a 2-D surface")
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
