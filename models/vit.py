"""Vision Transformer (the timm 0.5.4 ``VisionTransformer`` layout) and its small CPU variant.

State_dict keys follow timm so the paper's ViT-Ti CIFAR-100 checkpoint loads with strict=True:
``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.<i>.{norm1,attn.qkv,attn.proj,norm2,
mlp.fc1,mlp.fc2}``, ``norm``, ``head``. LayerNorm eps is 1e-6, GELU is exact.

``window`` (optional, odd int k) restricts attention to a k x k neighbourhood on the token grid
(the class token attends and is attended globally); ``None`` is global attention.

Each :class:`TransformerBlock` has two parameter-free taps, ``after_attn`` and ``after_mlp``,
whose outputs are the tokens after each residual addition; the block list points at them.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .attention import TokenSelfAttention
from .blocks import Block
from .registry import register


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(norm1(x)), then x + mlp(norm2(x)), with output taps."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = TokenSelfAttention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.after_attn = nn.Identity()
        self.after_mlp = nn.Identity()

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        x = self.after_attn(x + self.attn(self.norm1(x), bias))
        return self.after_mlp(x + self.mlp(self.norm2(x)))

    def block_list(self, prefix: str, stage: int, tokens: str | None) -> list[Block]:
        """The msa and mlp blocks of this transformer block."""
        return [Block(f"{prefix}.msa", "msa", stage, self.after_attn, self.attn, tokens),
                Block(f"{prefix}.mlp", "mlp", stage, self.after_mlp, self.mlp, tokens)]


def neighbourhood_mask(grid: int, window: int, num_prefix: int = 1) -> torch.Tensor:
    """Boolean (N, N) mask, N = num_prefix + grid**2: grid token i may attend to grid token j iff
    both row and column distances are <= window // 2; prefix (class) tokens are unrestricted."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer or None, got {window}")
    r = window // 2
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    near = ((ys[:, None] - ys[None, :]).abs() <= r) & ((xs[:, None] - xs[None, :]).abs() <= r)
    n = num_prefix + grid * grid
    mask = torch.ones(n, n, dtype=torch.bool)
    mask[num_prefix:, num_prefix:] = near
    return mask


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens (B, N, C) via a strided conv ``proj``."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not divisible by patch_size {patch_size}")
        self.grid = img_size // patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """ViT with a class token, learned position embedding and a linear head on the class token."""

    def __init__(self, img_size: int = 32, patch_size: int = 2, in_chans: int = 3,
                 num_classes: int = 100, embed_dim: int = 192, depth: int = 12, num_heads: int = 3,
                 mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 window: int | None = None) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        n = self.patch_embed.grid ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, embed_dim))
        self.blocks = nn.Sequential(*[
            TransformerBlock(embed_dim, num_heads, mlp_ratio, qkv_bias, 1e-6)
            for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        self.embed_out = nn.Identity()
        self.window = window
        mask = None if window is None else neighbourhood_mask(self.patch_embed.grid, window)
        self.register_buffer("attn_mask", mask, persistent=False)
        nn.init.normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=0.02)
        self.apply(_init_transformer_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.embed_out(x)
        for blk in self.blocks:
            x = blk(x, self.attn_mask)
        return self.head(self.norm(x)[:, 0])

    def block_list(self) -> list[Block]:
        out = [Block("embed", "embed", 0, self.embed_out, tokens="cls")]
        for i, blk in enumerate(self.blocks):
            out += blk.block_list(f"blocks.{i}", 0, "cls")
        out.append(Block("head", "head", 0, self.head))
        return out


def _init_transformer_weights(m: nn.Module) -> None:
    """timm-style init: normal(0.02) linear weights (timm truncates at +-2, i.e. 100 sigma, which
    never bites), zero biases, unit LayerNorm."""
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


@register("vit_ti")
def vit_ti(num_classes: int = 100, in_chans: int = 3, img_size: int = 32, patch_size: int = 2,
           embed_dim: int = 192, depth: int = 12, num_heads: int = 3,
           window: int | None = None) -> VisionTransformer:
    """The paper's CIFAR ViT-Ti: patch 2, dim 192, depth 12, 3 heads, no qkv bias."""
    return VisionTransformer(img_size, patch_size, in_chans, num_classes, embed_dim, depth,
                             num_heads, 4.0, False, window)


@register("vit_tiny")
def vit_tiny(num_classes: int = 10, in_chans: int = 1, img_size: int = 28, patch_size: int = 4,
             embed_dim: int = 48, depth: int = 6, num_heads: int = 3,
             window: int | None = None) -> VisionTransformer:
    """Small CPU ViT for 28x28 inputs: patch 4 (7x7 tokens + cls), dim 48, depth 6, 3 heads."""
    return VisionTransformer(img_size, patch_size, in_chans, num_classes, embed_dim, depth,
                             num_heads, 4.0, True, window)

