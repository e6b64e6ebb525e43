"""Device selection: an explicit ``torch.device``, never a ``cuda=True`` flag."""
from __future__ import annotations

import os

import torch

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
