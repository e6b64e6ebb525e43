"""The paper's fig1 loss: soft-target NLL + wd·Σ‖p‖₂ on the training transform (wd = 0.05).

Park & Kim's ``losslandscape.ipynb`` (xxxnell/how-do-vits-work) evaluates the loss landscape on
the *augmented training set*: every batch goes through the training transform of the config it
loads - in every HDVW config (``configs/cifar10_vit.yaml``, ``configs/cifar100_vit.yaml``, "used
for both CNNs and ViTs") RandAugment ``rand-m9-n2-mstd1.0`` after pad/flip, then timm's ``Mixup``
with ``mixup_alpha: 1.0`` and ``cutmix_alpha: 0.8`` (one of the two per batch with probability
1/2, one λ per batch) and label smoothing 0.1 - the NLL is the cross-entropy against those soft
targets, and the plotted loss is ``NLL + weight_decay · Σ_p ‖p‖₂`` with the config's
``weight_decay = 0.05`` for every model (``ops/loss_landscapes.py``). (An earlier version of those
configs had Mixup α 0.8 and mstd0.5; the notebook itself sets neither.) :class:`PaperLoss` holds
those settings; :func:`paper_transform` makes one fixed, seeded transformed copy of a set of
images (pad/flip, RandAugment, then mixing in chunks of ``mix_batch`` images, then smoothing) so
that every grid point and every Hessian product sees the same images and targets. RandAugment is
torchvision's (:func:`landscape.data.augment.rand_augment`) when torchvision is importable; it is
not a dependency, and without it the transform skips RandAugment and :meth:`PaperLoss.describe`
(the report's settings table) states the deviation; :func:`soft_cross_entropy` and
:func:`paper_loss` give the value by hand. Differences from timm: the mixing partner is a random
permutation of the chunk (timm: the reversed batch), and the seeded draws are those of
:func:`landscape.data.augment.mix` (the same recipe, kept here to record λ and the partner).

``landscape analyze --set paper_loss=true`` (on in the ``paper`` budget, which also sets
``surface_wd = hessian_wd = 0.05``) routes the surface and Hessian data through
:func:`paper_loss_data`; the targets are then (N, K) probabilities, which ``F.cross_entropy``
takes as they are.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .curvature.l2 import l2_penalty
from .data.augment import RAND_AUGMENT, parse_rand_augment, rand_augment
from .errors import LandscapeError

PAPER_WD = 0.05


@dataclass(frozen=True)
class PaperLoss:
    """The paper's landscape loss: ``soft-target NLL + wd · Σ_p ‖p‖₂`` on the training transform.

    ``wd``: the L2 factor (the paper's config: 0.05 for every model); ``mixup_alpha``,
    ``cutmix_alpha``: Beta parameters (the configs' 1.0 and 0.8; 0 turns one off; both 0: no
    mixing); ``label_smoothing``: ε of ``(1 - ε)·target + ε/K``; ``mix_batch``: images mixed
    together (the paper's training batch of 96); ``rand_augment``: timm's RandAugment string
    ("" for none)."""

    wd: float = PAPER_WD
    mixup_alpha: float = 1.0
    cutmix_alpha: float = 0.8
    label_smoothing: float = 0.1
    mix_batch: int = 96
    rand_augment: str = RAND_AUGMENT

    def __post_init__(self) -> None:
        if self.wd < 0 or self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise LandscapeError("paper loss: wd and the mixing alphas must be >= 0")
        if not 0 <= self.label_smoothing < 1:
            raise LandscapeError("paper loss: label_smoothing must be in [0, 1)")
        if self.mix_batch < 1:
            raise LandscapeError("paper loss: mix_batch must be >= 1")
        if self.rand_augment:
            parse_rand_augment(self.rand_augment)

    def describe(self) -> str:
        """One line for the report's settings table, from the settings actually used (the wd, and
        whether RandAugment ran or is a stated deviation)."""
        _, ra = rand_augment(self.rand_augment)
        return (f"soft-target NLL + {self.wd:g}·Σ‖p‖₂ on the training transform (pad/flip, "
                f"{ra}, Mixup α={self.mixup_alpha:g} / CutMix α={self.cutmix_alpha:g} per batch "
                f"of {self.mix_batch}, label smoothing {self.label_smoothing:g})")


@dataclass
class TransformedData:
    """A transformed copy: images, soft targets (N, K), and per chunk the mixing record
    ``(start, lam, perm, cutmix)`` (``perm`` within the chunk)."""

    images: torch.Tensor
    targets: torch.Tensor
    record: list[tuple[int, float, list[int], bool]] = field(default_factory=list)


def smooth_targets(targets: torch.Tensor, eps: float) -> torch.Tensor:
    """``(1 - eps)·targets + eps/K`` (timm's label smoothing, which commutes with mixing)."""
    k = targets.shape[-1]
    return (1.0 - eps) * targets + eps / k


def paper_transform(x: torch.Tensor, y: torch.Tensor, num_classes: int,
                    spec: PaperLoss = PaperLoss(), augment: Any = None,
                    seed: int = 0, mean: Any = None, std: Any = None) -> TransformedData:
    """One fixed, seeded training-transform copy of ``(x, y)``: ``augment(x, generator)`` (pad and
    flip) when given, RandAugment (``spec.rand_augment``, torchvision's, on the pixels
    ``x·std + mean``; skipped when torchvision is not installed), then Mixup/CutMix in
    consecutive chunks of ``spec.mix_batch`` images, then label smoothing. Returns the images,
    the soft targets and the mixing record."""
    g = torch.Generator().manual_seed(int(seed))
    ra, _ = rand_augment(spec.rand_augment, mean, std)
    xs, ts, record = [], [], []
    for i in range(0, len(x), spec.mix_batch):
        xb, yb = x[i:i + spec.mix_batch].cpu(), y[i:i + spec.mix_batch].cpu()
        if augment is not None:
            xb = augment(xb, g)
        if ra is not None:
            xb = ra(xb, g)
        t = F.one_hot(yb.long(), num_classes).to(xb.dtype) if yb.dim() == 1 else yb.to(xb.dtype)
        xm, t, (lam, perm, cut) = _mix_chunk(xb, t, spec, g)
        record.append((i, lam, perm, cut))
        xs.append(xm.to(x.device))
        ts.append(smooth_targets(t, spec.label_smoothing).to(x.device))
    return TransformedData(torch.cat(xs), torch.cat(ts), record)


def _mix_chunk(xb: torch.Tensor, t: torch.Tensor, spec: PaperLoss, g: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, tuple[float, list[int], bool]]:
    """timm's batch-mode Mixup/CutMix of one chunk with a permutation of itself (the draws of
    :func:`landscape.data.augment.mix`); returns (images, targets, (lam, perm, cutmix))."""
    from .data.augment import mix_targets
    return mix_targets(xb, t, spec.mixup_alpha, spec.cutmix_alpha, g)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-Σ_k target_k · log softmax(logits)_k``."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def paper_loss(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
               spec: PaperLoss = PaperLoss()) -> torch.Tensor:
    """``soft_cross_entropy(model(images), targets) + spec.wd · Σ_p ‖p‖₂`` (the model as it is:
    call ``model.eval()`` first for the landscape's BN convention)."""
    nll = soft_cross_entropy(model(images), targets)
    return nll + l2_penalty(list(model.parameters()), spec.wd, "paper")


def paper_loss_data(on: bool, data: Any, augment: Any, seed: int,
                    spec: PaperLoss = PaperLoss(), wd: float | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, Any, str]:
    """(images, labels, augment, transform description) for the surface or Hessian of
    ``landscape analyze``: unchanged when ``on`` is False, else the paper transform of ``data``
    (targets (N, K), ``augment`` consumed: None is returned for it). ``wd``: the L2 factor the
    analysis actually uses (the description names it; default ``spec.wd``)."""
    if not on:
        return data.images, data.labels, augment, repr(augment)
    if wd is not None:
        spec = replace(spec, wd=float(wd))
    t = paper_transform(data.images, data.labels, data.num_classes, spec, augment, seed,
                        getattr(data, "mean", None), getattr(data, "std", None))
    return t.images, t.targets, None, spec.describe() + f"; {augment!r}, seed {seed}"
