"""Device selection: an explicit ``torch.device``, never a ``cuda=True`` flag."""
from __future__ import annotations

import os
from typing import Optional, Union

import torch


def resolve_device(device: Optional[Union[str, torch.device]] = None) -> torch.device:
    """``None``/``"auto"`` picks this rank's GPU when there is one (LOCAL_RANK under torchrun),
    else the CPU; anything else is passed to ``torch.device``."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        return torch.device("cpu")
    return torch.device(device)
