"""Arguments and loading shared by the subcommands (checkpoint + dataset + device), the
argparse types that validate every number where it is parsed, and the help formatter.

Nothing here imports torch or numpy at module level: ``landscape --help`` and argument errors
answer before the heavy imports.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from .. import validate as V
from ..errors import LandscapeError


# ----------------------------------------------------------------------------- argparse types
def _argtype(check: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """An argparse ``type`` from a :mod:`landscape.validate` check (its message, one line)."""
    def parse(text: str) -> Any:
        try:
            return check(text)
        except LandscapeError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = name
    return parse


positive_int = _argtype(lambda s: V.to_int(s, lo=1), "positive integer")
"""An integer >= 1."""
nonneg_int = _argtype(lambda s: V.to_int(s, lo=0), "non-negative integer")
"""An integer >= 0 (where 0 means "all" or "measure")."""
seed_int = _argtype(lambda s: V.to_int(s, lo=0, hi=V.SEED_LIMIT - 1), "seed")
"""A seed: an integer in [0, 2**62)."""
finite_float = _argtype(lambda s: V.to_float(s), "finite number")
"""Any finite float."""
positive_float = _argtype(lambda s: V.to_float(s, lo=0.0, lo_open=True), "positive number")
"""A finite float > 0."""
nonneg_float = _argtype(lambda s: V.to_float(s, lo=0.0), "non-negative number")
"""A finite float >= 0."""
fraction = _argtype(lambda s: V.to_float(s, lo=0.0, hi=1.0, lo_open=True), "fraction")
"""A float in (0, 1]."""
unit_float = _argtype(lambda s: V.to_float(s, lo=0.0, hi=1.0), "number in [0, 1]")
"""A float in [0, 1]."""
unit_float_below_one = _argtype(lambda s: V.to_float(s, lo=0.0, hi=1.0, hi_open=True),
                                "number in [0, 1)")
"""A float in [0, 1) (label smoothing)."""
grid_spec = _argtype(lambda s: (V.grid_spec(s), s)[1], "grid")
"""``MIN:MAX:NUM`` with finite bounds, NUM >= 1 (returned as the validated string)."""
subset_arg = _argtype(V.subset_value, "subset")
"""A count (integer >= 1, returned as int) or a fraction in (0, 1] / a percentage (float)."""


def _fmt_default(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(_fmt_default(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` once, only where the help does not state the default already and
    the default says something (not None/False); descriptions written with line breaks keep
    them, others are wrapped."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default == []
                or default is argparse.SUPPRESS or not action.option_strings
                or action.nargs == 0):
            return text
        return f"{text} (default: {_fmt_default(default).replace('%', '%%')})"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def add_checkpoint_args(p: argparse.ArgumentParser, many: bool = False) -> None:
    """Positional CKPT (one, or several with ``many``) and ``--model`` for bare state_dicts."""
    p.add_argument("checkpoints" if many else "checkpoint", metavar="CKPT",
                   nargs="+" if many else None,
                   help="checkpoint file(s): our format, the paper's {name, state_dict} format, "
                        "or a bare state_dict (then give --model)")
    p.add_argument("--model", default=None,
                   help="architecture name for a bare state_dict or to override the recorded one "
                        "(default: the one recorded in the checkpoint; see "
                        "`python -c 'import models; print(models.names())'`)")
    add_nonfinite_arg(p)
    add_model_def_args(p)


def add_nonfinite_arg(p: argparse.ArgumentParser) -> None:
    """``--allow-nonfinite``: run on a checkpoint holding NaN/inf values (refused by default)."""
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="accept a checkpoint whose weights hold NaN or inf values "
                        "(refused by default: every result would be NaN)")


def check_checkpoints(args: argparse.Namespace, paths: Sequence[str]) -> list[str]:
    """Refuse missing checkpoint files and (unless ``--allow-nonfinite``) ones holding NaN/inf
    values, before any output is written; returns the files (a run folder stands for its
    ``model.pt``)."""
    from ..analyze import resolve_checkpoint
    files = [str(resolve_checkpoint(f)) for f in paths]
    if not getattr(args, "allow_nonfinite", False):
        from ..checkpoint import check_finite_file
        for f in files:
            check_finite_file(f)
    return files


def add_model_def_args(p: argparse.ArgumentParser) -> None:
    """``--model-def`` and ``--blocks``: every command that takes a checkpoint calls this."""
    p.add_argument("--model-def", default=None, metavar="MODULE:CALLABLE",
                   help="your own model: MODULE:CALLABLE or path/to/file.py:CALLABLE, a callable "
                        "without arguments returning the nn.Module the checkpoint (a plain "
                        "state_dict or our format) belongs to")
    p.add_argument("--blocks", default=None, metavar="NAME=KIND,...",
                   help="the block list as module names and kinds (embed, conv, msa, mlp, pool, "
                        "head); default: the model's block_list(), else inferred and printed")


def load_model_for(args: argparse.Namespace, ckpt_path: str,
                   device: Any = None) -> tuple[Any, Any]:
    """(model, CheckpointInfo) from the checkpoint arguments (``--model``/``--model-def``/
    ``--blocks``); inferred block lists are printed to stderr."""
    import sys

    from ..device import resolve_device
    from ..user_model import load_model
    return load_model(ckpt_path, model=getattr(args, "model", None),
                      model_def=getattr(args, "model_def", None),
                      blocks=getattr(args, "blocks", None),
                      device=device or resolve_device(getattr(args, "device", None) or "auto"),
                      dataset=getattr(args, "data", None),
                      log=lambda text: print(text, file=sys.stderr, flush=True))


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
    """(model in eval mode on ``args.device``, CheckpointInfo, ImageData on the same device);
    a model with NaN/inf values is refused unless ``args.allow_nonfinite``."""
    model, info = load_model_for(args, ckpt_path)
    if not getattr(args, "allow_nonfinite", False):
        from ..checkpoint import check_finite
        check_finite(model, str(ckpt_path))
    return model, info, load_data_for(info, args)
