"""Name-to-factory model registry (the timm pattern).

Every factory takes ``num_classes``, ``in_chans`` and ``img_size`` plus its own keyword arguments.
``create`` records the name and the effective arguments on the model (``model.model_config``) so a
checkpoint can rebuild it without any other information.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a factory under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def names() -> list[str]:
    """Sorted names of all registered models."""
    return sorted(_REGISTRY)


def create(name: str, num_classes: int = 10, in_chans: int = 3, img_size: int = 32,
           **kwargs: Any) -> nn.Module:
    """Build registered model ``name``; unknown names raise ``KeyError`` listing the known ones."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(names())}")
    args = dict(num_classes=num_classes, in_chans=in_chans, img_size=img_size, **kwargs)
    model = _REGISTRY[name](**args)
    model.model_config = {"name": name, "kwargs": args}
    return model
