"""Device selection: an explicit ``torch.device``, never a ``cuda=True`` flag."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.nn as nn

from .errors import LandscapeError

_HINT = "use --device auto, cpu, cuda, cuda:N or mps"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` picks this rank's GPU when there is one (LOCAL_RANK under torchrun),
    else the CPU; anything else must name a device that exists here (LandscapeError if not)."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            rank = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device("cuda", rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise LandscapeError(f"unknown device {str(device)!r}; {_HINT}") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "no CUDA GPU is visible")
            raise LandscapeError(f"device {str(device)!r} asked for but {why}; "
                                 "use --device cpu or auto")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise LandscapeError(f"device {str(device)!r} asked for but this machine has {n} "
                                 f"CUDA device(s) (cuda:0 to cuda:{n - 1})")
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise LandscapeError(f"device {str(device)!r} asked for but MPS is not available here; "
                                 "use --device cpu or auto")
        return dev
    raise LandscapeError(f"unsupported device {str(device)!r}; {_HINT}")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode; restore each module's own train/eval flag afterwards
    (the one eval-mode helper: feature analyses, evaluation, Hessian products)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, t in modes:
            m.training = t


def model_device(model: nn.Module, device: str | torch.device | None = None) -> torch.device:
    """``device`` when given, else the device of the model's first parameter (CPU if none)."""
    if device is not None:
        return torch.device(device)
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")
