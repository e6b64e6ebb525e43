"""Post-activation ResNet in the layout of the paper repo's ``models/resnet.py`` (dnn blocks).

Keys: ``layer0.{0: conv, 1: bn}`` (stem), ``layer<s>.<i>.{shortcut.{0,1}, conv1.{0,1}, conv2.{0,1},
conv3.{0,1}}`` (conv, bn pairs), ``classifier.0.dense`` (global average pool + linear).
A unit computes relu(branch(x) + shortcut(x)); the branch ends with the BatchNorm ``conv<k>.1``.
``stem=False`` is the CIFAR stem (3x3 conv, stride 1); ``stem=True`` the ImageNet one
(7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max pool).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .blocks import Block
from .registry import register


def default_strides(num_stages: int) -> tuple[int, ...]:
    """Stride of the first unit of each stage: 1, then 2 for every later stage."""
    return (1,) + (2,) * (num_stages - 1)


def conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """conv (no bias, padding k//2) -> BatchNorm [-> ReLU]."""
    mods = [nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
            nn.BatchNorm2d(c_out)]
    if relu:
        mods.append(nn.ReLU())
    return nn.Sequential(*mods)


class ResidualUnit(nn.Module):
    """Post-activation basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 with 4x expansion) unit."""

    def __init__(self, c_in: int, width: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        expansion = 4 if bottleneck else 1
        c_out = width * expansion
        self.shortcut = (conv_bn(c_in, c_out, 1, stride, relu=False)
                         if stride != 1 or c_in != c_out else nn.Sequential())
        if bottleneck:
            self.conv1 = conv_bn(c_in, width, 1)
            self.conv2 = conv_bn(width, width, 3, stride)
            self.conv3 = conv_bn(width, c_out, 1, relu=False)
        else:
            self.conv1 = conv_bn(c_in, width, 3, stride)
            self.conv2 = conv_bn(width, c_out, 3, relu=False)
        self.relu = nn.ReLU()
        self.out_channels = c_out

    def last_bn(self) -> nn.Module:
        """The BatchNorm whose output is the residual branch."""
        return self.conv3[1] if hasattr(self, "conv3") else self.conv2[1]

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.conv1(x))
        return self.conv3(x) if hasattr(self, "conv3") else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.branch(x) + self.shortcut(x))


class GAPHead(nn.Module):
    """Global average pool -> linear ``dense``."""

    def __init__(self, c_in: int, num_classes: int) -> None:
        super().__init__()
        self.dense = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(x.mean(dim=(2, 3)))


class StagedNet(nn.Module):
    """A stem ``layer0``, stages ``layer1..layerS`` (``nn.Sequential`` of residual units) and a
    ``classifier``; subclasses build them and say what kind of block each unit is."""

    stages: list[str]

    def _add_stages(self, stage_units: Sequence[Sequence[nn.Module]]) -> None:
        self.stages = []
        for s, units in enumerate(stage_units):
            self.add_module(f"layer{s + 1}", nn.Sequential(*units))
            self.stages.append(f"layer{s + 1}")

    def _init_convs(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer0(x)
        for name in self.stages:
            x = getattr(self, name)(x)
        return self.classifier(x)

    def _unit_block(self, name: str, stage: int, unit: nn.Module) -> Block:
        raise NotImplementedError

    def block_list(self) -> list[Block]:
        out = [Block("embed", "embed", 0, self.layer0)]
        for s, name in enumerate(self.stages):
            for i, unit in enumerate(getattr(self, name)):
                out.append(self._unit_block(f"{name}.{i}", s, unit))
        out.append(Block("head", "head", len(self.stages) - 1, self.classifier))
        return out


class ResNet(StagedNet):
    """Stages ``layer1..layerS`` of ``num_blocks[s]`` units of base width ``widths[s]``; the first
    unit of stage s has stride ``strides[s]`` (default 1 for the first stage, 2 for the others)."""

    def __init__(self, num_blocks: Sequence[int], widths: Sequence[int], bottleneck: bool,
                 stem: bool = False, stem_width: int = 64, in_chans: int = 3,
                 num_classes: int = 100, strides: Sequence[int] | None = None) -> None:
        super().__init__()
        strides = default_strides(len(widths)) if strides is None else tuple(strides)
        if stem:
            self.layer0 = nn.Sequential(
                nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(stem_width), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))
        else:
            self.layer0 = conv_bn(in_chans, stem_width, 3)
        c = stem_width
        stages = []
        for s, (n, w) in enumerate(zip(num_blocks, widths, strict=False)):
            units = []
            for i in range(n):
                units.append(ResidualUnit(c, w, strides[s] if i == 0 else 1, bottleneck))
                c = units[-1].out_channels
            stages.append(units)
        self._add_stages(stages)
        self.classifier = nn.Sequential(GAPHead(c, num_classes))
        self._init_convs()

    def _unit_block(self, name: str, stage: int, unit: nn.Module) -> Block:
        return Block(name, "conv", stage, unit, unit.last_bn())


@register("resnet50")
def resnet50(num_classes: int = 100, in_chans: int = 3, img_size: int = 32,
             stem: bool = False, widths: Sequence[int] = (64, 128, 256, 512),
             num_blocks: Sequence[int] = (3, 4, 6, 3)) -> ResNet:
    """The paper's CIFAR ResNet-50 (bottleneck units 3-4-6-3, widths 64..512, 3x3 stem).
    ``widths``/``num_blocks`` exist for scaled-down copies (tests); the defaults are the paper's."""
    return ResNet(tuple(num_blocks), tuple(widths), True, stem, widths[0], in_chans, num_classes)


@register("resnet_tiny")
def resnet_tiny(num_classes: int = 10, in_chans: int = 1, img_size: int = 28,
                num_blocks: Sequence[int] = (2, 2, 2), widths: Sequence[int] = (16, 32, 64),
                strides: Sequence[int] = (2, 2, 2)) -> ResNet:
    """Small CPU ResNet: 3x3 stem of 16 channels at full resolution, then two basic units per
    stage, widths 16-32-64; the first unit of each stage halves the map (28 -> 14 -> 7 -> 4), the
    second keeps it, so three Conv units compare input and output on the same grid."""
    return ResNet(tuple(num_blocks), tuple(widths), False, False, widths[0], in_chans, num_classes,
                  tuple(strides))
