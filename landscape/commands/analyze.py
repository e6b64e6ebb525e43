"""``landscape analyze``: every analysis on one or more checkpoints, one HTML report."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any


def add_parser(sub: Any) -> None:
    from ..analyze.config import ANALYSES, BUDGETS, AnalyzeConfig
    from .argtypes import seed_int
    from .common import add_device_arg, add_nonfinite_arg
    p = sub.add_parser(
        "analyze", help="all analyses on one or more checkpoints + HTML report",
        description="Run the Hessian spectrum and curvature, loss surface, Fourier, variance, "
                    "noise robustness, CKA and lesion analyses on each checkpoint (same images, "
                    "direction and probe seeds for all), then write OUT/report.html, "
                    "OUT/summary.json, raw results under OUT/raw and figures under OUT/figures. "
                    "Re-running reuses finished raw results. Every budget setting can be "
                    "overridden with --set KEY=VALUE or a TOML file (--config). Under torchrun "
                    "(torchrun --nproc-per-node N -m landscape analyze ...) the Hessian "
                    "mini-batches, curvature batches and surface grid points are sharded over "
                    "the ranks; rank 0 writes everything.")
    p.add_argument("checkpoints", metavar="CKPT", nargs="*",
                   help="checkpoint files (our format, the paper's, or bare state_dicts with "
                        "--model or --model-def); --models adds more, each with its own card")
    p.add_argument("--models", default=None, metavar="CARDS.toml",
                   help="model cards: one TOML table per checkpoint, [NAME] (the model's label) "
                        "with path, and optionally model-def, code-root, kwargs "
                        "(kwargs = {num_classes = 10}), input-shape ([3, 32, 32]), family (cnn, "
                        "vit or hybrid; default: inferred from the blocks: msa only vit, conv "
                        "only cnn, both hybrid) and blocks ([{name = \"layer1\", kind = \"conv\", "
                        "stage = 0}, ...]); relative paths are relative to the card file. "
                        "Zoo checkpoints need no card; cards and CKPT files mix")
    p.add_argument("--model", default=None,
                   help="architecture name for bare state_dicts (default: the one recorded in "
                        "each checkpoint)")
    from .common import add_model_def_args
    add_model_def_args(p)
    p.add_argument("--data", default=None,
                   help="dataset (default: the one recorded in the checkpoints)")
    p.add_argument("--data-root", default=None, help="dataset folder (default: standard location)")
    p.add_argument("--download", action="store_true",
                   help="download CIFAR archives (checksum verified) if missing")
    p.add_argument("--input-shape", default=None, metavar="C,H,W",
                   help="input shape of the CKPT models (e.g. 3,32,32), checked against the "
                        "data's images; block stages come from the first batch of the data")
    p.add_argument("--budget", default="quick", choices=list(BUDGETS),
                   help="preset of samples, grid, batches and top-k (quick, the default: minutes "
                        "on a CPU; standard; paper: the paper's settings, for GPUs)")
    p.add_argument("--no-adapt", dest="adapt", action="store_false",
                   help="keep the quick budget's settings even when the cost estimate of the "
                        "largest model exceeds its target (by default the quick budget is "
                        "reduced for every model alike, and the report says how); make demo "
                        "uses it so that its numbers do not depend on the machine's speed")
    p.add_argument("--config", default=None,
                   help="TOML file with settings (top-level keys or an [analyze] table) applied "
                        "over the budget (default: none)")
    names = ", ".join(f.name for f in dataclasses.fields(AnalyzeConfig))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override one setting (repeatable); keys: {names}")
    p.add_argument("--only", default=None,
                   help=f"comma-separated subset of analyses: {', '.join(ANALYSES)} "
                        "(default: all)")
    p.add_argument("--seed", type=seed_int, default=None,
                   help="seed for images, directions and probes (default: the budget's, 0)")
    add_device_arg(p, default=None)
    add_nonfinite_arg(p)
    p.add_argument("--force", action="store_true", help="recompute even finished raw results")
    p.add_argument("--raw", default=None, metavar="DIR",
                   help="folder of raw results, shared between runs that use the same settings "
                        "(default: OUT/raw)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--out", required=True,
                   help="output folder (report.html, summary.json, raw/, figures/)")
    p.set_defaults(func=run)


def _parse_value(text: str) -> Any:
    import tomllib
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def run(args: argparse.Namespace) -> int:
    from ..errors import LandscapeError
    if not args.checkpoints and not args.models:
        raise LandscapeError("no checkpoint given: pass CKPT files or --models CARDS.toml")
    from ..analyze.config import make_config
    from ..analyze.run import analyze
    overrides: dict[str, Any] = {"data": args.data, "data_root": args.data_root,
                                 "seed": args.seed, "device": args.device}
    for item in args.set:
        if "=" not in item:
            raise LandscapeError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k.strip()] = _parse_value(v.strip())
    cfg = make_config(args.budget, args.config, overrides)
    from ..loading.model_args import parse_input_shape
    from ..loading.model_cards import read_cards
    cards = read_cards(args.models) if args.models else []
    shape = parse_input_shape(args.input_shape) if args.input_shape else None
    # missing or NaN/inf checkpoints are refused by analyze before any output (one read each)
    only = [a.strip() for a in args.only.split(",")] if args.only else None
    analyze(args.checkpoints, args.out, cfg, only=only, force=args.force, model=args.model,
            progress=not args.quiet, budget=args.budget, raw_dir=args.raw,
            model_def=args.model_def, blocks=args.blocks, code_root=args.code_root,
            cards=cards, model_kwargs=args.model_kwargs, input_shape=shape,
            download=args.download, allow_nonfinite=False, adapt=args.adapt)
    return 0
