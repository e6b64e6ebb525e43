"""``compute_surface``: a resumable, distributable surface into one HDF5 file.

The plan is measured once and recorded in the file with the chunk size; a resume reuses both,
so a resumed (or distributed) run computes bitwise the same numbers as an uninterrupted one on
the same machine and thread count. Chunks are sharded over ranks by
:mod:`landscape.distributed`; after each round every rank's results are gathered to the writer
(rank 0), which alone writes the file (see :mod:`landscape.surface.store`).
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .. import distributed as dist
from ..errors import LandscapeError
from ..store.resume import mismatch_message
from .directions import Direction
from .evaluate import SurfaceEvaluator
from .plan import PLAN_KEYS
from .store import SurfaceFile, SurfaceResult, file_bytes, grid_points, load_surface, value_names

ESTIMATE_ABOVE = 10_000  # points: print the time and disk estimate before such a grid


def _duration(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 5400 else f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


def estimate_line(n_points: int, n_todo: int, seconds_per_point: float | None, ranks: int,
                  n_bytes: int) -> str:
    """The line printed before a large grid: estimated time and file size."""
    t = ("unknown time" if seconds_per_point is None else
         f"about {_duration(seconds_per_point * n_todo / ranks)}")
    return (f"surface: {n_points:,} points ({n_todo:,} to compute on {ranks} rank(s)): {t} "
            f"with the measured plan, {n_bytes / 2 ** 20:.1f} MiB on disk")


def _clash(requested: Mapping[str, Any], stored: Mapping[str, Any]) -> list[str]:
    return [k for k, v in requested.items() if v is not None and v != stored[k]]


def compute_surface(model: nn.Module, directions: Sequence[Direction], images: torch.Tensor,
                    labels: torch.Tensor, xcoords: np.ndarray, ycoords: np.ndarray | None,
                    path: str | Path, *, split: str = "test",
                    identity: Mapping[str, Any] | None = None,
                    eval_identity: Mapping[str, Any] | None = None, wd: float = 0.0,
                    augment: Callable[..., torch.Tensor] | None = None, aug_seed: int = 0,
                    batch_size: int | None = None, points_per_pass: int | None = None,
                    channels_last: bool | None = None, compile: bool = False,
                    fold_bn: bool | None = None, workers: int | None = None,
                    first_layer: bool | None = None, points_per_flush: int | None = None,
                    attrs: Mapping[str, Any] | None = None, progress: bool = True,
                    ) -> SurfaceResult | None:
    """Evaluate the surface into ``path`` (resuming a partial file); returns the result on the
    writer rank (None on the others). Call from every rank under torchrun.

    ``identity`` (checkpoint hash, directions config, ...) must match an existing file's;
    ``eval_identity`` (data, samples, augmentation, wd, ...) must match the split's results.
    ``wd > 0`` also stores the paper's loss ``NLL + wd * sum_p ||p||_2`` as
    ``<split>_loss_l2_paper`` (and ``NLL + wd * 0.5 ||theta||^2`` as ``<split>_loss_l2_half``).
    Plan options left None are measured once and recorded; given ones pin the choice, and a
    resume with a given option that differs from the recorded plan is refused.
    ``points_per_flush`` fixes the chunk (default: points per pass x workers).
    """
    from tqdm import tqdm
    x = np.asarray(xcoords, dtype=np.float64)
    y = None if ycoords is None else np.asarray(ycoords, dtype=np.float64)
    if y is not None and len(directions) < 2:
        raise LandscapeError("a 2-D grid needs two directions")
    identity = {**(identity or {}), "ndirections": len(directions)}
    eval_identity = {**(eval_identity or {}), "n_samples": int(len(labels)), "wd": float(wd),
                     "augment": augment is not None, "aug_seed": int(aug_seed),
                     "dtype": str(next(model.parameters()).dtype)}
    requested = {"batch_size": batch_size, "points_per_pass": points_per_pass,
                 "channels_last": channels_last, "compile": compile, "fold_bn": fold_bn,
                 "workers": workers, "first_layer": first_layer}
    sf = SurfaceFile(path)
    err, stored = None, None
    if dist.is_writer():
        try:
            sf.open(identity, x, y, split, eval_identity, dict(attrs or {}))
            stored = sf.stored_plan(split)
            clash = [] if stored is None else _clash(requested, stored.key())
            if clash:
                err = mismatch_message(
                    path, f"{split} results", [f"{k}: {getattr(stored, k)} -> {requested[k]}"
                                               for k in clash],
                    "resume with the same values (or leave them automatic), or use another --out")
        except LandscapeError as e:
            err = str(e)
    err = dist.broadcast_object(err)
    if err:
        raise LandscapeError(err)
    stored = dist.broadcast_object(stored)
    ev = SurfaceEvaluator(model, directions, images, labels, augment=augment, aug_seed=aug_seed,
                          l2=wd > 0, **{k: requested[k] for k in PLAN_KEYS})
    P = len(x) * (1 if y is None else len(y))
    try:
        if stored is not None:
            plan = stored
            ev.prepare(plan)
        else:
            plan = ev.prepare(n_points=max(1, P // dist.world_size())) \
                if dist.is_writer() else None
            plan = dist.broadcast_object(plan)
            if not dist.is_writer():
                ev.prepare(plan)
        todo: Any = None
        if dist.is_writer():
            sf.setup(split, plan, int(points_per_flush or plan.points_per_pass * plan.workers), wd)
            todo, torn = sf.verify(split)
            if torn:
                print(f"surface: {path}: {len(torn)} chunk(s) of {split} failed their checksum "
                      f"(torn or interrupted write); recomputing them", file=sys.stderr)
            if P > ESTIMATE_ABOVE:
                chunks = sf.chunks(split)
                print(estimate_line(P, sum(chunks[c][1] - chunks[c][0] for c in todo),
                                    plan.measured.get("seconds_per_point"), dist.world_size(),
                                    file_bytes(P, len(value_names(split, wd)), len(chunks))),
                      file=sys.stderr)
            sf.begin()
        todo = dist.broadcast_object(todo)
        chunks = dist.broadcast_object(sf.chunks(split) if dist.is_writer() else None)
        pts = grid_points(x, y)
        mine = todo[dist.rank()::dist.world_size()]
        rounds = math.ceil(len(todo) / dist.world_size())
        bar = tqdm(total=P, initial=P - sum(chunks[c][1] - chunks[c][0] for c in todo),
                   unit="pt", desc=f"surface {split}", dynamic_ncols=True,
                   disable=not (progress and dist.is_writer()))
        for r in range(rounds):
            c = mine[r] if r < len(mine) else None
            res = None if c is None else ev.evaluate(pts[slice(*chunks[c])])
            got = dist.gather_to_writer((c, res))
            if dist.is_writer():
                for cc, vals in got:
                    if cc is not None:
                        sf.put(split, cc, vals, wd)
                        bar.update(len(vals))
        bar.close()
    finally:
        ev.restore()
        sf.close()
    dist.barrier()
    return load_surface(path) if dist.is_writer() else None
