"""The surface runner: one grid of loss (and accuracy) values around the checkpoint, called by
``landscape surface`` and by ``landscape analyze`` (each of its random planes) alike (see
:mod:`landscape.runners`).

The surface file checks its own identity (:func:`landscape.surface.compute_surface`: the
checkpoint, the directions, the images, wd, augmentation) and resumes a partial file; the store
adds its key (:func:`surface_key`) around it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..settings import SurfaceSettings
from .features import Run


def random_plane(model: Any, norm: str, seed: int, two: bool, *, mode: str = "weights",
                 biasbn: bool = False, exclude: Sequence[str] | None = None
                 ) -> tuple[list[Any], dict[str, Any]]:
    """(directions, their identity): a random Gaussian direction from ``seed`` (and one from
    ``seed + 1`` when ``two``), normalized by ``norm``
    (:func:`landscape.surface.directions.random_direction`); ``exclude`` None: the default
    exclusions (position embeddings)."""
    from ..surface import directions as D
    ident = plane_identity(norm, seed, two, mode=mode, biasbn=biasbn, exclude=exclude)
    ex = ident["exclude"]
    dirs = [D.random_direction(model, seed, norm, mode, biasbn, ex)]
    if two:
        dirs.append(D.random_direction(model, seed + 1, norm, mode, biasbn, ex))
    return dirs, ident


def plane_identity(norm: str, seed: int, two: bool, *, mode: str = "weights",
                   biasbn: bool = False, exclude: Sequence[str] | None = None
                   ) -> dict[str, Any]:
    """What identifies the directions of :func:`random_plane` (without drawing them)."""
    from ..surface.directions import DEFAULT_EXCLUDE
    return {"kind": "random", "mode": mode, "biasbn": bool(biasbn),
            "exclude": list(DEFAULT_EXCLUDE if exclude is None else exclude), "norm": norm,
            "seed": int(seed), "ndirections": 2 if two else 1}


def surface_key(settings: SurfaceSettings, data: Any, seed: int, directions: Mapping[str, Any],
                wd: float, transform: str, plan: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that identify a surface file (see module doc)."""
    return {"analysis": "surface", "grid": settings.grid, "ygrid": settings.ygrid,
            "data": data.name, "split": data.split, "samples": len(data), "seed": int(seed),
            "directions": dict(directions), "wd": float(wd), "augment": transform,
            "plan": dict(plan)}


def run_surface(model: Any, data: Any, settings: SurfaceSettings, store: Any, *,
                directions: Sequence[Any], direction_identity: Mapping[str, Any],
                info: Any = None, seed: int = 0, aug_seed: int | None = None,
                paper_loss: bool = False, plan: Mapping[str, Any] | None = None,
                name: str = "surface.h5", directions_file: str | None = None,
                attrs: Mapping[str, Any] | None = None, progress: bool = False,
                split: str | None = None) -> Run:
    """Loss and accuracy at ``theta0 + x d1 (+ y d2)`` over ``settings.grid`` (x
    ``settings.ygrid``) on ``data`` (Li et al. 2018), through ``store`` as ``name``.

    ``directions``: one or two directions (see :func:`random_plane`), described by
    ``direction_identity``; ``directions_file``: also write them there (beside the surface).
    ``settings.wd`` None is the checkpoint's training weight decay and ``settings.augment``
    its training augmentation, drawn once with ``aug_seed`` (default ``seed``); ``paper_loss``:
    the paper's Mixup/CutMix transform (both resolved by
    :func:`landscape.runners.loss.resolve_loss`). ``data``: the images (the caller selects
    ``settings.samples`` of them). ``plan``: pinned plan keys of
    :func:`~landscape.surface.compute_surface` (the rest measured once and recorded).
    ``extra`` of the returned run: ``quantity`` (the loss to read), ``wd``, ``augment`` (the
    transform) and ``recipe_source``. A stored file is reused only after its chunks pass
    their checksums (a torn chunk is recomputed), whichever store holds it. Call from every
    rank under torchrun.
    """
    from .. import distributed as dist
    from .. import surface as S
    from ..settings import LossSettings
    from .loss import resolve_loss
    plan = dict(plan or {})
    aug_seed = seed if aug_seed is None else aug_seed
    # wd None: the paper preset's, the training weight decay
    lo = resolve_loss(LossSettings(preset="paper", wd=settings.wd, augment=settings.augment,
                                   paper_loss=paper_loss), info, data, aug_seed)
    wd, augment, transform = lo.wd, lo.augment, lo.transform
    images, labels = lo.images, lo.labels
    split = split or data.split
    key = surface_key(settings, data, seed, direction_identity, wd, transform, plan)
    xs = S.parse_grid(settings.grid)
    ys = S.parse_grid(settings.ygrid) if settings.ygrid else None
    sha = getattr(store, "checkpoint_sha256", None)
    identity = {"checkpoint_sha256": sha, "directions": dict(direction_identity)}
    eval_identity = {"data": data.name, "split": data.split, "samples": len(data),
                     "data_seed": int(seed), "augment_repr": transform}
    file_attrs = {"settings": settings.to_dict(), "key": key, "seed": int(seed),
                  "checkpoint_sha256": sha, **(dict(attrs or {}))}
    if info is not None:
        file_attrs.update(checkpoint=str(info.path), model=info.model)

    def compute(p: Path, write_directions: bool = True) -> Any:
        if directions_file and write_directions and dist.is_writer():
            S.write_directions_file(p.with_name(directions_file), list(directions),
                                    {"seed": int(direction_identity.get("seed", seed)),
                                     "identity": json.dumps(key, default=str)})
        return S.compute_surface(model, list(directions), images, labels, xs, ys, p, split=split,
                                 identity=identity, eval_identity=eval_identity, wd=wd,
                                 augment=augment, aug_seed=aug_seed, attrs=file_attrs,
                                 progress=progress, **plan)

    res, reused = store.get(name, key, compute, S.load_surface, collective=True, resumable=True)
    if reused:  # verified as a resumed file is (chunk checksums): a torn chunk is recomputed
        res = compute(Path(store.folder) / name, write_directions=False)
    quantity = f"{split}_loss_l2_paper" if wd > 0 else f"{split}_loss"
    return Run(res, Path(store.folder) / name, bool(reused),
               {"quantity": quantity, "wd": wd, "augment": transform,
                "recipe_source": lo.recipe_source})


__all__ = ["plane_identity", "random_plane", "run_surface", "surface_key"]
