"""``landscape surface``: directions made once per output folder (refused when made with other
settings), the surface evaluated into ``surface.h5`` (resumable, shared among torchrun ranks),
``config.json`` and the figures. Imports nothing heavy at module level (the CLI reads
:data:`DESCRIPTION` for its help)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import LandscapeError
from ..resume import check
from ..resume import identity as result_identity

DESCRIPTION = """\
Evaluate loss and accuracy at theta0 + x*d1 (+ y*d2) over a grid (Li et al. 2018).
Directions: random Gaussian (seeded, recorded) normalized per filter (default), per layer,
over the model or not at all; --target gives the 1-D line from CKPT (x=0) to another
checkpoint (x=1); --trajectory gives the two PCA directions of a series of checkpoints
(CKPT is the final one) and draws the projected path over the contours.
Output folder: surface.h5 (datasets xcoordinates, ycoordinates, <split>_loss, <split>_acc as
in the reference tool; unfinished points NaN), directions.h5, config.json and figures.
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


def surface_run(args: Any) -> str | None:
    """Run ``landscape surface`` with ``args`` (its argparse namespace); returns the line to
    print (None on ranks other than the writer)."""
    import numpy as np

    from .. import directions as D
    from .. import distributed as dist
    from .. import surface as S
    from ..provenance import file_sha256, output_dir, run_metadata, write_json
    from .inputs import check_checkpoints, load_checkpoint_and_data

    dist.init_from_env()
    xs = S.parse_grid(args.grid)
    ys = S.parse_grid(args.ygrid) if args.ygrid else None
    if args.target and (args.trajectory or ys is not None):
        raise LandscapeError("--target gives a 1-D line: "
                             "do not combine it with --ygrid/--trajectory")
    if args.trajectory and ys is None:
        raise LandscapeError("--trajectory needs a 2-D grid (--ygrid)")
    model, info, data = load_checkpoint_and_data(args, args.checkpoint)
    check_checkpoints(args, ([args.target] if args.target else []) + (args.trajectory or []))
    out = output_dir(args.out) if dist.is_writer() else Path(args.out)
    exclude = [] if args.no_exclude else (args.exclude or list(D.DEFAULT_EXCLUDE))
    seed = args.seed if args.dir_seed is None else args.dir_seed
    kind = "target" if args.target else "trajectory" if args.trajectory else "random"
    dir_identity: dict[str, Any] = {"kind": kind, "mode": args.dir_mode, "biasbn": args.biasbn,
                                    "exclude": exclude, "checkpoint_sha256": info.sha256}
    if kind == "random":
        dir_identity.update({"norm": args.norm, "seed": seed,
                             "ndirections": 1 if ys is None else 2})
    elif kind == "target":
        dir_identity["target_sha256"] = file_sha256(args.target)
    else:
        dir_identity["trajectory_sha256"] = [file_sha256(f) for f in args.trajectory]
    dpath = out / "directions.h5"
    err = None
    if dist.is_writer():
        try:
            _ensure_directions(dpath, model, dir_identity, args, seed, exclude, ys is not None)
        except LandscapeError as e:
            err = str(e)
    err = dist.broadcast_object(err)
    if err:
        raise LandscapeError(err)
    dist.barrier()
    dirs, dattrs = S.read_directions_file(dpath, model)
    augment = None
    if args.augment:
        from ..data import Augment
        augment = Augment(mean=data.mean, std=data.std)
    config = {k: v for k, v in vars(args).items() if k != "func"}
    identity = {"checkpoint_sha256": info.sha256, "directions": dir_identity}
    eval_identity = {"data": data.name, "split": data.split, "samples": args.samples,
                     "data_seed": args.seed, "augment_repr": repr(augment) if augment else None}
    attrs = {"config": config, "seed": seed, "checkpoint_sha256": info.sha256,
             "checkpoint": str(args.checkpoint), "model": info.model, **run_metadata()}
    res = S.compute_surface(
        model, dirs, data.images, data.labels, xs, ys, out / "surface.h5", split=data.split,
        identity=identity, eval_identity=eval_identity, wd=args.wd, augment=augment,
        aug_seed=args.aug_seed, batch_size=args.batch_size or None,
        points_per_pass=args.points_per_pass or None,
        channels_last=_AUTO[args.channels_last],
        fold_bn=_AUTO[args.fold_bn], first_layer=_AUTO[args.first_layer],
        compile=args.compile, workers=args.workers or None, attrs=attrs, progress=not args.quiet)
    if not dist.is_writer():
        return None
    write_json(out / "config.json", run_metadata(config=config, seed=seed,
                                                 checkpoint_sha256=info.sha256,
                                                 directions=dir_identity,
                                                 device=str(data.images.device)))
    if not args.no_plot:
        from ..reporting.plots import surface as P
        P.plot_surface(out / "surface.h5", out, vmax=args.vmax)
        if "trajectory_coords" in dattrs:
            coords = np.array(_loads(dattrs["trajectory_coords"]))
            P.plot_trajectory(out / "surface.h5", coords, out / "trajectory",
                              explained=_loads(dattrs.get("explained", "null")), vmax=args.vmax)
        if args.vtp and ys is not None:
            P.export_vtp(out / "surface.h5", out / "surface.vtp")
    split = data.split
    loss = res.arrays[f"{split}_loss"]
    finite = loss[np.isfinite(loss)]
    return (f"surface: {out / 'surface.h5'} ({loss.size} points, "
            + (f"loss min {finite.min():.4g}, " if finite.size else "no finite loss, ")
            + f"{loss.size - finite.size} non-finite)")


_AUTO = {"auto": None, "on": True, "off": False}


def _loads(s: Any) -> Any:
    import json
    return json.loads(s) if isinstance(s, str) else s


def _ensure_directions(path: Path, model: Any, identity: dict[str, Any], args: Any,
                       seed: int, exclude: list[str], two: bool) -> None:
    """Create the directions file once; refuse one made with other settings."""
    import json

    import h5py

    from .. import directions as D
    from .. import surface as S
    ident = result_identity({k: v for k, v in identity.items() if k != "checkpoint_sha256"},
                            identity["checkpoint_sha256"])
    if path.exists():
        from ..provenance import resume_guard
        with resume_guard(path, "directions file"), h5py.File(path, "r") as f:
            old = json.loads(f.attrs.get("identity", "{}"))
        check(path, "directions", old, ident)
        return
    attrs: dict[str, Any] = {"identity": json.dumps(ident, sort_keys=True), "seed": seed}
    names = D.perturbed_names(model, args.dir_mode, args.biasbn, exclude)
    if identity["kind"] == "random":
        dirs = [D.random_direction(model, seed, args.norm, args.dir_mode, args.biasbn, exclude)]
        if two:
            dirs.append(D.random_direction(model, seed + 1, args.norm, args.dir_mode, args.biasbn,
                                           exclude))
    elif identity["kind"] == "target":
        start = D.model_tensors(model, args.dir_mode)
        end = D.load_state_dict_file(args.target)
        dirs = [D.target_direction(start, end, names)]
    else:
        final = {n: t.detach().cpu() for n, t in D.model_tensors(model, args.dir_mode).items()}
        pca = D.trajectory_pca(D.load_state_dict_file, list(args.trajectory), final, names)
        dirs = [pca.d1, pca.d2]
        # the path ends at CKPT itself, the origin of the plane
        attrs["trajectory_coords"] = json.dumps(pca.coords.tolist() + [[0.0, 0.0]])
        attrs["explained"] = json.dumps(pca.explained.tolist())
        attrs["trajectory"] = json.dumps(pca.paths)
    S.write_directions_file(path, dirs, attrs)
