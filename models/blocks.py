"""The block list: one shared way to get intermediate feature maps of a model.

A model lists its blocks in forward order. Each :class:`Block` names a module whose forward
*output* is the block's feature map, the block's kind, its stage, and (for residual blocks) the
module whose output is the residual branch, so a lesion can zero it.

Our models implement ``block_list()``. For any other ``nn.Module`` the user names the modules to
hook with :func:`named_blocks`, or :func:`landscape_models.inference.infer_blocks` guesses the
list from module types, and :func:`attach_blocks` gives the model a ``block_list()`` so every
analysis can use it.
"""
from __future__ import annotations

import contextlib
import math
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

KINDS = ("embed", "conv", "msa", "mlp", "pool", "head")


@dataclass(frozen=True)
class Tap:
    """One tensor observed during a forward pass: ``module``'s output (``where="output"``, the
    first element of a tuple) or its first positional input (``where="input"``)."""

    module: nn.Module = field(repr=False)
    where: str = "output"


@dataclass
class Block:
    """One block of a model; its feature map is the residual stream after the block.

    The feature map is read at ``readout``: the sum of the tapped tensors (one tap in practice,
    two where only the skip and the branch can be observed); empty means ``module``'s output.
    ``module`` is the module that runs the block (its completion orders blocks and gives shapes).
    ``refused`` names why the stream after the block cannot be found: such a block is kept in
    the list (order, depth, lesion) but feature analyses never read it.
    ``branch`` is the module whose output is the residual branch (``None`` if the block is not
    residual); zeroing its output removes the block from a residual network (lesion study).
    ``tokens`` says how a 3-D (B, N, C) output maps to a grid: ``"cls"`` if the first token is a
    class token to drop, ``"grid"`` if all tokens are spatial, ``None`` to decide by shape.
    """

    name: str
    kind: str
    stage: int
    module: nn.Module = field(repr=False)
    branch: nn.Module | None = field(default=None, repr=False)
    tokens: str | None = None
    readout: tuple[Tap, ...] = field(default=(), repr=False)
    refused: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"block {self.name!r}: kind {self.kind!r} is not one of {KINDS}")

    @property
    def taps(self) -> tuple[Tap, ...]:
        """Where the feature map is read: ``readout``, or ``module``'s output."""
        return self.readout or (Tap(self.module),)

    def with_stage(self, stage: int) -> Block:
        """A copy of this block in ``stage``."""
        return Block(self.name, self.kind, stage, self.module, self.branch, self.tokens,
                     self.readout, self.refused)


def blocks(model: nn.Module) -> list[Block]:
    """The model's block list in forward order (models that implement ``block_list()``)."""
    fn = getattr(model, "block_list", None)
    if fn is None:
        raise TypeError(
            f"{type(model).__name__} has no block_list(); name the modules to hook with "
            "models.named_blocks(model, {'layer1': 'conv', ...})")
    return list(fn())


def named_blocks(model: nn.Module, spec: dict[str, str] | Sequence[str],
                 stages: dict[str, int] | None = None) -> list[Block]:
    """Block list for any ``nn.Module`` from module names (``{name: kind}`` or names, kind conv)."""
    mods = dict(model.named_modules())
    items = spec.items() if isinstance(spec, dict) else [(n, "conv") for n in spec]
    out = []
    for name, kind in items:
        if name not in mods:
            raise KeyError(f"module {name!r} not found in {type(model).__name__}")
        out.append(Block(name, kind, (stages or {}).get(name, 0), mods[name]))
    return out


def to_grid(x: torch.Tensor, tokens: str | None = None) -> torch.Tensor:
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


def readable(block_list: Sequence[Block]) -> list[Block]:
    """The blocks whose feature map can be read (``refused`` unset)."""
    return [b for b in block_list if b.refused is None]


@contextlib.contextmanager
def capture(block_list: Sequence[Block], detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Context manager: during forward passes, ``out[block.name]`` holds each block's feature
    map (the residual stream after the block, read at its taps). Refused blocks are not read."""
    out: dict[str, torch.Tensor] = {}
    parts: dict[str, list[torch.Tensor]] = {}
    handles = []

    def record(name: str, n_taps: int, value: Any, module: nn.Module) -> None:
        t = _batch_first(module, value)
        t = t.detach() if detach else t
        if n_taps == 1:
            out[name] = t
            return
        got = parts.setdefault(name, [])
        got.append(t)
        if len(got) == n_taps:  # every tap of this forward seen: the stream is their sum
            out[name] = torch.stack(got).sum(0) if len(got) > 2 else got[0] + got[1]
            parts[name] = []

    for b in readable(block_list):
        n_taps = len(b.taps)
        for tap in b.taps:
            if tap.where == "input":
                def pre(m, args, name=b.name, k=n_taps):
                    record(name, k, args[0], m)
                handles.append(tap.module.register_forward_pre_hook(pre))
            else:
                def hook(m, _i, o, name=b.name, k=n_taps):
                    record(name, k, o, m)
                handles.append(tap.module.register_forward_hook(hook))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


def block_outputs(model: nn.Module, x: torch.Tensor,
                  block_list: Sequence[Block] | None = None) -> dict[str, torch.Tensor]:
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
    def zero(_m: nn.Module, _i: Any, o: Any) -> Any:
        if isinstance(o, tuple):  # nn.MultiheadAttention: (output, weights)
            return (torch.zeros_like(o[0]),) + tuple(o[1:])
        return torch.zeros_like(o)

    h = block.branch.register_forward_hook(zero)
    try:
        yield
    finally:
        h.remove()


def _batch_first(module: nn.Module, o: Any) -> torch.Tensor:
    """A module's output as one batch-first tensor (first element of tuples; sequence-first
    ``nn.MultiheadAttention`` outputs (N, B, C) are transposed to (B, N, C))."""
    o = o[0] if isinstance(o, (tuple, list)) else o
    if isinstance(module, nn.MultiheadAttention) and not module.batch_first and o.dim() == 3:
        o = o.transpose(0, 1)
    return o


def attach_blocks(model: nn.Module, block_list: Sequence[Block]) -> nn.Module:
    """Give ``model`` (this instance) a ``block_list()`` returning ``block_list``; the blocks are
    kept by module name, so a ``copy.deepcopy`` of the model lists its own modules."""
    names = {id(m): n for n, m in model.named_modules()}
    spec = [(b.name, b.kind, b.stage, names[id(b.module)],
             names[id(b.branch)] if b.branch is not None else None, b.tokens,
             tuple((names[id(t.module)], t.where) for t in b.readout), b.refused)
            for b in block_list]
    model.__dict__["_block_spec"] = spec

    def block_list_method(self: nn.Module) -> list[Block]:
        get = self.get_submodule
        return [Block(n, k, s, get(m), get(br) if br else None, t,
                      tuple(Tap(get(tm), w) for tm, w in ro), why)
                for n, k, s, m, br, t, ro, why in self.__dict__["_block_spec"]]

    model.__dict__["block_list"] = types.MethodType(block_list_method, model)
    return model
