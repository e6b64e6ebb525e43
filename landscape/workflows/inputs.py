"""The inputs of a run, from command-line style options (an ``argparse.Namespace`` or any object
with the same attributes): checked checkpoint files, the model and the dataset it was trained on.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from ..errors import LandscapeError


def check_checkpoints(args: argparse.Namespace, paths: Sequence[str]) -> list[str]:
    """Refuse missing checkpoint files and (unless ``--allow-nonfinite``) ones holding NaN/inf
    values, before any output is written; returns the files (a run folder stands for its
    ``model.pt``)."""
    from ..checkpoint import resolve_checkpoint
    files = [str(resolve_checkpoint(f)) for f in paths]
    if not getattr(args, "allow_nonfinite", False):
        from ..checkpoint import check_finite_file
        for f in files:
            check_finite_file(f)
    return files


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
                      code_root=getattr(args, "code_root", None),
                      kwargs=getattr(args, "model_kwargs", None),
                      log=lambda text: print(text, file=sys.stderr, flush=True))


def load_data_for(info: Any, args: argparse.Namespace, split: str | None = None,
                  samples: int | None = None, check: bool = True) -> Any:
    """The dataset a checkpoint was trained on (or ``--data``), as tensors on ``args.device``;
    ``check``: refuse data whose classes or channels differ from the model's."""
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
    if check:
        check_compatible(info, data)
    return data.to(resolve_device(args.device))


def load_checkpoint_and_data(args: argparse.Namespace, ckpt_path: str) -> tuple[Any, Any, Any]:
    """(model in eval mode on ``args.device``, CheckpointInfo, ImageData on the same device);
    a model with NaN/inf values is refused unless ``args.allow_nonfinite``. The block list's
    order and stages come from the first batch of the loaded data (image folders included). A run
    folder stands for its ``model.pt`` (as for ``fourier`` and ``analyze``)."""
    import sys

    from ..checkpoint import check_compatible, resolve_checkpoint
    from ..device import resolve_device
    from ..user_model import assign_blocks, load_weights
    ckpt_path = str(resolve_checkpoint(ckpt_path))
    model_def, kwargs = getattr(args, "model_def", None), getattr(args, "model_kwargs", None)
    model, info = load_weights(ckpt_path, model=getattr(args, "model", None), model_def=model_def,
                               device=resolve_device(getattr(args, "device", None) or "auto"),
                               dataset=getattr(args, "data", None),
                               code_root=getattr(args, "code_root", None), kwargs=kwargs)
    if not getattr(args, "allow_nonfinite", False):
        from ..checkpoint import check_finite
        check_finite(model, str(ckpt_path))
    data = load_data_for(info, args, check=False)
    model, info = assign_blocks(model, info, model_def=model_def,
                                blocks=getattr(args, "blocks", None), example=data.images[:2],
                                kwargs=kwargs,
                                log=lambda text: print(text, file=sys.stderr, flush=True))
    check_compatible(info, data)
    return model, info, data
