"""``landscape surface``: filter-normalized 1-D/2-D loss surfaces, resumable, distributable.

The work: :func:`landscape.workflows.surface.surface_run`.
"""
from __future__ import annotations

import argparse
import re
from typing import Any


def add_parser(sub: Any) -> None:
    from ..settings import SurfaceSettings as SF
    from ..settings import default_of as d
    from ..workflows.surface import DESCRIPTION
    from .argtypes import (
        grid_spec,
        nonneg_float,
        nonneg_int,
        positive_float,
        positive_int,
        seed_int,
        ygrid_spec,
    )
    from .common import add_checkpoint_args, add_data_args
    from .options import link, settings_option, uses_settings

    p = sub.add_parser("surface",
                       help="filter-normalized 1-D/2-D loss surfaces (resumable, distributed)",
                       description=DESCRIPTION)
    # let "--grid -1:1:21" through: a value starting with "-<digit>" is not an option here
    p._negative_number_matcher = re.compile(r"^-\.?\d")
    add_checkpoint_args(p)
    add_data_args(p, samples=SF.samples, batch_size=0, split="train")
    uses_settings(p, SF)
    link(p, "samples", SF, "samples",
         help=f"images the loss is averaged over (a seeded stratified subset of --split; 0 = "
              f"all; default {SF.samples}, as analyze's surface_samples)")
    settings_option(p, "--grid", "--x", dest="grid", settings=SF, field="grid", type=grid_spec,
                    metavar="MIN:MAX:NUM",
                    help=f"x coordinates (np.linspace(MIN, MAX, NUM); default {d(SF, 'grid')})")
    settings_option(p, "--ygrid", "--y", dest="ygrid", settings=SF, field="ygrid", type=ygrid_spec,
                    metavar="MIN:MAX:NUM", default_doc=f"{d(SF, 'ygrid')}, none with --target",
                    help=f"y coordinates of a 2-D surface (default {d(SF, 'ygrid')}, as analyze; "
                         "none: a 1-D curve, the default with --target)")
    settings_option(p, "--planes", settings=SF, field="planes", type=positive_int,
                    help="random planes, written to surface.h5, surface_p1.h5, ... with "
                         "directions.h5, directions_p1.h5, ... (direction seeds --dir-seed + 2i "
                         "and + 2i + 1, as analyze's surface_planes; --target and --trajectory "
                         "give one)")
    p.add_argument("--out", default="runs/surface", help="output folder (default runs/surface)")
    g = p.add_argument_group("directions")
    settings_option(g, "--norm", settings=SF, field="norm",
                    help="direction normalization (default filter, as Li et al.; hdvw: the paper "
                        "code's norm over dim 0)")
    g.add_argument("--dir-mode", choices=["weights", "states"], default="weights",
                   help="weights: parameters only, BN statistics fixed (default); "
                        "states: also move floating buffers such as BN running mean/var")
    g.add_argument("--biasbn", action="store_true",
                   help="also perturb 1-D parameters (biases, norm affine); default: left fixed")
    g.add_argument("--exclude", action="append", default=None, metavar="REGEX",
                   help="never perturb parameters whose name matches REGEX (repeatable; default: "
                        "position embeddings: pos_embed, pos_embedding, position_embedding, "
                        "absolute_pos)")
    g.add_argument("--no-exclude", action="store_true",
                   help="perturb position embeddings too (drop the default exclusions)")
    g.add_argument("--dir-seed", type=seed_int, default=None,
                   help="seed of the random directions (default: --seed; y uses seed+1)")
    g.add_argument("--target", default=None, metavar="CKPT2",
                   help="1-D interpolation: direction = CKPT2 - CKPT (x=0 is CKPT, x=1 is CKPT2)")
    g.add_argument("--trajectory", nargs="+", default=None, metavar="CKPT_T",
                   help="training checkpoints (in order) whose two PCA directions span the plane; "
                        "CKPT is the final point; the path is drawn on the contours. The PCA "
                        "directions have unit norm, so the grid is in parameter-space distance "
                        "(e.g. --grid -5:5:21)")
    e = p.add_argument_group("evaluation")
    settings_option(e, "--wd", settings=SF, field="wd", type=nonneg_float,
                    help="also store NLL + wd*L2 with both conventions: <split>_loss_l2_paper "
                        "(wd * sum of per-tensor norms) and <split>_loss_l2_half "
                        "(wd*0.5*||theta||^2); default: the checkpoint's training weight decay "
                        "(0 when unknown), as analyze's paper loss")
    settings_option(e, "--augment", settings=SF, field="augment",
                    action=argparse.BooleanOptionalAction,
                    help="evaluate on augmented images (the training recipe's pad-and-crop + "
                        "flip), drawn once with --aug-seed so every grid point sees the same "
                        "images (default on, as analyze; --no-augment: the images as given)")
    e.add_argument("--aug-seed", type=seed_int, default=0,
                   help="seed of the augmentation (default 0)")
    e.add_argument("--points-per-pass", type=nonneg_int, default=0,
                   help="grid points evaluated per data pass with torch.func.vmap (1 = plain loop; "
                        "0 = measure, default)")
    e.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                   help="channels_last memory format for conv nets (default: measure)")
    e.add_argument("--fold-bn", choices=["auto", "on", "off"], default="auto",
                   help="fold each Conv2d+BatchNorm2d pair into one conv during evaluation "
                        "(same function, rounding differs; default: measure)")
    e.add_argument("--first-layer", choices=["auto", "on", "off"], default="auto",
                   help="compute the first layer's output as W0x + a*D1x + b*D2x from terms "
                        "computed once (default: measure)")
    e.add_argument("--workers", type=nonneg_int, default=0,
                   help="CPU: grid points evaluated at once by that many threads, each on its own "
                        "copy of the model with one intra-op thread (on a few cores small models "
                        "run faster this way); 0 = measure (default), 1 = off")
    e.add_argument("--compile", action="store_true",
                   help="torch.compile the model (pays off for CNNs on large grids; compile time "
                        "is tens of seconds)")
    o = p.add_argument_group("output")
    o.add_argument("--no-plot", action="store_true", help="do not draw figures")
    o.add_argument("--vmax", type=positive_float, default=None,
                   help="upper loss limit of the figures (default: from the data)")
    o.add_argument("--vtp", action="store_true", help="also export surface.vtp for ParaView (2-D)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


_AUTO = {"auto": None, "on": True, "off": False}


def run(args: argparse.Namespace) -> int:
    from ..settings import SurfaceSettings
    from ..workflows.surface import SurfaceJob, surface_run
    from .common import input_options
    ygrid = args.ygrid if args.ygrid is not None else (
        "" if args.target else SurfaceSettings.ygrid)
    settings = SurfaceSettings(grid=args.grid, ygrid=ygrid, norm=args.norm, planes=args.planes,
                               augment=bool(args.augment), wd=args.wd, samples=args.samples)
    plan = {"batch_size": args.batch_size or None,
            "points_per_pass": args.points_per_pass or None,
            "channels_last": _AUTO[args.channels_last], "fold_bn": _AUTO[args.fold_bn],
            "first_layer": _AUTO[args.first_layer], "compile": bool(args.compile),
            "workers": args.workers or None}
    # the pinned keys only (as analyze's surface_plan); compile only when asked for
    plan = {k: v for k, v in plan.items() if v is not None and (k != "compile" or v)}
    job = SurfaceJob(args.checkpoint, args.out, input_options(args), dir_mode=args.dir_mode,
                     biasbn=args.biasbn, exclude=[] if args.no_exclude else args.exclude,
                     dir_seed=args.dir_seed, target=args.target, trajectory=args.trajectory,
                     aug_seed=args.aug_seed, plan=plan, no_plot=args.no_plot, vmax=args.vmax,
                     vtp=args.vtp, quiet=args.quiet)
    line = surface_run(settings, job)
    if line:
        print(line)
    return 0
