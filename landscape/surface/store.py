"""The surface result file (HDF5): preallocated datasets, a done-mask and per-chunk checksums.

Dataset names follow the reference tool: ``xcoordinates``, ``ycoordinates``, ``<split>_loss``,
``<split>_acc``; 2-D arrays are indexed ``[iy, ix]`` (shape ``(ny, nx)``, what
``plt.contour(*np.meshgrid(x, y), Z)`` expects). ``<split>_done`` marks finished points
(unfinished points are NaN; a diverged point is inf/NaN *and* done). With ``wd > 0``:
``<split>_loss_l2_paper`` = NLL + wd * sum_p ||p||_2 (the paper's term) and
``<split>_loss_l2_half`` = NLL + wd * 0.5 * ||theta||^2.

Writes. The grid is cut into fixed chunks of consecutive points (row-major order). Creating the
file, or adding a split, is atomic (temporary file, fsync, rename) and preallocates every
dataset; after that a chunk is written in place: its values, then its CRC-32 in
``<split>_chunk_crc``, then its done flags, each followed by a flush. A chunk's writes touch only
its own bytes (cost proportional to the chunk; no metadata changes), so a kill at any moment
loses at most the chunks in flight, and a torn write (done flags on disk, values not, or values
damaged) fails its checksum when the file is opened again: that chunk alone is recomputed.
Settings, plan and checksums are small; coordinates live in datasets, never in attributes.
"""
from __future__ import annotations

import json
import os
import re
import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn

from ..errors import LandscapeError
from ..store.provenance import atomic_h5
from ..store.resume import differences, mismatch_message
from ..store.resume import identity as result_identity
from .directions import Direction
from .plan import Plan

FORMAT = "landscape-surface"
FORMAT_VERSION = 3  # 3: the identity is the result store's


def parse_grid(spec: str) -> np.ndarray:
    """``"min:max:num"`` -> ``np.linspace(min, max, num)`` (the reference's ``--x`` syntax);
    finite bounds, checked by :func:`landscape.validate.grid_spec`."""
    from ..validate import grid_spec
    return np.linspace(*grid_spec(spec))


def surface_shape(x: np.ndarray, y: np.ndarray | None) -> tuple[int, ...]:
    return (len(x),) if y is None else (len(y), len(x))


def grid_points(x: np.ndarray, y: np.ndarray | None) -> np.ndarray:
    """Flat (P, 2) array of grid points in the files' row-major order (iy major, ix minor)."""
    if y is None:
        return np.stack([x, np.zeros_like(x)], 1)
    X, Y = np.meshgrid(x, y)  # (ny, nx)
    return np.stack([X.ravel(), Y.ravel()], 1)


def value_names(split: str, wd: float) -> list[str]:
    """The value datasets of a split, in checksum order."""
    names = [f"{split}_loss", f"{split}_acc"]
    return names + ([f"{split}_loss_l2_paper", f"{split}_loss_l2_half"] if wd > 0 else [])


def file_bytes(n_points: int, n_values: int, n_chunks: int) -> int:
    """Bytes of a split's datasets: float64 values, a uint8 done flag, a uint32 per chunk."""
    return n_points * (8 * n_values + 1) + 4 * n_chunks


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=lambda o: o.tolist() if hasattr(o, "tolist")
                      else str(o))


def _grid(v: np.ndarray | None) -> str:
    """Coordinates as ``min:max:num`` (for messages)."""
    return "none" if v is None or len(v) == 0 else f"{v[0]:.6g}:{v[-1]:.6g}:{len(v)}"


def _crc(columns: Sequence[np.ndarray]) -> int:
    h = 0
    for c in columns:
        h = zlib.crc32(np.ascontiguousarray(c, dtype="<f8").tobytes(), h)
    return h


def _repair_truncated(path: Path) -> None:
    """A file cut short (a torn final write) is extended with zeros to the size its superblock
    records: the zeroed tail lies in value, checksum or done datasets (their storage is the end
    of the file), so the chunks it touches fail their checksum and are recomputed."""
    import h5py
    try:
        h5py.File(path, "r", locking=False).close()
    except OSError as e:
        m = re.search(r"truncated file: eof = (\d+),.*stored_eof = (\d+)", str(e))
        if m is None or int(m.group(1)) >= int(m.group(2)):
            return  # another problem: reported by the caller's read
        print(f"surface: {path} is {int(m.group(2)) - int(m.group(1))} bytes short (torn write); "
              "extending it and recomputing what it lost", file=sys.stderr)
        os.truncate(path, int(m.group(2)))


def _write_flat(ds: Any, shape: tuple[int, ...], start: int, v: np.ndarray) -> None:
    """Write ``v`` at flat (row-major) positions ``start..`` of a 1-D or 2-D dataset."""
    if len(shape) == 1:
        ds[start:start + len(v)] = v
        return
    nx, i = shape[1], 0
    while i < len(v):
        iy, ix = divmod(start + i, nx)
        if ix == 0 and len(v) - i >= nx:  # whole rows at once
            r = (len(v) - i) // nx
            ds[iy:iy + r, :] = v[i:i + r * nx].reshape(r, nx)
            i += r * nx
        else:
            n = min(nx - ix, len(v) - i)
            ds[iy, ix:ix + n] = v[i:i + n]
            i += n


@dataclass
class SurfaceResult:
    """Raw surface numbers as read from a file; arrays are (nx,) or (ny, nx) indexed [iy, ix]."""
    path: str
    xcoordinates: np.ndarray
    ycoordinates: np.ndarray | None
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any]

    @property
    def shape(self) -> tuple[int, ...]:
        return surface_shape(self.xcoordinates, self.ycoordinates)


class SurfaceFile:
    """The surface HDF5 file: validated against an identity, set up atomically, written by chunk."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.attrs: dict[str, Any] = {}
        self.datasets: dict[str, np.ndarray] = {}
        self.dataset_attrs: dict[str, dict[str, Any]] = {}
        self._h5: Any = None

    @staticmethod
    def read(path: str | Path) -> SurfaceFile:
        """Everything in the file, in memory."""
        import h5py
        sf = SurfaceFile(path)
        try:
            with h5py.File(path, "r", locking=False) as f:
                sf.attrs = {k: (v.decode() if isinstance(v, bytes) else v)
                            for k, v in f.attrs.items()}
                for k in f:
                    sf.datasets[k] = np.asarray(f[k])
                    sf.dataset_attrs[k] = dict(f[k].attrs.items())
        except OSError as e:
            raise LandscapeError(f"{path} is not a readable HDF5 surface file ({e})") from None
        return sf

    def open(self, identity: Mapping[str, Any], x: np.ndarray, y: np.ndarray | None,
             split: str, eval_identity: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
        """Load an existing file, refusing (LandscapeError) one made with other settings."""
        ident = dict(identity)
        self._new = {"format": FORMAT, "format_version": FORMAT_VERSION,
                     "identity": _json(result_identity(
                         {k: v for k, v in ident.items() if k != "checkpoint_sha256"},
                         ident.get("checkpoint_sha256"))),
                     **{k: (v if isinstance(v, (int, float, str)) else _json(v))
                        for k, v in attrs.items()}}
        self._x, self._y, self._eval = x, y, _json(dict(eval_identity))
        if not self.path.exists():
            return
        from ..store.provenance import resume_guard
        with resume_guard(self.path, "surface file"):
            _repair_truncated(self.path)
            old = SurfaceFile.read(self.path)
        where = f"{self.path}"
        if old.attrs.get("format") != FORMAT:
            raise LandscapeError(f"{where} exists and is not a landscape surface file; "
                                 "choose another --out")
        if int(old.attrs.get("format_version", 1)) != FORMAT_VERSION:
            raise LandscapeError(f"{where} was written by an older version (format "
                                 f"{old.attrs.get('format_version', 1)}); delete it or use "
                                 "another --out")
        with resume_guard(self.path, "surface file"):
            old_identity = json.loads(old.attrs.get("identity", "{}"))
        bad = differences(old_identity, json.loads(self._new["identity"]))
        for k, v in (("xcoordinates", x), ("ycoordinates", y)):
            o = old.datasets.get(k)
            if (o is None) != (v is None) or (v is not None and not np.array_equal(o, v)):
                bad.append(f"{k}: {_grid(o)} -> {_grid(v)}")
        if bad:
            raise LandscapeError(mismatch_message(where, "a surface", bad))
        key = f"{split}_loss"
        if key in old.datasets:
            bad = differences({"settings": json.loads(old.dataset_attrs[key].get("eval", "{}"))},
                              {"settings": json.loads(self._eval)})
            if bad:
                raise LandscapeError(mismatch_message(where, f"{split} results", bad))
        self.attrs, self.datasets, self.dataset_attrs = old.attrs, old.datasets, old.dataset_attrs

    def stored_plan(self, split: str) -> Plan | None:
        """The plan (with its measurements) recorded for ``split``, if any."""
        a = self.dataset_attrs.get(f"{split}_loss", {})
        if "plan" not in a:
            return None
        return Plan.from_key(json.loads(a["plan"]), json.loads(a.get("plan_measurements", "{}")))

    def chunk_size(self, split: str) -> int | None:
        a = self.dataset_attrs.get(f"{split}_loss", {})
        return int(a["points_per_flush"]) if "points_per_flush" in a else None

    def setup(self, split: str, plan: Plan, chunk: int, wd: float) -> None:
        """Create the file and/or the split's preallocated datasets with the plan, atomically
        (nothing to do when the split is already there)."""
        if f"{split}_loss" in self.datasets:
            return
        shape = surface_shape(self._x, self._y)
        P = int(np.prod(shape))
        arrays = {n: np.full(shape, np.nan) for n in value_names(split, wd)}
        arrays[f"{split}_done"] = np.zeros(shape, dtype=np.uint8)
        arrays[f"{split}_chunk_crc"] = np.zeros(-(-P // chunk), dtype=np.uint32)
        loss_attrs = {"eval": self._eval, "wd": float(wd), "plan": _json(plan.key()),
                      "plan_measurements": _json(plan.measured), "points_per_flush": int(chunk)}
        exists = self.path.exists()
        with atomic_h5(self.path, copy_existing=True, fsync=True, track_order=True) as f:
            if not exists:
                f.attrs.update(self._new)
                self.attrs = dict(self._new)
                for k, v in (("xcoordinates", self._x), ("ycoordinates", self._y)):
                    if v is not None:
                        f.create_dataset(k, data=np.asarray(v, np.float64), track_times=False)
                        self.datasets[k] = np.asarray(v, np.float64)
            for k, v in arrays.items():  # metadata first: storage is allocated at first write
                f.create_dataset(k, shape=v.shape, dtype=v.dtype, track_times=False)
            f[f"{split}_loss"].attrs.update(loss_attrs)
            f.flush()
            for k in reversed(list(arrays)):  # so the values are the last bytes of the file
                f[k][...] = arrays[k]
        self.datasets.update(arrays)
        self.dataset_attrs[f"{split}_loss"] = loss_attrs

    def chunks(self, split: str) -> list[tuple[int, int]]:
        """(start, stop) flat point range of every chunk of ``split``."""
        P = self.datasets[f"{split}_done"].size
        c = self.chunk_size(split)
        return [(s, min(s + c, P)) for s in range(0, P, c)]

    def verify(self, split: str) -> tuple[list[int], list[int]]:
        """(chunks to compute, torn chunks among them): a chunk is finished when all its points
        are marked done and its values match its checksum."""
        names = value_names(split, float(self.dataset_attrs[f"{split}_loss"]["wd"]))
        flat = [self.datasets[n].reshape(-1) for n in names]
        done = self.datasets[f"{split}_done"].reshape(-1).astype(bool)
        crc = self.datasets[f"{split}_chunk_crc"]
        todo, torn = [], []
        for c, (s, e) in enumerate(self.chunks(split)):
            if done[s:e].all() and _crc([a[s:e] for a in flat]) == int(crc[c]):
                continue
            todo.append(c)
            if done[s:e].any() or crc[c] != 0:
                torn.append(c)
        return todo, torn

    def begin(self) -> None:
        """Open the file for in-place chunk writes (no lock: readers may watch the done-mask)."""
        import h5py
        fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
        fapl.set_sieve_buf_size(0)  # write a chunk's bytes only, not a 64 KiB sieve around them
        fapl.set_file_locking(False, True)
        self._h5 = h5py.File(h5py.h5f.open(os.fsencode(self.path), h5py.h5f.ACC_RDWR, fapl=fapl))

    def put(self, split: str, c: int, vals: np.ndarray, wd: float) -> None:
        """Write chunk ``c`` from rows [nll, acc, l2_paper_norm, l2_half]: values, flush,
        checksum, done flags, flush."""
        f = self._h5
        shape = self.datasets[f"{split}_done"].shape
        size = self.chunk_size(split)
        s, e = c * size, min((c + 1) * size, int(np.prod(shape)))
        cols = [vals[:, 0], vals[:, 1]]
        if wd > 0:
            cols += [vals[:, 0] + wd * vals[:, 2], vals[:, 0] + wd * vals[:, 3]]
        for n, v in zip(value_names(split, wd), cols, strict=True):
            _write_flat(f[n], shape, s, v)
            self.datasets[n].reshape(-1)[s:e] = v
        f.flush()
        f[f"{split}_chunk_crc"][c] = _crc(cols)
        _write_flat(f[f"{split}_done"], shape, s, np.ones(e - s, dtype=np.uint8))
        f.flush()
        self.datasets[f"{split}_done"].reshape(-1)[s:e] = 1

    def close(self) -> None:
        """Close the file (also after a failed write: the handle is dropped either way)."""
        h5, self._h5 = self._h5, None
        if h5 is not None:
            h5.close()


def load_surface(path: str | Path) -> SurfaceResult:
    """Read a surface file (ours or the reference tool's) into a :class:`SurfaceResult`.

    A file of ours is verified on every read: a finished chunk whose values fail their CRC-32
    (bytes damaged after they were written) is refused in one line, never returned as values."""
    sf = SurfaceFile.read(path)
    if sf.attrs.get("format") == FORMAT:
        for key in sorted(k for k in sf.datasets if k.endswith("_chunk_crc")):
            split = key[:-len("_chunk_crc")]
            if f"{split}_loss" not in sf.dataset_attrs or f"{split}_done" not in sf.datasets:
                continue
            try:
                bad = _damaged_chunks(sf, split)
            except (KeyError, ValueError, TypeError) as e:
                raise LandscapeError(f"{path} is not a readable surface file ({e})") from None
            if bad:
                raise LandscapeError(f"{path}: {len(bad)} finished chunk(s) of {split} fail their "
                                     "checksum (the file was damaged after it was written); "
                                     "delete it and compute it again")
    ds = dict(sf.datasets)
    x = ds.pop("xcoordinates", None)
    if x is None:
        raise LandscapeError(f"{path} has no xcoordinates dataset")
    y = ds.pop("ycoordinates", None)
    return SurfaceResult(str(path), x, y, ds, sf.attrs)


def _damaged_chunks(sf: SurfaceFile, split: str) -> list[int]:
    """Chunks of ``split`` marked done whose values fail their checksum."""
    names = value_names(split, float(sf.dataset_attrs[f"{split}_loss"]["wd"]))
    flat = [sf.datasets[n].reshape(-1) for n in names]
    done = sf.datasets[f"{split}_done"].reshape(-1).astype(bool)
    crc = sf.datasets[f"{split}_chunk_crc"]
    return [c for c, (s, e) in enumerate(sf.chunks(split))
            if done[s:e].all() and _crc([a[s:e] for a in flat]) != int(crc[c])]


def write_directions_file(path: str | Path, directions: Sequence[Direction],
                          attrs: Mapping[str, Any]) -> None:
    """Directions to their own HDF5 file (``xdirection/<name>``, ``ydirection/<name>``),
    atomically."""

    from .directions import save_directions
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_h5(path) as f:
        save_directions(f, directions, {k: (v if isinstance(v, (int, float, str)) else _json(v))
                                        for k, v in attrs.items()})


def read_directions_file(path: str | Path, model: nn.Module
                         ) -> tuple[list[Direction], dict[str, Any]]:
    """Directions from :func:`write_directions_file` on the model's device and dtypes."""
    import h5py

    from .directions import load_directions
    tensors = dict(model.named_parameters())
    tensors.update(dict(model.named_buffers()))
    dev = next(model.parameters()).device
    try:
        with h5py.File(path, "r") as f:
            dirs = load_directions(f, dev, {n: t.dtype for n, t in tensors.items()})
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except OSError as e:
        raise LandscapeError(f"cannot read directions file {path} ({e})") from None
    for d in dirs:
        for n, t in d.items():
            if n not in tensors or tensors[n].shape != t.shape:
                raise LandscapeError(f"directions file {path} does not fit this model ({n})")
    return dirs, attrs

