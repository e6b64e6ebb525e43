"""Evaluation-time layer substitutions of the surface evaluator (same function, less work).

* :class:`BNFolder`: every ``nn.Sequential`` (Conv2d, BatchNorm2d) pair in eval mode becomes one
  conv whose weight and bias are refolded from the perturbed tensors at each grid point (one
  pass less over the activations).
* :class:`FirstLayerReuse`: on a plane ``theta0 + a*d1 + b*d2`` the first parametrized layer
  (the Conv2d or Linear that receives the model input) is linear in (a, b):
  ``layer(x) = W0 x + b0 + a (D1 x + e1) + b (D2 x + e2)``. The three terms are computed once
  for all images and every grid point reads ``T0 + a T1 + b T2`` instead of running the layer.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Sequential, int, nn.Conv2d, nn.BatchNorm2d]]:
    """(sequential, index, conv, bn) for every foldable pair inside an ``nn.Sequential``."""
    out = []
    for mod in model.modules():
        if isinstance(mod, nn.Sequential):
            ch = list(mod)
            for i in range(len(ch) - 1):
                c, b = ch[i], ch[i + 1]
                if (type(c) is nn.Conv2d and type(b) is nn.BatchNorm2d and b.track_running_stats
                        and b.running_var is not None and c.out_channels == b.num_features):
                    out.append((mod, i, c, b))
    return out


class BNFolder:
    """Installs and refolds folded convs in a model; :meth:`remove` puts the pairs back."""

    def __init__(self) -> None:
        self.pairs: list[tuple[nn.Sequential, int, nn.Conv2d, nn.BatchNorm2d]] = []
        self.folded: list[nn.Conv2d] = []

    def install(self, model: nn.Module, skip: nn.Module | None = None) -> None:
        """Fold every pair of ``model`` (except the one whose conv is ``skip``)."""
        self.remove()
        for seq, i, conv, bn in conv_bn_pairs(model):
            if conv is skip:
                continue
            f = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, conv.dilation, conv.groups, True, conv.padding_mode)
            f.weight = nn.Parameter(torch.empty_like(conv.weight), requires_grad=False)
            f.bias = nn.Parameter(torch.empty(conv.out_channels, dtype=conv.weight.dtype,
                                              device=conv.weight.device), requires_grad=False)
            seq[i], seq[i + 1] = f, nn.Identity()
            self.pairs.append((seq, i, conv, bn))
            self.folded.append(f)
        self.refold()

    def remove(self) -> None:
        for seq, i, conv, bn in self.pairs:
            seq[i], seq[i + 1] = conv, bn
        self.pairs, self.folded = [], []

    @torch.no_grad()
    def refold(self) -> None:
        """Folded weight ``W * s``, bias ``(b - mean) * s + beta``, ``s = gamma/sqrt(var+eps)``."""
        for (_seq, _i, conv, bn), f in zip(self.pairs, self.folded, strict=True):
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight
            torch.mul(conv.weight, scale.view(-1, 1, 1, 1), out=f.weight)
            b = -bn.running_mean * scale
            if bn.bias is not None:
                b = b + bn.bias
            if conv.bias is not None:
                b = b + conv.bias * scale
            f.bias.copy_(b)


def first_layer(model: nn.Module, x: torch.Tensor) -> tuple[str, nn.Module] | None:
    """(name, module) of the Conv2d/Linear that receives the model input ``x`` itself and runs
    first and once in a forward pass (None when the model does anything else first)."""
    calls: list[tuple[str, bool]] = []
    hooks = []
    for name, mod in model.named_modules():
        if type(mod) in (nn.Conv2d, nn.Linear):
            hooks.append(mod.register_forward_pre_hook(
                lambda m, a, name=name: calls.append((name, len(a) == 1 and a[0] is x))))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    if not calls or not calls[0][1] or [n for n, _ in calls].count(calls[0][0]) != 1:
        return None
    return calls[0][0], model.get_submodule(calls[0][0])


class _Reused(nn.Module):
    """Stands in for the first layer: ``T0 + a T1 + b T2`` over consecutive batches."""

    def __init__(self, terms: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self.terms = list(terms)
        self.coef = (0.0, 0.0)
        self.pos = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i, j = self.pos, self.pos + len(x)
        self.pos = j
        out = self.terms[0][i:j].clone()
        for t, c in zip(self.terms[1:], self.coef, strict=False):
            out.add_(t[i:j], alpha=c)
        return out


class FirstLayerReuse:
    """Replaces a model's first layer by precomputed terms (see the module docstring)."""

    def __init__(self) -> None:
        self.site: tuple[nn.Module, str, nn.Module] | None = None
        self.stub: _Reused | None = None

    @torch.no_grad()
    def install(self, model: nn.Module, name: str, x: torch.Tensor,
                dirs: Sequence[dict[str, torch.Tensor]], batch_size: int) -> None:
        """Compute the terms on all of ``x`` (model at theta0) and swap the layer out."""
        self.remove()
        layer = model.get_submodule(name)
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model

        def apply(xb: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
            if isinstance(layer, nn.Conv2d):
                return layer._conv_forward(xb, w, b)
            return F.linear(xb, w, b)

        wn, bn = f"{name}.weight", f"{name}.bias"
        params = [(layer.weight, layer.bias)]
        for d in dirs:
            w = d.get(wn, torch.zeros_like(layer.weight))
            b = d.get(bn) if layer.bias is not None else None
            params.append((w, b))
        terms = []
        for w, b in params:
            parts = [apply(x[i:i + batch_size], w, b) for i in range(0, len(x), batch_size)]
            terms.append(torch.cat(parts))
        self.stub = _Reused(terms)
        setattr(parent, attr, self.stub)
        self.site = (parent, attr, layer)

    def set_point(self, a: float, b: float) -> None:
        """Coefficients of the next point; batches restart from the first image."""
        if self.stub is not None:
            self.stub.coef = (a, b)
            self.stub.pos = 0

    def remove(self) -> None:
        if self.site is not None:
            parent, attr, layer = self.site
            setattr(parent, attr, layer)
        self.site, self.stub = None, None


def first_layer_bytes(model: nn.Module, x: torch.Tensor, name: str, n: int) -> int:
    """Memory the three terms of :class:`FirstLayerReuse` take for ``n`` images."""
    out = []
    h = model.get_submodule(name).register_forward_hook(lambda m, a, o: out.append(o))
    try:
        with torch.inference_mode():
            model(x[:1])
    finally:
        h.remove()
    return 3 * n * out[0][0].numel() * out[0].element_size() if out else 0
