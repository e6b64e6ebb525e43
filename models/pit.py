"""Pooling-based Vision Transformer (the timm 0.5.4 ``PoolingVisionTransformer`` layout).

Tokens live on a spatial map between stages: a conv patch embedding plus a (C, H, W) position
embedding, then per stage [class token + flattened map] -> transformer blocks -> back to a map ->
depthwise strided conv pooling (``transformers.<s>.pool.conv``) with a linear map of the class token
(``pool.fc``). The head reads the LayerNorm'd class token. LayerNorm eps 1e-6, qkv bias on.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .blocks import Block
from .registry import register
from .vit import TransformerBlock, _init_transformer_weights


class ConvEmbedding(nn.Module):
    """Patch embedding conv (kernel ``patch_size``, given stride, no padding) -> (B, C, H, W)."""

    def __init__(self, in_chans: int, dim: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class HeadPooling(nn.Module):
    """Depthwise conv (kernel stride+1, padding stride//2) on the map, linear on the class token."""

    def __init__(self, dim_in: int, dim_out: int, stride: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size=stride + 1, padding=stride // 2,
                              stride=stride, groups=dim_in)
        self.fc = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.conv(x), self.fc(cls)


class PiTStage(nn.Module):
    """Transformer blocks over [class token, map tokens], then optional pooling."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float,
                 pool: HeadPooling | None) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, mlp_ratio, True, 1e-6)
                                      for _ in range(depth)])
        self.pool = pool

    def forward(self, x: torch.Tensor, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        n_cls = cls.shape[1]
        t = torch.cat([cls, x.flatten(2).transpose(1, 2)], dim=1)
        for blk in self.blocks:
            t = blk(t)
        cls, x = t[:, :n_cls], t[:, n_cls:].transpose(1, 2).reshape(b, c, h, w)
        if self.pool is not None:
            x, cls = self.pool(x, cls)
        return x, cls


class PoolingVisionTransformer(nn.Module):
    """PiT: stage s has ``base_dims[s] * heads[s]`` channels, ``depth[s]`` blocks."""

    def __init__(self, img_size: int = 32, patch_size: int = 2, stride: int = 1,
                 base_dims: Sequence[int] = (32, 32, 32), depth: Sequence[int] = (2, 6, 4),
                 heads: Sequence[int] = (2, 4, 8), mlp_ratio: float = 4.0, in_chans: int = 3,
                 num_classes: int = 100) -> None:
        super().__init__()
        side = (img_size - patch_size) // stride + 1
        dims = [b * h for b, h in zip(base_dims, heads, strict=False)]
        self.pos_embed = nn.Parameter(torch.zeros(1, dims[0], side, side))
        self.patch_embed = ConvEmbedding(in_chans, dims[0], patch_size, stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims[0]))
        self.transformers = nn.Sequential(*[
            PiTStage(dims[s], depth[s], heads[s], mlp_ratio,
                     HeadPooling(dims[s], dims[s + 1], 2) if s < len(dims) - 1 else None)
            for s in range(len(dims))])
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)
        self.embed_out = nn.Identity()
        nn.init.normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=0.02)
        self.apply(_init_transformer_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed_out(self.patch_embed(x) + self.pos_embed)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        for stage in self.transformers:
            x, cls = stage(x, cls)
        return self.head(self.norm(cls)[:, 0])

    def block_list(self) -> list[Block]:
        out = [Block("embed", "embed", 0, self.embed_out)]
        for s, stage in enumerate(self.transformers):
            for i, blk in enumerate(stage.blocks):
                out += blk.block_list(f"transformers.{s}.blocks.{i}", s, "cls")
            if stage.pool is not None:
                out.append(Block(f"transformers.{s}.pool", "pool", s, stage.pool))
        out.append(Block("head", "head", len(self.transformers) - 1, self.head))
        return out


@register("pit_ti")
def pit_ti(num_classes: int = 100, in_chans: int = 3, img_size: int = 32, patch_size: int = 2,
           stride: int = 1, base_dims: Sequence[int] = (32, 32, 32),
           depth: Sequence[int] = (2, 6, 4), heads: Sequence[int] = (2, 4, 8),
           mlp_ratio: float = 4.0) -> PoolingVisionTransformer:
    """The paper's CIFAR PiT-Ti: patch 2, stride 1, base dims 32, depths (2, 6, 4),
    heads (2, 4, 8)."""
    return PoolingVisionTransformer(img_size, patch_size, stride, list(base_dims), list(depth),
                                    list(heads), mlp_ratio, in_chans, num_classes)


@register("pit_tiny")
def pit_tiny(num_classes: int = 10, in_chans: int = 1, img_size: int = 28, patch_size: int = 4,
             stride: int = 4, base_dims: Sequence[int] = (16, 16), depth: Sequence[int] = (2, 2),
             heads: Sequence[int] = (2, 4), mlp_ratio: float = 4.0) -> PoolingVisionTransformer:
    """Small CPU PiT for 28x28: 7x7 map of 32 channels, pooled to 4x4 of 64 channels."""
    return PoolingVisionTransformer(img_size, patch_size, stride, list(base_dims), list(depth),
                                    list(heads), mlp_ratio, in_chans, num_classes)
