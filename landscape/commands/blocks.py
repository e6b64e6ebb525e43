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
    from ..loading.user_model import describe_checkpoint_blocks
    from ..workflows.inputs import InputOptions, check_checkpoints
    checkpoint = check_checkpoints(InputOptions(allow_nonfinite=args.allow_nonfinite),
                                   [args.checkpoint])[0]  # NaN/inf weights: refused
    print(describe_checkpoint_blocks(checkpoint, model=args.model, model_def=args.model_def,
                                     blocks=args.blocks, data=args.data,
                                     input_shape=args.input_shape, code_root=args.code_root,
                                     kwargs=args.model_kwargs))
    return 0
