"""Arguments and loading shared by the subcommands (checkpoint + dataset + device)."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import LandscapeError


def add_checkpoint_args(p: argparse.ArgumentParser, many: bool = False) -> None:
    """Positional CKPT (one, or several with ``many``) and ``--model`` for bare state_dicts."""
    p.add_argument("checkpoints" if many else "checkpoint", metavar="CKPT", nargs="+" if many else None,
                   help="checkpoint file(s): our format, the paper's {name, state_dict} format, "
                        "or a bare state_dict (then give --model)")
    p.add_argument("--model", default=None,
                   help="architecture name for a bare state_dict or to override the recorded one "
                        "(see `python -c 'import models; print(models.names())'`)")


def add_data_args(p: argparse.ArgumentParser, samples: int = 1000, batch_size: int = 256,
                  split: str = "test") -> None:
    """``--data --data-root --split --samples --batch-size --seed --device``."""
    p.add_argument("--data", default=None,
                   help="dataset name: fashion-mnist, cifar10, cifar100 or imagefolder "
                        "(default: the dataset recorded in the checkpoint)")
    p.add_argument("--data-root", default=None,
                   help="dataset folder (default: $LANDSCAPE_DATA or the standard location)")
    p.add_argument("--download", action="store_true",
                   help="download CIFAR archives (checksum verified) if missing")
    p.add_argument("--split", choices=["train", "test"], default=split,
                   help=f"which split to analyze (default {split})")
    p.add_argument("--samples", type=int, default=samples,
                   help=f"number of images used (a seeded subset; 0 = all; default {samples})")
    p.add_argument("--batch-size", type=int, default=batch_size,
                   help=f"images per forward pass (default {batch_size})")
    p.add_argument("--seed", type=int, default=0, help="seed for subsets, directions and probes")
    p.add_argument("--device", default="auto",
                   help="torch device: auto (GPU if available), cpu, cuda, cuda:1, ...")


def add_out_arg(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--out", default=default, help=f"output folder (default {default})")


def load_data_for(info: Any, args: argparse.Namespace, split: str | None = None,
                  samples: int | None = None) -> Any:
    """The dataset a checkpoint was trained on (or ``--data``), as tensors on ``args.device``."""
    from ..checkpoint import check_compatible
    from ..data import load_dataset
    from ..device import resolve_device

    name = getattr(args, "data", None) or info.dataset
    if not name:
        raise LandscapeError(f"{info.path} does not record its dataset; pass --data")
    n = args.samples if samples is None else samples
    norm: object = True
    if info.mean is not None and info.std is not None:
        norm = (tuple(info.mean), tuple(info.std))  # exactly what the model was trained with
    data = load_dataset(name, split=split or args.split, root=getattr(args, "data_root", None),
                        subset=(n or None), seed=args.seed, normalize=norm,
                        download=getattr(args, "download", False))
    check_compatible(info, data)
    return data.to(resolve_device(args.device))


def load_checkpoint_and_data(args: argparse.Namespace, ckpt_path: str) -> tuple[Any, Any, Any]:
    """(model in eval mode on ``args.device``, CheckpointInfo, ImageData on the same device)."""
    from ..checkpoint import load
    from ..device import resolve_device

    model, info = load(ckpt_path, model=getattr(args, "model", None),
                       device=resolve_device(args.device))
    return model, info, load_data_for(info, args)
