"""Swin Transformer in the timm 0.5.4 layout (patch merging at the END of stages 0..n-2).

Keys: ``patch_embed.{proj,norm}``,
``layers.<s>.blocks.<i>.{norm1, attn.relative_position_bias_table, attn.relative_position_index,
attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``layers.<s>.blocks.<i>.attn_mask`` (shifted
blocks only), ``layers.<s>.downsample.{reduction,norm}``, ``norm``, ``head``.
LayerNorm eps 1e-5 everywhere. Where the stage's map is not larger than the window, the window
shrinks to the map and the shift is dropped (as in timm 0.5.4). Shifted blocks add the -100 mask
that keeps tokens from different (pre-shift) regions apart.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .attention import attend
from .blocks import Block
from .registry import register
from .vit import Mlp, _init_transformer_weights


def relative_position_index(window: int) -> torch.Tensor:
    """(w*w, w*w) int64 index into the (2w-1)^2 bias table for query i, key j:
    (dy + w - 1) * (2w - 1) + (dx + w - 1) with (dy, dx) = pos_i - pos_j."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + window - 1
    dx = xs[:, None] - xs[None, :] + window - 1
    return dy * (2 * window - 1) + dx


def to_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, nWindows, window*window, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // window) * (w // window), window * window, c)


def from_windows(x: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`to_windows`."""
    b, _, _, c = x.shape
    x = x.reshape(b, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def shift_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """(nWindows, w*w, w*w) float mask: 0 within a region, -100 across regions of the rolled map."""
    region = torch.zeros(h, w)
    bounds = ((0, -window), (-window, -shift), (-shift, None))
    label = 0
    for ya, yb in bounds:
        for xa, xb in bounds:
            region[slice(ya, yb), slice(xa, xb)] = label
            label += 1
    reg = to_windows(region[None, :, :, None], window)[0, :, :, 0]       # (nW, N)
    diff = reg[:, None, :] - reg[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


class WindowAttention(nn.Module):
    """Multi-head attention inside windows with a learned relative-position bias per head."""

    def __init__(self, dim: int, window: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, nW, N, C); mask: (nW, N, N) or None -> (B, nW, N, C)."""
        b, nw, n, c = x.shape
        h = self.num_heads
        qkv = self.qkv(x).reshape(b, nw, n, 3, h, self.head_dim).permute(3, 0, 1, 4, 2, 5)
        # (3, B, nW, heads, N, d) -> fold windows into the head axis: (B, nW*heads, N, d)
        q, k, v = (t.reshape(b, nw * h, n, self.head_dim) for t in qkv)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        bias = bias.reshape(n, n, h).permute(2, 0, 1)                    # (heads, N, N)
        bias = bias.expand(nw, h, n, n) if mask is None else bias.unsqueeze(0) + mask.unsqueeze(1)
        out = attend(q, k, v, bias.reshape(1, -1, n, n), self.head_dim ** -0.5)
        out = out.reshape(b, nw, h, n, self.head_dim).permute(0, 1, 3, 2, 4)
        return self.proj(out.reshape(b, nw, n, c))


class SwinBlock(nn.Module):
    """(Shifted) window attention block with output taps ``after_attn`` and ``after_mlp``."""

    def __init__(self, dim: int, resolution: int, num_heads: int, window: int, shift: int,
                 mlp_ratio: float, qkv_bias: bool) -> None:
        super().__init__()
        if resolution <= window:
            window, shift = resolution, 0
        if resolution % window:
            raise ValueError(f"map size {resolution} is not divisible by window {window}")
        self.resolution, self.window, self.shift = resolution, window, shift
        if shift > 0:
            self.register_buffer("attn_mask", shift_mask(resolution, resolution, window, shift))
        else:
            self.attn_mask = None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.after_attn = nn.Identity()
        self.after_mlp = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        r, s = self.resolution, self.shift
        y = self.norm1(x).reshape(b, r, r, c)
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        y = from_windows(self.attn(to_windows(y, self.window), self.attn_mask), self.window, r, r)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        x = self.after_attn(x + y.reshape(b, n, c))
        return self.after_mlp(x + self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhoods concatenated as (0,0), (1,0), (0,1), (1,1) -> LayerNorm ->
    linear 4C->2C."""

    def __init__(self, resolution: int, dim: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        r = self.resolution
        x = x.reshape(b, r, r, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class SwinStage(nn.Module):
    """Blocks alternating unshifted / shifted windows, then optional patch merging."""

    def __init__(self, dim: int, resolution: int, depth: int, num_heads: int, window: int,
                 mlp_ratio: float, qkv_bias: bool, downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            SwinBlock(dim, resolution, num_heads, window, 0 if i % 2 == 0 else window // 2,
                      mlp_ratio, qkv_bias) for i in range(depth)])
        self.downsample = PatchMerging(resolution, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x if self.downsample is None else self.downsample(x)


class PatchEmbedNorm(nn.Module):
    """Strided conv patches -> tokens (B, N, C) -> LayerNorm."""

    def __init__(self, in_chans: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class SwinTransformer(nn.Module):
    """Swin: stage s has ``embed_dim * 2**s`` channels on a (grid / 2**s)^2 map."""

    def __init__(self, img_size: int = 32, patch_size: int = 1, in_chans: int = 3,
                 num_classes: int = 100, embed_dim: int = 96,
                 depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: int = 4, mlp_ratio: float = 4.0, qkv_bias: bool = False) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not divisible by patch_size {patch_size}")
        grid = img_size // patch_size
        self.patch_embed = PatchEmbedNorm(in_chans, embed_dim, patch_size)
        n = len(depths)
        self.layers = nn.Sequential(*[
            SwinStage(embed_dim * 2 ** s, grid // 2 ** s, depths[s], num_heads[s], window_size,
                      mlp_ratio, qkv_bias, s < n - 1) for s in range(n)])
        self.num_features = embed_dim * 2 ** (n - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes)
        self.apply(_init_transformer_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.patch_embed(x))
        return self.head(self.norm(x).mean(dim=1))

    def block_list(self) -> list[Block]:
        out = [Block("embed", "embed", 0, self.patch_embed, tokens="grid")]
        for s, stage in enumerate(self.layers):
            for i, blk in enumerate(stage.blocks):
                p = f"layers.{s}.blocks.{i}"
                out += [Block(f"{p}.msa", "msa", s, blk.after_attn, blk.attn, "grid"),
                        Block(f"{p}.mlp", "mlp", s, blk.after_mlp, blk.mlp, "grid")]
            if stage.downsample is not None:
                out.append(Block(f"layers.{s}.downsample", "pool", s, stage.downsample,
                                 tokens="grid"))
        out.append(Block("head", "head", len(self.layers) - 1, self.head))
        return out


@register("swin_ti")
def swin_ti(num_classes: int = 100, in_chans: int = 3, img_size: int = 32, patch_size: int = 1,
            embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2),
            num_heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 4) -> SwinTransformer:
    """The paper's CIFAR Swin-Ti: patch 1, window 4, dim 96, depths (2, 2, 6, 2), no qkv bias."""
    return SwinTransformer(img_size, patch_size, in_chans, num_classes, embed_dim, tuple(depths),
                           tuple(num_heads), window_size, 4.0, False)

