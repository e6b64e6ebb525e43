"""Model zoo: the paper's CIFAR architectures and small CPU variants, behind one registry.

``models`` knows nothing about ``landscape``; ``landscape`` uses it only through the registry
(:func:`create`, :func:`names`) and the block list (:func:`blocks`).
"""
# Importing the architecture modules registers their factories.
from . import alternet, attention, pit, resnet, swin, vit  # noqa: F401 (imported to register)
from .blocks import (
    KINDS,
    Block,
    attach_blocks,
    block_outputs,
    blocks,
    capture,
    lesioned,
    named_blocks,
    readable,
    to_grid,
)
from .inference import infer_blocks
from .registry import create, names, register

__all__ = ["Block", "KINDS", "blocks", "block_outputs", "capture", "lesioned", "named_blocks",
           "infer_blocks", "attach_blocks", "readable", "to_grid", "create", "names", "register"]
