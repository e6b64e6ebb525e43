"""``landscape train``: train a registry model on a dataset, with resumable checkpoints."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="train a model (AdamW + warmup + cosine); resumable",
        description="Train a model from the registry on a dataset held in memory. Checkpoints go "
                    "to --out (epoch_NNN.pt every --save-every epochs, last.pt after each epoch, "
                    "model.pt at the end); re-running the same command resumes.")
    from . import argtypes as T
    from .common import add_device_arg, add_nonfinite_arg
    p.add_argument("--model", required=True, help="architecture name from the registry")
    p.add_argument("--data", required=True, help="fashion-mnist, cifar10, cifar100 or imagefolder")
    p.add_argument("--data-root", default=None,
                   help="dataset folder (default: $LANDSCAPE_DATA or the standard location)")
    p.add_argument("--download", action="store_true", help="download CIFAR if missing")
    p.add_argument("--subset", type=T.subset_arg, default=None,
                   help="train on a seeded subset: a count (integer >= 1, e.g. 3000), a fraction "
                        "in (0, 1] (e.g. 0.1) or a percentage (10%%) (default: all images)")
    p.add_argument("--test-samples", type=T.nonneg_int, default=0,
                   help="evaluate on this many test images after each epoch (0 = all)")
    p.add_argument("--epochs", type=T.positive_int, default=5, help="number of epochs")
    p.add_argument("--batch-size", type=T.positive_int, default=128, help="mini-batch size")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw",
                   help="AdamW, or SGD with momentum 0.9 (the paper's CNN recipe)")
    p.add_argument("--lr", type=T.positive_float, default=1e-3, help="peak learning rate")
    p.add_argument("--weight-decay", type=T.nonneg_float, default=5e-2, help="AdamW weight decay")
    p.add_argument("--warmup-epochs", type=T.nonneg_float, default=1.0, help="linear warmup length")
    p.add_argument("--label-smoothing", type=T.unit_float_below_one, default=0.0,
                   help="label smoothing, in [0, 1)")
    p.add_argument("--no-augment", action="store_true", help="disable pad-and-crop + flip")
    p.add_argument("--no-flip", action="store_true", help="disable horizontal flips only")
    p.add_argument("--mixup", type=T.nonneg_float, default=0.0, help="mixup alpha (0 = off)")
    p.add_argument("--cutmix", type=T.nonneg_float, default=0.0, help="cutmix alpha (0 = off)")
    p.add_argument("--save-every", type=T.positive_int, default=1,
                   help="keep epoch_NNN.pt every N epochs")
    p.add_argument("--init", default=None,
                   help="start from this trained checkpoint (fine-tuning); tensors whose shape "
                        "differs (head for other classes, stem for other channels) are "
                        "re-initialized (default: random initialization)")
    add_nonfinite_arg(p)
    p.add_argument("--freeze", action="store_true", help="train only the classifier head")
    p.add_argument("--seed", type=T.seed_int, default=0,
                   help="seed for init, subset, order, augmentation")
    add_device_arg(p)
    p.add_argument("--out", required=True, help="output folder for checkpoints and metrics")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import TrainConfig
    from ..workflows.train import TrainJob, train_run
    a = args
    config = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, optimizer=a.optimizer,
                         weight_decay=a.weight_decay, warmup_epochs=a.warmup_epochs,
                         label_smoothing=a.label_smoothing, augment=not a.no_augment,
                         flip=not a.no_flip, mixup=a.mixup, cutmix=a.cutmix, seed=a.seed,
                         save_every=a.save_every, freeze=a.freeze)
    job = TrainJob(model=a.model, data=a.data, out=a.out, data_root=a.data_root,
                   download=a.download, subset=a.subset, test_samples=a.test_samples,
                   init=a.init, allow_nonfinite=a.allow_nonfinite, device=a.device,
                   quiet=a.quiet)
    metrics, reinit, out = train_run(config, job)
    if args.init:
        print(f"initialized from {args.init}; re-initialized: {', '.join(reinit) or 'nothing'}")
    print(f"{args.model}: test_acc={metrics.get('test_acc', float('nan')):.4f} "
          f"test_loss={metrics.get('test_loss', float('nan')):.4f} -> {out / 'model.pt'}")
    return 0
