"""``landscape train``: train a registry model on a dataset, with resumable checkpoints."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import LandscapeError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="train a model (AdamW + warmup + cosine); resumable",
        description="Train a model from the registry on a dataset held in memory. Checkpoints go "
                    "to --out (epoch_NNN.pt every --save-every epochs, last.pt after each epoch, "
                    "model.pt at the end); re-running the same command resumes.")
    from .common import (
        add_device_arg,
        add_nonfinite_arg,
        nonneg_float,
        nonneg_int,
        positive_float,
        positive_int,
        seed_int,
        subset_arg,
        unit_float_below_one,
    )
    p.add_argument("--model", required=True, help="architecture name from the registry")
    p.add_argument("--data", required=True, help="fashion-mnist, cifar10, cifar100 or imagefolder")
    p.add_argument("--data-root", default=None,
                   help="dataset folder (default: $LANDSCAPE_DATA or the standard location)")
    p.add_argument("--download", action="store_true", help="download CIFAR if missing")
    p.add_argument("--subset", type=subset_arg, default=None,
                   help="train on a seeded subset: a count (integer >= 1, e.g. 3000), a fraction "
                        "in (0, 1] (e.g. 0.1) or a percentage (10%%) (default: all images)")
    p.add_argument("--test-samples", type=nonneg_int, default=0,
                   help="evaluate on this many test images after each epoch (0 = all)")
    p.add_argument("--epochs", type=positive_int, default=5, help="number of epochs")
    p.add_argument("--batch-size", type=positive_int, default=128, help="mini-batch size")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw",
                   help="AdamW, or SGD with momentum 0.9 (the paper's CNN recipe)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate")
    p.add_argument("--weight-decay", type=nonneg_float, default=5e-2, help="AdamW weight decay")
    p.add_argument("--warmup-epochs", type=nonneg_float, default=1.0, help="linear warmup length")
    p.add_argument("--label-smoothing", type=unit_float_below_one, default=0.0,
                   help="label smoothing, in [0, 1)")
    p.add_argument("--no-augment", action="store_true", help="disable pad-and-crop + flip")
    p.add_argument("--no-flip", action="store_true", help="disable horizontal flips only")
    p.add_argument("--mixup", type=nonneg_float, default=0.0, help="mixup alpha (0 = off)")
    p.add_argument("--cutmix", type=nonneg_float, default=0.0, help="cutmix alpha (0 = off)")
    p.add_argument("--save-every", type=positive_int, default=1,
                   help="keep epoch_NNN.pt every N epochs")
    p.add_argument("--init", default=None,
                   help="start from this trained checkpoint (fine-tuning); tensors whose shape "
                        "differs (head for other classes, stem for other channels) are "
                        "re-initialized (default: random initialization)")
    add_nonfinite_arg(p)
    p.add_argument("--freeze", action="store_true", help="train only the classifier head")
    p.add_argument("--seed", type=seed_int, default=0,
                   help="seed for init, subset, order, augmentation")
    add_device_arg(p)
    p.add_argument("--out", required=True, help="output folder for checkpoints and metrics")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    import models

    from ..data import load_dataset
    from ..device import resolve_device
    from ..provenance import output_dir
    from ..train import TrainConfig, init_from, train
    from .common import check_checkpoints

    if args.init:
        check_checkpoints(args, [args.init])
    device = resolve_device(args.device)
    tr = load_dataset(args.data, "train", root=args.data_root, subset=args.subset, seed=args.seed,
                      download=args.download)
    te = load_dataset(args.data, "test", root=args.data_root, subset=args.test_samples or None,
                      seed=args.seed, download=args.download)
    torch.manual_seed(args.seed)
    try:
        model = models.create(args.model, num_classes=tr.num_classes, in_chans=tr.images.shape[1],
                              img_size=tr.images.shape[-1])
    except KeyError as e:
        raise LandscapeError(str(e).strip("'\"")) from None
    if args.init:
        reinit = init_from(model, args.init)
        print(f"initialized from {args.init}; re-initialized: {', '.join(reinit) or 'nothing'}")
    out = output_dir(args.out)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      optimizer=args.optimizer,
                      weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                      label_smoothing=args.label_smoothing, augment=not args.no_augment,
                      flip=not args.no_flip, mixup=args.mixup, cutmix=args.cutmix, seed=args.seed,
                      save_every=args.save_every, freeze=args.freeze)
    model.to(device)
    metrics = train(model, tr.to(device), te.to(device), cfg, out, progress=not args.quiet,
                    info={"init": args.init, "subset": args.subset})
    print(f"{args.model}: test_acc={metrics.get('test_acc', float('nan')):.4f} "
          f"test_loss={metrics.get('test_loss', float('nan')):.4f} -> {out / 'model.pt'}")
    return 0
