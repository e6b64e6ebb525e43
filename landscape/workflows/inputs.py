"""The inputs of a run: checked checkpoint files, the model and the dataset it was trained on,
from an :class:`InputOptions` (the commands build one from their options).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LandscapeError


@dataclass(frozen=True)
class InputOptions:
    """How a command finds its model and images: the checkpoint options (``--model``,
    ``--model-def``, ``--model-kwargs``, ``--code-root``, ``--blocks``, ``--allow-nonfinite``)
    and the data options (``--data``, ``--data-root``, ``--download``, ``--split``,
    ``--samples`` (0: all), ``--seed``, ``--device``)."""

    model: str | None = None
    model_def: str | None = None
    model_kwargs: dict[str, Any] | None = None
    code_root: str | None = None
    blocks: str | None = None
    allow_nonfinite: bool = False
    data: str | None = None
    data_root: str | None = None
    download: bool = False
    split: str = "test"
    samples: int = 0
    seed: int = 0
    device: str = "auto"


def read_checkpoints(opts: InputOptions, paths: Sequence[str | Path]) -> list[Any]:
    """Every checkpoint file read once (:func:`~landscape.loading.checkpoint.read_checkpoint`:
    parsed, hashed and, unless ``--allow-nonfinite``, refused when it holds NaN/inf values)
    before any output is written; a run folder stands for its ``model.pt``."""
    from ..loading.checkpoint import read_checkpoint, resolve_checkpoint
    allow = bool(opts.allow_nonfinite)
    return [read_checkpoint(resolve_checkpoint(f), allow_nonfinite=allow) for f in paths]


def check_checkpoints(opts: InputOptions, paths: Sequence[str]) -> list[str]:
    """:func:`read_checkpoints`, returning the files only."""
    return [str(f.path) for f in read_checkpoints(opts, paths)]


def load_model_for(opts: InputOptions, ckpt_path: str,
                   device: Any = None) -> tuple[Any, Any]:
    """(model, CheckpointInfo) from the checkpoint arguments (``--model``/``--model-def``/
    ``--blocks``); inferred block lists are printed to stderr."""
    import sys

    from ..device import resolve_device
    from ..loading.user_model import load_model
    return load_model(ckpt_path, model=opts.model,
                      model_def=opts.model_def,
                      blocks=opts.blocks,
                      device=device or resolve_device(opts.device or "auto"),
                      dataset=opts.data,
                      code_root=opts.code_root,
                      kwargs=opts.model_kwargs,
                      log=lambda text: print(text, file=sys.stderr, flush=True))


def load_data_for(info: Any, opts: InputOptions, split: str | None = None,
                  samples: int | None = None, check: bool = True) -> Any:
    """The dataset a checkpoint was trained on (or ``--data``), as tensors on ``opts.device``;
    ``check``: refuse data whose classes or channels differ from the model's."""
    from ..data import load_dataset
    from ..device import resolve_device
    from ..loading.checkpoint import check_compatible

    name = opts.data or info.dataset
    if not name:
        raise LandscapeError(f"{info.path} does not record its dataset; pass --data")
    n = opts.samples if samples is None else samples
    norm: object = True
    if info.mean is not None and info.std is not None:
        norm = (tuple(info.mean), tuple(info.std))  # exactly what the model was trained with
    data = load_dataset(name, split=split or opts.split, root=opts.data_root,
                        subset=(n or None), seed=opts.seed, normalize=norm,
                        download=opts.download)
    if check:
        check_compatible(info, data)
    return data.to(resolve_device(opts.device))


def load_model_and_data(opts: InputOptions, ckpt: Any) -> tuple[Any, Any, Any]:
    """(model in eval mode on ``opts.device``, CheckpointInfo, ImageData on the same device)
    from a checkpoint file or one already read (:func:`read_checkpoints`; a file is read and
    checked here, refused with NaN/inf values unless ``opts.allow_nonfinite``). The block
    list's order and stages come from the first batch of the loaded data (image folders
    included). A run folder stands for its ``model.pt``."""
    import sys

    from ..device import resolve_device
    from ..loading.checkpoint import (
        CheckpointFile,
        check_compatible,
        read_checkpoint,
        resolve_checkpoint,
    )
    from ..loading.user_model import assign_blocks, load_weights
    if not isinstance(ckpt, CheckpointFile):
        allow = bool(opts.allow_nonfinite)
        ckpt = read_checkpoint(resolve_checkpoint(ckpt), allow_nonfinite=allow)
    model_def, kwargs = opts.model_def, opts.model_kwargs
    model, info = load_weights(ckpt, model=opts.model, model_def=model_def,
                               device=resolve_device(opts.device or "auto"),
                               dataset=opts.data,
                               code_root=opts.code_root, kwargs=kwargs)
    data = load_data_for(info, opts, check=False)
    model, info = assign_blocks(model, info, model_def=model_def,
                                blocks=opts.blocks, example=data.images[:2],
                                kwargs=kwargs,
                                log=lambda text: print(text, file=sys.stderr, flush=True))
    check_compatible(info, data)
    return model, info, data


def load_checkpoint_and_data(opts: InputOptions, ckpt_path: str) -> tuple[Any, Any, Any]:
    """:func:`load_model_and_data` of one checkpoint file."""
    return load_model_and_data(opts, ckpt_path)
