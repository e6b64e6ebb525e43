"""``landscape surface``: directions made once per output folder (refused when made with other
settings), the surface evaluated into ``surface.h5`` (resumable, shared among torchrun ranks),
``config.json`` and the figures. Imports nothing heavy at module level (the CLI reads
:data:`DESCRIPTION` for its help)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LandscapeError
from ..settings import SurfaceSettings
from ..store.resume import check
from ..store.resume import identity as result_identity
from .inputs import InputOptions

DESCRIPTION = """\
Evaluate loss and accuracy at theta0 + x*d1 (+ y*d2) over a grid (Li et al. 2018).
Directions: random Gaussian (seeded, recorded) normalized per filter (default), per layer,
over the model or not at all; --target gives the 1-D line from CKPT (x=0) to another
checkpoint (x=1); --trajectory gives the two PCA directions of a series of checkpoints
(CKPT is the final one) and draws the projected path over the contours.
Output folder: surface.h5 (datasets xcoordinates, ycoordinates, <split>_loss, <split>_acc as
in the reference tool; unfinished points NaN), directions.h5, config.json and figures.
The defaults are `landscape analyze`'s: --planes 3 random 9x9 planes (surface.h5,
surface_p1.h5, surface_p2.h5; the first is drawn) on 500 training images, augmented with the
checkpoint's recipe, the loss with its training weight decay beside the NLL.
Kill it at any time and run the same command again to continue: finished chunks of points are
checksummed, a torn write is detected and only its chunk recomputed. Every plan choice left
automatic (batch size, points per pass, channels_last, BN folding, first-layer reuse, workers) is
measured once and recorded in surface.h5; a resume reuses the recorded plan, so it computes
bitwise the same numbers as an uninterrupted run (same machine, thread count and device); give
an option to pin a choice. Before a grid of more than 10,000 points the command prints the
estimated time (from the measured plan) and the disk the file needs (8 bytes a value per point
and quantity: about 17 bytes a point, 33 with --wd), then proceeds. Under
`torchrun --nproc-per-node N -m landscape surface ...` the grid is shared among N ranks.
--batch-size 0 (the default) measures the fastest batch size."""


@dataclass(frozen=True)
class SurfaceJob:
    """One ``landscape surface`` run: the checkpoint, output folder and inputs, and the options
    that are no setting of the quantity: how the directions are made (``dir_mode``, ``biasbn``,
    ``exclude`` (None: the default exclusions), ``dir_seed`` (None: the data seed), ``target``,
    ``trajectory``), ``aug_seed``, the pinned plan keys (``plan``: None entries measured) and
    the output (``no_plot``, ``vmax``, ``vtp``, ``quiet``)."""

    checkpoint: str
    out: str
    inputs: InputOptions = field(default_factory=InputOptions)
    dir_mode: str = "weights"
    biasbn: bool = False
    exclude: list[str] | None = None
    dir_seed: int | None = None
    target: str | None = None
    trajectory: list[str] | None = None
    aug_seed: int = 0
    plan: dict[str, Any] = field(default_factory=dict)
    no_plot: bool = False
    vmax: float | None = None
    vtp: bool = False
    quiet: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def surface_run(settings: SurfaceSettings, job: SurfaceJob) -> str | None:
    """Run ``landscape surface`` through the surface runner
    (:func:`landscape.runners.run_surface`): ``settings.planes`` random planes as analyze's
    (``surface.h5``, ``surface_p1.h5``, ...), or one target line or trajectory plane; returns
    the line to print (None on ranks other than the writer)."""
    import numpy as np

    from .. import distributed as dist
    from .. import surface as S
    from ..loading.checkpoint import read_checkpoint, resolve_checkpoint
    from ..runners import plane_identity, run_surface
    from ..store.provenance import file_sha256, output_dir, run_metadata, write_json
    from ..store.resume import ResultFolder
    from ..surface import directions as D
    from .inputs import load_model_and_data

    dist.init_from_env()
    two = bool(settings.ygrid)
    if job.target and (job.trajectory or two):
        raise LandscapeError("--target gives a 1-D line: "
                             "do not combine it with --ygrid/--trajectory")
    if job.trajectory and not two:
        raise LandscapeError("--trajectory needs a 2-D grid (--ygrid)")
    allow = job.inputs.allow_nonfinite
    model, info, data = load_model_and_data(
        job.inputs, read_checkpoint(resolve_checkpoint(job.checkpoint), allow_nonfinite=allow))
    target = (read_checkpoint(resolve_checkpoint(job.target), allow_nonfinite=allow)
              if job.target else None)
    series = [resolve_checkpoint(f) for f in job.trajectory or []]
    out = output_dir(job.out) if dist.is_writer() else Path(job.out)
    exclude = list(D.DEFAULT_EXCLUDE if job.exclude is None else job.exclude)
    seed = job.inputs.seed if job.dir_seed is None else job.dir_seed
    kind = "target" if target else "trajectory" if series else "random"
    # random directions: settings.planes planes (direction seeds seed + 2i, + 2i + 1), as
    # analyze's surface_planes; a target line or a trajectory plane is one
    planes = settings.planes if kind == "random" else 1
    store = ResultFolder(out, info.sha256)
    idents, runs, dattrs = [], [], {}
    for i in range(planes):
        suffix = "" if i == 0 else f"_p{i}"
        if kind == "random":  # the identity analyze's planes have
            dir_identity = plane_identity(settings.norm, seed + 2 * i, two, mode=job.dir_mode,
                                          biasbn=job.biasbn, exclude=exclude)
        else:
            dir_identity = {"kind": kind, "mode": job.dir_mode, "biasbn": job.biasbn,
                            "exclude": exclude}
            if target is not None:
                dir_identity["target_sha256"] = target.sha256
            else:  # hashed here; each file is parsed once, when the PCA reads it
                dir_identity["trajectory_sha256"] = [file_sha256(f) for f in series]
        dpath = out / f"directions{suffix}.h5"
        err = None
        if dist.is_writer():
            try:
                _ensure_directions(dpath, model,
                                   {**dir_identity, "checkpoint_sha256": info.sha256}, job,
                                   settings, seed + 2 * i, exclude, two, target, series)
            except LandscapeError as e:
                err = str(e)
        err = dist.broadcast_object(err)
        if err:
            raise LandscapeError(err)
        dist.barrier()
        dirs, attrs_i = S.read_directions_file(dpath, model)
        dattrs = dattrs or attrs_i
        runs.append(run_surface(
            model, data, settings, store, directions=dirs, direction_identity=dir_identity,
            info=info, seed=job.inputs.seed, aug_seed=job.aug_seed, plan=job.plan,
            name=f"surface{suffix}.h5", attrs={"job": job.to_dict(), **run_metadata()},
            progress=not job.quiet))
        idents.append(dir_identity)
    if not dist.is_writer():
        return None
    res = runs[0].result
    write_json(out / "config.json", run_metadata(settings=settings.to_dict(), job=job.to_dict(),
                                                 seed=seed, checkpoint_sha256=info.sha256,
                                                 directions=idents[0], planes=idents,
                                                 loss={k: runs[0].extra[k] for k in (
                                                     "wd", "augment", "recipe_source")},
                                                 device=str(data.images.device)))
    if not job.no_plot:
        from ..reporting.plots import surface as P
        P.plot_surface(out / "surface.h5", out, vmax=job.vmax)
        if "trajectory_coords" in dattrs:
            coords = np.array(_loads(dattrs["trajectory_coords"]))
            P.plot_trajectory(out / "surface.h5", coords, out / "trajectory",
                              explained=_loads(dattrs.get("explained", "null")), vmax=job.vmax)
        if job.vtp and two:
            P.export_vtp(out / "surface.h5", out / "surface.vtp")
    split = data.split
    loss = res.arrays[f"{split}_loss"]
    finite = loss[np.isfinite(loss)]
    more = f" and {len(runs) - 1} more plane(s), surface_p1.h5 ..." if len(runs) > 1 else ""
    return (f"surface: {out / 'surface.h5'}{more} ({loss.size} points, "
            + (f"loss min {finite.min():.4g}, " if finite.size else "no finite loss, ")
            + f"{loss.size - finite.size} non-finite)")


def _loads(s: Any) -> Any:
    import json
    return json.loads(s) if isinstance(s, str) else s


def _ensure_directions(path: Path, model: Any, identity: dict[str, Any], job: SurfaceJob,
                       settings: SurfaceSettings, seed: int, exclude: list[str], two: bool,
                       target: Any, series: list[Path]) -> None:
    """Create the directions file once; refuse one made with other settings."""
    import json

    import h5py

    from .. import surface as S
    from ..runners import random_plane
    from ..surface import directions as D
    ident = result_identity({k: v for k, v in identity.items() if k != "checkpoint_sha256"},
                            identity["checkpoint_sha256"])
    if path.exists():
        from ..store.provenance import resume_guard
        with resume_guard(path, "directions file"), h5py.File(path, "r") as f:
            old = json.loads(f.attrs.get("identity", "{}"))
        check(path, "directions", old, ident)
        return
    attrs: dict[str, Any] = {"identity": json.dumps(ident, sort_keys=True), "seed": seed}
    names = D.perturbed_names(model, job.dir_mode, job.biasbn, exclude)
    if identity["kind"] == "random":
        dirs = random_plane(model, settings.norm, seed, two, mode=job.dir_mode,
                            biasbn=job.biasbn, exclude=exclude)[0]
    elif identity["kind"] == "target":
        start = D.model_tensors(model, job.dir_mode)
        dirs = [D.target_direction(start, target.state_dict, names)]
    else:
        allow = job.inputs.allow_nonfinite
        final = {n: t.detach().cpu() for n, t in D.model_tensors(model, job.dir_mode).items()}
        pca = D.trajectory_pca(lambda f: D.load_state_dict_file(f, allow), list(series), final,
                               names)
        dirs = [pca.d1, pca.d2]
        # the path ends at CKPT itself, the origin of the plane
        attrs["trajectory_coords"] = json.dumps(pca.coords.tolist() + [[0.0, 0.0]])
        attrs["explained"] = json.dumps(pca.explained.tolist())
        attrs["trajectory"] = json.dumps(pca.paths)
    S.write_directions_file(path, dirs, attrs)
