"""AlterNet: a pre-activation ResNet whose stages end with MSA blocks (the paper repo's
``models/alternet.py``; ``dnn_50`` layout for ``alternet50``).

Pattern
-------
``pattern`` gives the unit types of every stage, in order: ``"C"`` a pre-activation conv unit,
``"M"`` an MSA unit. Accepted forms (all equivalent)::

    "CCC,CCCM,CMCMCM,CMCM"                       # stages separated by ',' (or '|', '-', ' ')
    ["CCC", "CCCM", "CMCMCM", "CMCM"]
    [["C","C","C"], ["C","C","C","M"], ["C","M","C","M","C","M"], ["C","M","C","M"]]

The first unit of stage s has stride ``strides[s]`` (default: 1 for the first stage, 2 after).
The default of ``alternet50`` is the paper's CIFAR-100 AlterNet-50 (above: 3, 4, 6, 4 units, MSA
heads 3, 6, 12, 24 of 64 channels each); ``alternet_tiny`` defaults to ``"CM,CM,CM"``.
The normalized pattern is stored as ``model.pattern`` (comma form). MSA windows: a map that is
not larger than ``window_size`` is attended as one window (bias table indexed around its centre).

Units
-----
* conv (``C``): a = relu(bn(x)); out = branch(a) + (shortcut(a) if projecting else x), where the
  bottleneck branch is conv1 (1x1) -> [bn, relu, conv 3x3 (stride)] -> [bn, relu, conv 1x1 (4x)]
  (keys ``bn``, ``conv1``, ``conv2.{0,2}``, ``conv3.{0,2}``, ``shortcut.0``) and the basic branch is
  conv1 (3x3, stride) -> [bn, relu, conv 3x3].
* MSA (``M``): a = gelu(norm1(x)); out = attn(norm2(conv(a))) + (shortcut(a) if projecting else x),
  with ``attn`` a :class:`~models.attention.WindowedConvAttention` on ``window_size`` windows
  (keys ``norm1``, ``conv``, ``norm2``, ``attn.pos_embedding``,
  ``attn.attn.{to_q,to_kv,to_out.0}``).
  The repo only places MSA units at stride 1; for an ``M`` that opens a stage here the stride is
  applied by ``conv`` (a 1x1 strided conv) and the shortcut.
* head: bn -> relu -> global average pool -> linear (``classifier.0.{bn,dense}``).
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn as nn

from .attention import WindowedConvAttention
from .blocks import Block
from .registry import register
from .resnet import StagedNet

Pattern = str | Sequence[str | Sequence[str]]

PAPER_CIFAR100_PATTERN = "CCC,CCCM,CMCMCM,CMCM"


def parse_pattern(pattern: Pattern) -> list[list[str]]:
    """Normalize a stage pattern (see module docstring) to a list of lists of "C"/"M"."""
    if isinstance(pattern, str):
        stages = [list(s) for s in re.split(r"[,|\-\s]+", pattern.strip().upper()) if s]
    else:
        stages = [list(s.upper()) if isinstance(s, str) else [str(t).upper() for t in s]
                  for s in pattern]
    if not stages or any(not s for s in stages):
        raise ValueError(f"pattern {pattern!r} has an empty stage")
    bad = {t for s in stages for t in s} - {"C", "M"}
    if bad:
        raise ValueError(f"pattern {pattern!r}: unit types must be 'C' or 'M', got {sorted(bad)}")
    return stages


class PreActConvUnit(nn.Module):
    """Pre-activation basic or bottleneck unit (see module docstring)."""

    def __init__(self, c_in: int, width: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        self.expansion = 4 if bottleneck else 1
        c_out = width * self.expansion
        self.shortcut = nn.Sequential(*(
            [nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)]
            if stride != 1 or c_in != c_out else []))
        self.bn = nn.BatchNorm2d(c_in)
        self.relu = nn.ReLU()
        if bottleneck:
            self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
            self.conv2 = _bn_relu_conv(width, width, 3, stride)
            self.conv3 = _bn_relu_conv(width, c_out, 1, 1)
        else:
            self.conv1 = nn.Conv2d(c_in, width, 3, stride=stride, padding=1, bias=False)
            self.conv2 = _bn_relu_conv(width, c_out, 3, 1)
        self.out_channels = c_out

    def last(self) -> nn.Module:
        """The module whose output is the residual branch."""
        return self.conv3 if hasattr(self, "conv3") else self.conv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.bn(x))
        skip = self.shortcut(a) if len(self.shortcut) else x
        y = self.conv2(self.conv1(a))
        if hasattr(self, "conv3"):
            y = self.conv3(y)
        return y + skip


def _bn_relu_conv(c_in: int, c_out: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(),
                         nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False))


class MSAUnit(nn.Module):
    """Pre-activation MSA unit: width = c_in // expansion, output width_out * expansion."""

    def __init__(self, c_in: int, width_out: int, stride: int, expansion: int, heads: int,
                 dim_head: int, window_size: int) -> None:
        super().__init__()
        width = c_in // expansion
        c_out = width_out * expansion
        self.shortcut = nn.Sequential(*(
            [nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)]
            if stride != 1 or c_in != c_out else []))
        self.norm1 = nn.BatchNorm2d(c_in)
        self.relu = nn.GELU()
        self.conv = nn.Conv2d(c_in, width, 1, stride=stride, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.attn = WindowedConvAttention(width, c_out, heads, dim_head, window_size)
        self.out_channels = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.norm1(x))
        skip = self.shortcut(a) if len(self.shortcut) else x
        return self.attn(self.norm2(self.conv(a))) + skip


class Stem(nn.Module):
    """``layer0``: 3x3 conv (CIFAR) or 7x7 stride-2 conv + 3x3 stride-2 max pool, no BN."""

    def __init__(self, in_chans: int, width: int, pool: bool) -> None:
        super().__init__()
        if pool:
            self.layer0 = nn.Sequential(
                nn.Conv2d(in_chans, width, 7, stride=2, padding=3, bias=False),
                nn.MaxPool2d(3, stride=2, padding=1))
        else:
            self.layer0 = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer0(x)


class BNGAPHead(nn.Module):
    """bn -> relu -> global average pool -> ``dense``."""

    def __init__(self, c_in: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.relu = nn.ReLU()
        self.dense = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.relu(self.bn(x)).mean(dim=(2, 3)))


class AlterNet(StagedNet):
    """Pre-activation ResNet with MSA units placed by ``pattern``."""

    def __init__(self, pattern: Pattern, widths: Sequence[int], heads: Sequence[int],
                 bottleneck: bool = True, stem: bool = False, stem_width: int = 64,
                 window_size: int = 4, dim_head: int = 64, in_chans: int = 3,
                 num_classes: int = 100, strides: Sequence[int] | None = None) -> None:
        super().__init__()
        stages = parse_pattern(pattern)
        strides = (1,) + (2,) * (len(stages) - 1) if strides is None else tuple(strides)
        if not len(stages) == len(widths) == len(heads):
            raise ValueError(f"pattern has {len(stages)} stages but widths {list(widths)} "
                             f"and heads {list(heads)}")
        self.pattern = ",".join("".join(s) for s in stages)
        expansion = 4 if bottleneck else 1
        self.layer0 = Stem(in_chans, stem_width, stem)
        c = stem_width
        stage_units = []
        for s, (kinds, w, h) in enumerate(zip(stages, widths, heads, strict=True)):
            units: list[nn.Module] = []
            for i, kind in enumerate(kinds):
                stride = strides[s] if i == 0 else 1
                if kind == "C":
                    units.append(PreActConvUnit(c, w, stride, bottleneck))
                else:
                    units.append(MSAUnit(c, w, stride, expansion, h, dim_head, window_size))
                c = units[-1].out_channels
            stage_units.append(units)
        self._add_stages(stage_units)
        self.classifier = nn.Sequential(BNGAPHead(c, num_classes))
        self._init_convs()

    def _unit_block(self, name: str, stage: int, unit: nn.Module) -> Block:
        if isinstance(unit, MSAUnit):
            return Block(name, "msa", stage, unit, unit.attn)
        return Block(name, "conv", stage, unit, unit.last())


@register("alternet50")
def alternet50(num_classes: int = 100, in_chans: int = 3, img_size: int = 32,
               pattern: Pattern = PAPER_CIFAR100_PATTERN, stem: bool = False,
               window_size: int = 4, heads: Sequence[int] = (3, 6, 12, 24),
               dim_head: int = 64, widths: Sequence[int] = (64, 128, 256, 512)) -> AlterNet:
    """The paper's AlterNet-50 (bottleneck units, widths 64..512, CIFAR stem), window 4."""
    return AlterNet(pattern, tuple(widths), tuple(heads), True, stem, widths[0], window_size,
                    dim_head, in_chans, num_classes)


@register("alternet_tiny")
def alternet_tiny(num_classes: int = 10, in_chans: int = 1, img_size: int = 28,
                  pattern: Pattern = "CM,CM,CM", widths: Sequence[int] = (16, 32, 64),
                  heads: Sequence[int] = (1, 2, 4), dim_head: int = 16,
                  window_size: int = 7, strides: Sequence[int] = (2, 2, 2)) -> AlterNet:
    """Small CPU AlterNet: 3x3 stem at full resolution, basic pre-activation units, widths
    16-32-64, each stage halving the map (28 -> 14 -> 7 -> 4) and ending with an MSA unit
    (heads 1, 2, 4 of 16 channels) on 7x7 windows (a map not larger than the window is one
    window: global attention in the last two stages)."""
    return AlterNet(pattern, tuple(widths), tuple(heads), False, False, widths[0], window_size,
                    dim_head, in_chans, num_classes, tuple(strides))
