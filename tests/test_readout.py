"""One read-out point: a block's feature map is the residual stream after its addition, for
inferred blocks exactly as for the built-in block lists (issue: researchers' own models).

(a) the demo architectures with ``block_list()`` hidden give the same Fourier, variance, CKA and
lesion numbers as their built-in lists; (b) test-local copies of common block patterns (timm's
pre-norm Block with LayerScale/DropPath, the paper repository's ViT ``Transformer`` and AlterNet
``AttentionBlockB``, torchvision's BasicBlock/Bottleneck, a post-norm block) are read at the
post-addition stream, checked against a hand computation of ``x + f(x)``.
"""
from __future__ import annotations

import landscape_models as models
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from landscape_models.inference import infer_blocks

from landscape.features.fourier import fourier_analysis
from landscape.features.lesion import lesion_study
from landscape.features.similarity import cka_analysis
from landscape.features.variance import variance_analysis

# ------------------------------------------------------------------------------------------
# (a) inferred == built-in on the demo architectures
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randn(48, 1, 28, 28, generator=g), torch.randint(0, 10, (48,), generator=g)


def _close(a, b) -> bool:
    if isinstance(a, (list, tuple)) and a and not np.isscalar(a[0]):
        return len(a) == len(b) and all(_close(u, v) for u, v in zip(a, b, strict=True))
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ["vit_tiny", "alternet_tiny", "resnet_tiny"])
def test_inferred_blocks_measure_like_builtin(name, images):
    torch.manual_seed(1)
    net = models.create(name, num_classes=10, in_chans=1, img_size=28).eval()
    built = models.blocks(net)
    inferred = infer_blocks(net, images[0][:2])
    assert [(b.kind, b.stage) for b in inferred] == [(b.kind, b.stage) for b in built]
    assert all(b.refused is None for b in inferred)
    data = images
    for fn in (fourier_analysis, variance_analysis):
        ref, got = fn(net, data, built, batch_size=16), fn(net, data, inferred, batch_size=16)
        assert ref.kinds == got.kinds and len(ref.skipped) == len(got.skipped) == 1  # head
        field = "spectra" if fn is fourier_analysis else "variance"
        assert _close(getattr(ref, field), getattr(got, field)), (name, field)
    ref, got = cka_analysis(net, data, built, batch_size=16), \
        cka_analysis(net, data, inferred, batch_size=16)
    assert _close(ref.cka, got.cka)
    ref, got = lesion_study(net, data, built), lesion_study(net, data, inferred)
    assert _close(ref.loss, got.loss) and _close(ref.accuracy, got.accuracy)
    assert ref.kinds == got.kinds


def test_branch_readout_would_differ(images):
    """The check above can fail: reading the attention branch (the old inference) differs."""
    torch.manual_seed(1)
    net = models.create("vit_tiny", num_classes=10, in_chans=1, img_size=28).eval()
    inferred = infer_blocks(net, images[0][:2])
    branch = [models.Block(b.name, b.kind, b.stage, b.module, b.branch, b.tokens)
              for b in inferred]
    ref = variance_analysis(net, images, models.blocks(net), batch_size=16)
    got = variance_analysis(net, images, branch, batch_size=16)
    assert not _close(ref.variance, got.variance)


# ------------------------------------------------------------------------------------------
# (b) common block patterns, test-local copies (no timm / torchvision / einops dependency)
# ------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Token self-attention; ``tuple_out`` returns ``(out, attn)`` like the paper's modules."""

    def __init__(self, d: int, heads: int = 2, tuple_out: bool = False) -> None:
        super().__init__()
        self.heads, self.tuple_out = heads, tuple_out
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5).softmax(-1)
        out = self.proj((a @ v).transpose(1, 2).reshape(b, n, d))
        return (out, a) if self.tuple_out else out


class Mlp(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((d,), 0.5))

    def forward(self, x):
        return x * self.gamma


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], *([1] * (x.dim() - 1))) >= self.p
        return x * keep / (1 - self.p)


class TimmBlock(nn.Module):
    """timm's pre-norm ``Block``: x + drop_path(ls(attn(norm(x)))), then the MLP likewise."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(d), Attention(d)
        self.ls1, self.drop_path1 = LayerScale(d), DropPath(0.1)
        self.norm2, self.mlp = nn.LayerNorm(d), Mlp(d)
        self.ls2, self.drop_path2 = LayerScale(d), DropPath(0.1)

    def forward(self, x):
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))

    def hand(self, x):  # [stream after attention, stream after MLP]
        s1 = x + self.ls1(self.attn(self.norm1(x)))
        return [s1, s1 + self.ls2(self.mlp(self.norm2(s1)))]


class FeedForward(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Identity(),
                                 nn.Linear(2 * d, d), nn.Identity())

    def forward(self, x):
        return self.net(x)


class PaperTransformer(nn.Module):
    """The paper repository's ``models.attentions.Transformer`` form: skip from a shortcut, an
    attention returning ``(x, attn)``, ``x = sd1(x) + skip``, then ``ff`` likewise."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.shortcut = nn.Sequential()
        self.norm1, self.attn, self.sd1 = nn.LayerNorm(d), Attention(d, tuple_out=True), \
            nn.Identity()
        self.norm2, self.ff, self.sd2 = nn.LayerNorm(d), FeedForward(d), nn.Identity()

    def forward(self, x):
        skip = self.shortcut(x)
        x = self.norm1(x)
        x, _attn = self.attn(x)
        x = self.sd1(x) + skip
        skip = x
        x = self.norm2(x)
        x = self.ff(x)
        x = self.sd2(x) + skip
        return x

    def hand(self, x):
        s1 = x + self.attn(self.norm1(x))[0]
        return [s1, s1 + self.ff(self.norm2(s1))]


class PostNormBlock(nn.Module):
    """Post-norm (original Transformer / BERT): norm(x + attn(x)), then norm(x + mlp(x))."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.attn, self.norm1, self.mlp, self.norm2 = Attention(d), nn.LayerNorm(d), Mlp(d), \
            nn.LayerNorm(d)

    def forward(self, x):
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))

    def hand(self, x):
        s1 = x + self.attn(x)
        return [s1, self.norm1(s1) + self.mlp(self.norm1(s1))]


class TokenNet(nn.Module):
    def __init__(self, unit: type[nn.Module], d: int = 8, depth: int = 2) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, d, 4, 4)
        self.blocks = nn.Sequential(*[unit(d) for _ in range(depth)])
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        return self.head(self.blocks(self.patch(x).flatten(2).transpose(1, 2)).mean(1))

    def hand(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        out = [t]  # embed: the stream entering the first unit
        for blk in self.blocks:
            s = blk.hand(t)
            out += s
            t = blk(t)
        return out


@pytest.mark.parametrize("unit", [TimmBlock, PaperTransformer, PostNormBlock])
def test_transformer_patterns_read_the_stream(unit):
    torch.manual_seed(0)
    net = TokenNet(unit).eval()
    x = torch.randn(3, 1, 16, 16)
    bl = infer_blocks(net, x)
    assert [b.kind for b in bl] == ["embed", "msa", "mlp", "msa", "mlp", "head"]
    assert all(b.refused is None for b in bl)
    out = models.block_outputs(net, x, bl)
    with torch.no_grad():
        ref = net.hand(x)
    for b, r in zip(bl[:-1], ref, strict=True):
        assert torch.allclose(out[b.name], r, atol=1e-6), b.name


class Attention2d(nn.Module):
    """Attention over the pixels of a (B, C, H, W) map returning ``(out, attn)``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.inner = Attention(c, tuple_out=True)

    def forward(self, x):
        b, c, h, w = x.shape
        out, a = self.inner(x.flatten(2).transpose(1, 2))
        return out.transpose(1, 2).reshape(b, c, h, w), a


class AttentionBlockB(nn.Module):
    """The paper repository's AlterNet ``AttentionBlockB`` (pre-activation): norm, act, 1x1 conv,
    norm, local attention returning ``(x, attn)``, ``x = sd(x) + skip``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.shortcut = nn.Sequential()
        self.norm1, self.relu = nn.BatchNorm2d(c), nn.GELU()
        self.conv, self.norm2 = nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c)
        self.attn, self.sd = Attention2d(c), nn.Identity()

    def forward(self, x):
        if len(self.shortcut) > 0:
            x = self.relu(self.norm1(x))
            skip = self.shortcut(x)
        else:
            skip = self.shortcut(x)
            x = self.relu(self.norm1(x))
        x, _attn = self.attn(self.norm2(self.conv(x)))
        return self.sd(x) + skip

    def hand(self, x):
        return x + self.attn(self.norm2(self.conv(self.relu(self.norm1(x)))))[0]


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: ``out += identity; out = relu(out)``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.downsample = None

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)

    def hand(self, x):
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class Bottleneck(nn.Module):
    """torchvision's ``Bottleneck`` (1x1, 3x3, 1x1, ``out += identity``, ReLU)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        w = c // 2
        self.conv1, self.bn1 = nn.Conv2d(c, w, 1, bias=False), nn.BatchNorm2d(w)
        self.conv2, self.bn2 = nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w)
        self.conv3, self.bn3 = nn.Conv2d(w, c, 1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)

    def hand(self, x):
        f = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))))
        return F.relu(x + f)


class MapNet(nn.Module):
    def __init__(self, unit: type[nn.Module], c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.layer1 = nn.Sequential(unit(c), unit(c))
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        return self.fc(self.layer1(self.stem(x)).mean((2, 3)))


@pytest.mark.parametrize("unit,kind", [(AttentionBlockB, "msa"), (BasicBlock, "conv"),
                                       (Bottleneck, "conv")])
def test_map_patterns_read_the_stream(unit, kind):
    """AlterNet's attention unit: its sum; torchvision's units: what the next unit receives
    (ReLU of the sum, as the built-in ResNet lists read it)."""
    torch.manual_seed(0)
    net = MapNet(unit).eval()
    for m in net.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 1, 8, 8)
    bl = infer_blocks(net, x)
    assert [b.kind for b in bl] == ["embed", kind, kind, "head"]
    out = models.block_outputs(net, x, bl)
    with torch.no_grad():
        t = net.stem(x)
        assert torch.allclose(out["embed"], t)
        for b, u in zip(bl[1:3], net.layer1, strict=True):
            ref = u.hand(t)
            assert torch.allclose(out[b.name], ref, atol=1e-5), b.name
            t = u(t)


class Opaque(nn.Module):
    """A residual sum that no hook can observe: the skip is scaled by a bare function and the
    sum goes into a function, not a module."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.attn = Attention(d)

    def forward(self, x):
        return torch.tanh(0.5 * x + self.attn(x)) * 2


def test_unobservable_stream_is_refused_by_name():
    net = TokenNet(Opaque).eval()
    x = torch.randn(2, 1, 16, 16)
    bl = infer_blocks(net, x)
    msa = [b for b in bl if b.kind == "msa"]
    assert msa and all(b.refused and "not observable" in b.refused for b in msa)
    with pytest.warns(UserWarning, match="blocks.0.attn .* is not read"):
        res = variance_analysis(net, (x, None), bl, batch_size=2)
    assert set(res.skipped) >= {b.name for b in msa}
    assert not set(res.names) & {b.name for b in msa}
