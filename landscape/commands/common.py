"""Arguments shared by the subcommands (checkpoint, dataset, device, output folder).

Nothing here imports torch or numpy: ``landscape --help`` and argument errors answer before the
heavy imports. The argparse types live in :mod:`.argtypes`, the loading in
:mod:`landscape.workflows.inputs`.
"""
from __future__ import annotations

import argparse

from .argtypes import nonneg_int, positive_int, seed_int


def add_checkpoint_args(p: argparse.ArgumentParser, many: bool = False) -> None:
    """Positional CKPT (one, or several with ``many``) and ``--model`` for bare state_dicts."""
    p.add_argument("checkpoints" if many else "checkpoint", metavar="CKPT",
                   nargs="+" if many else None,
                   help="checkpoint file(s): our format, the paper's {name, state_dict} format, "
                        "or a bare state_dict (then give --model)")
    p.add_argument("--model", default=None,
                   help="architecture name for a bare state_dict or to override the recorded one "
                        "(default: the one recorded in the checkpoint; see "
                        "`python -c 'import landscape_models; print(landscape_models.names())'`)")
    add_nonfinite_arg(p)
    add_model_def_args(p)


def add_nonfinite_arg(p: argparse.ArgumentParser) -> None:
    """``--allow-nonfinite``: run on a checkpoint holding NaN/inf values (refused by default)."""
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="accept a checkpoint whose weights hold NaN or inf values "
                        "(refused by default: every result would be NaN)")


def add_model_def_args(p: argparse.ArgumentParser) -> None:
    """``--model-def`` and ``--blocks``: every command that takes a checkpoint calls this."""
    p.add_argument("--model-def", default=None, metavar="MODULE:CALLABLE",
                   help="your own model: MODULE:CALLABLE or path/to/file.py:CALLABLE, a callable "
                        "returning the nn.Module the checkpoint (a plain state_dict or our "
                        "format) belongs to. A file inside a package (models/vit.py:tiny, with "
                        "models/__init__.py) is imported as its dotted module (models.vit) with "
                        "the package root (the first folder upwards without __init__.py) first "
                        "on the import path, so it works from the repository root")
    p.add_argument("--model-kwargs", default=None, metavar="NAME=VALUE,...",
                   type=_model_kwargs,
                   help="keyword arguments of the --model-def callable, written as in a Python "
                        "call, each value a Python literal (quote strings), e.g. "
                        "--model-def models.alternet:dnn_18 --model-kwargs "
                        "num_classes=100,window_size=4 (default: none)")
    p.add_argument("--code-root", default=None, metavar="DIR",
                   help="your repository's root, put first on the import path for --model-def "
                        "(e.g. --model-def models.alternet:dnn_50 --code-root path/to/repo); "
                        "its own `models`, `utils`, ... packages are the ones imported")
    p.add_argument("--blocks", default=None, metavar="NAME=KIND,...",
                   help="the block list as module names and kinds (embed, conv, msa, mlp, pool, "
                        "head); default: the model's block_list(), else inferred and printed")


def _model_kwargs(text: str) -> dict:
    """argparse type of ``--model-kwargs``
    (:func:`landscape.loading.model_args.parse_model_kwargs`)."""
    from ..errors import LandscapeError
    from ..loading.model_args import parse_model_kwargs
    try:
        return parse_model_kwargs(text)
    except LandscapeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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
    p.add_argument("--samples", type=nonneg_int, default=samples,
                   help=f"number of images used (a seeded subset; 0 = all; default {samples})")
    if batch_size == 0:
        p.add_argument("--batch-size", type=nonneg_int, default=0,
                       help="images per forward pass (default 0: measure the fastest)")
    else:
        p.add_argument("--batch-size", type=positive_int, default=batch_size,
                       help=f"images per forward pass (default {batch_size})")
    p.add_argument("--seed", type=seed_int, default=0,
                   help="seed for subsets, directions and probes")
    add_device_arg(p)


def add_device_arg(p: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """``--device``; the CLI checks it once, before the command runs."""
    p.add_argument("--device", default=default,
                   help="torch device: auto (GPU if available), cpu, cuda, cuda:1, ... "
                        f"(default {default or 'auto'})")


def input_options(args: argparse.Namespace) -> object:
    """The :class:`~landscape.workflows.inputs.InputOptions` of a command's checkpoint and data
    options (the last place their argparse namespace is read)."""
    from ..workflows.inputs import InputOptions
    names = [f for f in InputOptions.__dataclass_fields__ if hasattr(args, f)]
    return InputOptions(**{f: getattr(args, f) for f in names})


def add_out_arg(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--out", default=default, help=f"output folder (default {default})")
