"""``landscape blocks``: a model's block list (name, kind, stage, output shape), no analysis."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    from .common import add_checkpoint_args
    p = sub.add_parser(
        "blocks", help="print a checkpoint's block list (name, kind, stage, output shape)",
        description="Load the checkpoint (a registry model, or your own with --model-def), take "
                    "its block list (--blocks, else the model's block_list(), else inferred from "
                    "module types) and print each block's name, kind, stage and output shape for "
                    "one batch of two images, without running any analysis. Every feature-map "
                    "analysis and the lesion study use exactly this list.")
    add_checkpoint_args(p)
    p.add_argument("--data", default=None,
                   help="dataset whose image shape probes the model (default: the checkpoint's)")
    p.add_argument("--input-shape", default=None, metavar="C,H,W",
                   help="probe input shape instead of a dataset's, e.g. 3,32,32")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    import models
    from models.blocks import describe

    from ..errors import LandscapeError
    from ..user_model import example_input, format_blocks, load_model

    x = None
    if args.input_shape:
        try:
            shape = tuple(int(v) for v in args.input_shape.split(","))
        except ValueError:
            shape = ()
        if len(shape) != 3 or min(shape) < 1:
            raise LandscapeError(f"--input-shape expects C,H,W (three positive integers), "
                                 f"got {args.input_shape!r}")
        x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    net, info = load_model(args.checkpoint, model=args.model, model_def=args.model_def,
                           blocks=args.blocks, dataset=args.data, example=x)
    if x is None:
        x = example_input(args.data or info.dataset)
    kw = info.model_kwargs
    if x is None and kw.get("in_chans") and kw.get("img_size"):  # registry models know theirs
        c, s = int(kw["in_chans"]), int(kw["img_size"])
        x = torch.randn(2, c, s, s, generator=torch.Generator().manual_seed(0))
    source = info.extra.get("blocks", "block_list()")
    probe = f"input {'x'.join(map(str, x.shape))}" if x is not None else \
        "no input shape known: pass --data or --input-shape for shapes, order and stages"
    print(format_blocks(describe(net, models.blocks(net), x),
                        f"{info.path}: {info.model}, blocks from {source}, {probe}"))
    return 0
