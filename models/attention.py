"""Multi-head self-attention built on ``torch.nn.functional.scaled_dot_product_attention``.

All attention in the model zoo goes through :func:`attend`, so evaluation can use the fused SDPA
kernels while second-order autodiff (Hessian-vector products) can force the MATH backend with
``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``. Masks and position biases are additive float
tensors (or boolean "may attend" masks) broadcast against the (B, heads, N, N) score matrix.

Two modules:

* :class:`TokenSelfAttention` -- token attention on (B, N, C) with a fused ``qkv`` linear and an
  output ``proj`` (the layout of timm's ViT/PiT/Swin attention; state_dict keys ``qkv.*``,
  ``proj.*``).
* :class:`WindowedConvAttention` -- the AlterNet MSA: non-overlapping p x p windows of a
  (B, C, H, W) map, 1x1-conv projections ``attn.to_q``, ``attn.to_kv``, ``attn.to_out.0`` and a
  learned relative-position table ``pos_embedding`` of shape (2p-1, 2p-1).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           bias: torch.Tensor | None = None, scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v for (B, heads, N, d) tensors, via SDPA.

    ``bias`` is an additive float tensor or a boolean mask (True = may attend), broadcastable to
    (B, heads, N, N). ``scale`` defaults to d ** -0.5.
    """
    if bias is not None and bias.dtype != torch.bool and bias.dtype != q.dtype:
        bias = bias.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        bias: torch.Tensor | None = None,
                        scale: float | None = None) -> torch.Tensor:
    """The same computation as :func:`attend` written out with matmul + softmax (for tests)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q * scale) @ k.transpose(-2, -1)
    if bias is not None:
        if bias.dtype == torch.bool:
            scores = scores.masked_fill(~bias, float("-inf"))
        else:
            scores = scores + bias
    return scores.softmax(dim=-1) @ v


class TokenSelfAttention(nn.Module):
    """Multi-head self-attention over tokens (B, N, C) -> (B, N, C).

    q, k, v come from one linear map ``qkv`` (output rows ordered q | k | v, each split into heads
    of C / heads channels); ``proj`` maps the concatenated heads back to C.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v as (B, heads, N, head_dim)."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def merge(self, out: torch.Tensor) -> torch.Tensor:
        """(B, heads, N, head_dim) -> projected (B, N, C)."""
        b, h, n, d = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, n, h * d))

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.heads(x)
        return self.merge(attend(q, k, v, bias, self.scale))


class _ConvProjections(nn.Module):
    """1x1-conv projections of the AlterNet MSA (state_dict names ``to_q``, ``to_kv``,
    ``to_out``)."""

    def __init__(self, dim_in: int, dim_out: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.to_q = nn.Conv2d(dim_in, inner, 1, bias=False)
        self.to_kv = nn.Conv2d(dim_in, inner * 2, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(inner, dim_out, 1))


class WindowedConvAttention(nn.Module):
    """AlterNet MSA on a feature map: (B, C_in, H, W) -> (B, C_out, H, W).

    The map is cut into non-overlapping ``window_size`` x ``window_size`` windows; tokens of a
    window attend to each other with the additive bias
    ``pos_embedding[dy + p - 1, dx + p - 1]`` where (dy, dx) = key position - query position.
    Channels of q, k, v are split into heads as (head, head_dim); k and v are the first and
    second halves of ``to_kv``. Scale is dim_head ** -0.5.
    """

    def __init__(self, dim_in: int, dim_out: int, heads: int, dim_head: int,
                 window_size: int) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        self.window_size = window_size
        self.attn = _ConvProjections(dim_in, dim_out, heads, dim_head)
        side = 2 * window_size - 1
        self.pos_embedding = nn.Parameter(torch.randn(side, side) * 0.02)
        self.register_buffer("rel_index", self.relative_index(window_size), persistent=False)

    def relative_index(self, p: int) -> torch.Tensor:
        """(p*p, p*p, 2) indices into ``pos_embedding`` for a p x p window (p <= window_size):
        key position - query position + (window_size - 1), positions row-major."""
        ys, xs = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
        pos = torch.stack([ys.flatten(), xs.flatten()], dim=1)
        return pos[None, :, :] - pos[:, None, :] + (self.window_size - 1)

    def position_bias(self, p: int | None = None) -> torch.Tensor:
        """(p*p, p*p) additive bias, query rows x key columns (p defaults to the window size)."""
        idx = self.rel_index if p in (None, self.window_size) else \
            self.relative_index(p).to(self.pos_embedding.device)
        return self.pos_embedding[idx[..., 0], idx[..., 1]]

    def _windows(self, t: torch.Tensor, p: int) -> torch.Tensor:
        """(B, heads*d, H, W) -> (B * nH * nW, heads, p*p, d)."""
        b, _, h, w = t.shape
        t = t.reshape(b, self.heads, self.dim_head, h // p, p, w // p, p)
        t = t.permute(0, 3, 5, 1, 4, 6, 2)                              # b nh nw heads p p d
        return t.reshape(b * (h // p) * (w // p), self.heads, p * p, self.dim_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        p = self.window_size
        if h == w and h < p:
            p = h                      # a map smaller than the window is a single window
        if h % p or w % p:
            raise ValueError(f"feature map {h}x{w} is not divisible by window size {p}")
        q = self._windows(self.attn.to_q(x), p)
        k, v = self.attn.to_kv(x).chunk(2, dim=1)
        out = attend(q, self._windows(k, p), self._windows(v, p), self.position_bias(p),
                     self.dim_head ** -0.5)
        nh, nw = h // p, w // p
        out = out.reshape(b, nh, nw, self.heads, p, p, self.dim_head)
        out = out.permute(0, 3, 6, 1, 4, 2, 5).reshape(b, self.heads * self.dim_head, h, w)
        return self.attn.to_out(out)
