"""``landscape alternet-search``: the AlterNet build-up rule run as a resumable search."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "alternet-search", help="build an AlterNet from a baseline CNN by the paper's rules",
        description="Start from the all-conv baseline; replace Conv units by MSA units alternately "
                    "from the end, keep a step only if the validation metric improves, otherwise "
                    "revert it and try the end of an earlier stage; MSA heads grow by stage. Every "
                    "candidate is logged to OUT/search.json (re-running the same command resumes); "
                    "the final AlterNet, the baseline and --compare models are then evaluated on "
                    "the test split (OUT/comparison.json) and plotted (OUT/buildup.png, .pdf).")
    from . import argtypes as T
    from .common import add_device_arg
    p.add_argument("--baseline", default="resnet_tiny",
                   help="baseline CNN: resnet_tiny (as alternet_tiny) or resnet50 (as alternet50)")
    p.add_argument("--depths", type=T.positive_int, nargs="+", default=None,
                   help="units per stage of the baseline (default 2 2 2 for resnet_tiny, "
                        "3 4 6 4 for resnet50)")
    p.add_argument("--data", default="fashion-mnist", help="fashion-mnist, cifar10, cifar100")
    p.add_argument("--data-root", default=None,
                   help="dataset folder (default: $LANDSCAPE_DATA or the standard location)")
    p.add_argument("--subset", type=T.subset_arg, default=3000,
                   help="training images per candidate: a count (integer >= 1), a fraction in "
                        "(0, 1] or a percentage (10%%)")
    p.add_argument("--val-samples", type=T.positive_int, default=1000,
                   help="training images held out as the validation set the search decides on")
    p.add_argument("--test-samples", type=T.nonneg_int, default=0,
                   help="test images for the final comparison (0 = the whole test split)")
    p.add_argument("--data-seed", type=T.seed_int, default=0, help="seed of subset and split")
    p.add_argument("--epochs", type=T.positive_int, default=3, help="training epochs per candidate")
    p.add_argument("--batch-size", type=T.positive_int, default=128, help="mini-batch size")
    p.add_argument("--lr", type=T.positive_float, default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--weight-decay", type=T.nonneg_float, default=5e-2, help="AdamW weight decay")
    p.add_argument("--warmup-epochs", type=T.nonneg_float, default=1.0, help="linear warmup length")
    p.add_argument("--no-augment", action="store_true", help="disable pad-and-crop + flip")
    p.add_argument("--metric", choices=["nll", "acc"], default="nll",
                   help="what a step must improve: validation NLL (lower) or accuracy (higher)")
    p.add_argument("--seeds", type=T.seed_int, nargs="+", default=[0, 1],
                   help="training seeds per candidate; the metric is their mean")
    p.add_argument("--min-delta", type=T.finite_float, default=0.0,
                   help="a step is kept only if it improves the metric by more than this")
    p.add_argument("--patience", type=T.positive_int, default=None,
                   help="stop after this many consecutive rejected steps (default: no limit)")
    p.add_argument("--max-candidates", type=T.positive_int, default=None,
                   help="stop after this many candidates, baseline included (default: no limit)")
    p.add_argument("--min-stage", type=T.nonneg_int, default=0,
                   help="earliest stage (0-based) that may receive an MSA unit")
    p.add_argument("--allow-first", action="store_true",
                   help="let the first unit of a stage (the strided one) become MSA too")
    p.add_argument("--heads-base", type=T.positive_int, default=1,
                   help="MSA heads in the first stage")
    p.add_argument("--heads-growth", type=T.positive_int, default=2,
                   help="factor by which MSA heads grow per stage (rule 3)")
    p.add_argument("--dim-head", type=T.positive_int, default=None,
                   help="channels per MSA head (default: the model's)")
    p.add_argument("--compare", nargs="*", default=["vit_tiny"],
                   help="registry models also trained and tested in the final comparison "
                        "(give none to skip them)")
    add_device_arg(p, default="cpu")
    p.add_argument("--out", required=True, help="output folder (log, comparison, figures)")
    p.add_argument("--runs-dir", default=None,
                   help="folder for the candidates' checkpoints (default OUT/runs)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> Any:
    """The :class:`BuildupSettings` an argument namespace asks for."""
    from ..alternet_search import BuildupSettings
    from ..validate import subset_value, to_int

    subset = subset_value(args.subset)  # argparse checked them; a Namespace built by hand too
    to_int(args.epochs, lo=1, what="--epochs")
    return BuildupSettings(
        baseline=args.baseline, depths=tuple(args.depths) if args.depths else None,
        data=args.data, data_root=args.data_root, subset=subset, val_samples=args.val_samples,
        test_samples=args.test_samples, data_seed=args.data_seed, metric=args.metric,
        seeds=tuple(args.seeds), min_delta=args.min_delta, keep_first=not args.allow_first,
        min_stage=args.min_stage, patience=args.patience, max_candidates=args.max_candidates,
        heads_base=args.heads_base, heads_growth=args.heads_growth, dim_head=args.dim_head,
        compare=tuple(args.compare or ()),
        train={"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
               "weight_decay": args.weight_decay, "warmup_epochs": args.warmup_epochs,
               "augment": not args.no_augment},
        device=args.device)


def run(args: argparse.Namespace) -> int:
    from ..alternet_search import buildup_run
    for line in buildup_run(settings_from_args(args), args.out, args.runs_dir,
                            progress=not args.quiet):
        print(line)
    return 0
