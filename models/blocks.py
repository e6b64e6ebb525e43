"""The block list: one shared way to get intermediate feature maps of a model.

A model lists its blocks in forward order. Each :class:`Block` names a module whose forward
*output* is the block's feature map, the block's kind, its stage, and (for residual blocks) the
module whose output is the residual branch, so a lesion can zero it.

Our models implement ``block_list()``. For any other ``nn.Module`` the user names the modules to
hook with :func:`named_blocks`.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import torch
import torch.nn as nn

KINDS = ("embed", "conv", "msa", "mlp", "pool", "head")


@dataclass
class Block:
    """One block of a model: ``module``'s output is the feature map after the block.

    ``branch`` is the module whose output is the residual branch (``None`` if the block is not
    residual); zeroing its output removes the block from a residual network (lesion study).
    ``tokens`` says how a 3-D (B, N, C) output maps to a grid: ``"cls"`` if the first token is a
    class token to drop, ``"grid"`` if all tokens are spatial, ``None`` to decide by shape.
    """

    name: str
    kind: str
    stage: int
    module: nn.Module = field(repr=False)
    branch: Optional[nn.Module] = field(default=None, repr=False)
    tokens: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"block {self.name!r}: kind {self.kind!r} is not one of {KINDS}")


def blocks(model: nn.Module) -> list[Block]:
    """The model's block list in forward order (models that implement ``block_list()``)."""
    fn = getattr(model, "block_list", None)
    if fn is None:
        raise TypeError(
            f"{type(model).__name__} has no block_list(); name the modules to hook with "
            "models.named_blocks(model, {'layer1': 'conv', ...})")
    return list(fn())


def named_blocks(model: nn.Module, spec: dict[str, str] | Sequence[str],
                 stages: Optional[dict[str, int]] = None) -> list[Block]:
    """Block list for any ``nn.Module`` from module names (``{name: kind}`` or names, kind conv)."""
    mods = dict(model.named_modules())
    items = spec.items() if isinstance(spec, dict) else [(n, "conv") for n in spec]
    out = []
    for name, kind in items:
        if name not in mods:
            raise KeyError(f"module {name!r} not found in {type(model).__name__}")
        out.append(Block(name, kind, (stages or {}).get(name, 0), mods[name]))
    return out


def to_grid(x: torch.Tensor, tokens: Optional[str] = None) -> torch.Tensor:
    """Feature map as (B, C, H, W): 4-D passes through; (B, N, C) tokens are reshaped to the
    square grid, dropping a leading class token (``tokens='cls'``, or N-1 a square)."""
    if x.dim() == 4:
        return x
    if x.dim() != 3:
        raise ValueError(f"cannot map a feature of shape {tuple(x.shape)} to a spatial grid")
    n = x.shape[1]
    if tokens == "cls" or (tokens is None and math.isqrt(n) ** 2 != n
                           and math.isqrt(n - 1) ** 2 == n - 1):
        x = x[:, 1:]
        n -= 1
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{n} tokens do not form a square grid")
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], side, side)


@contextlib.contextmanager
def capture(block_list: Sequence[Block], detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Context manager: during forward passes, ``out[block.name]`` holds each block's output."""
    out: dict[str, torch.Tensor] = {}
    handles = []
    for b in block_list:
        def hook(_m, _i, o, name=b.name):
            o = o[0] if isinstance(o, (tuple, list)) else o
            out[name] = o.detach() if detach else o
        handles.append(b.module.register_forward_hook(hook))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


def block_outputs(model: nn.Module, x: torch.Tensor,
                  block_list: Optional[Sequence[Block]] = None) -> dict[str, torch.Tensor]:
    """Run ``model(x)`` without gradients and return every block's output by block name."""
    bl = blocks(model) if block_list is None else block_list
    with torch.no_grad(), capture(bl) as out:
        model(x)
    return dict(out)


@contextlib.contextmanager
def lesioned(block: Block) -> Iterator[None]:
    """Context manager: the block's residual branch outputs zeros (the block is removed)."""
    if block.branch is None:
        raise ValueError(f"block {block.name!r} is not residual; it cannot be lesioned")
    h = block.branch.register_forward_hook(lambda _m, _i, o: torch.zeros_like(o))
    try:
        yield
    finally:
        h.remove()
