"""The loss a curvature or surface runner differentiates or evaluates, resolved for one
checkpoint in one place: the preset (:data:`landscape.settings.LOSS_PRESETS`), the weight decay
(``None``: the checkpoint's training weight decay, 0 when unknown), the L2 convention, the
augmentation (the recipe's pad and flip,
:func:`landscape.loading.checkpoint_info.l2_and_augment`) and the paper's training transform
(:func:`landscape.paper_loss.paper_loss_data`). ``landscape hessian``, ``landscape surface``
and ``landscape analyze`` all resolve it here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..settings import LOSS_PRESETS, LossSettings, SpectrumSettings, default_of


@dataclass
class Loss:
    """A resolved loss: ``wd`` and ``l2`` of the L2 term, ``augment`` (the transform, or None;
    None too when ``paper_loss`` consumed it), the ``images``/``labels`` to use (the paper
    transform's soft targets with ``paper_loss``), ``transform`` (its description, part of a
    result's identity) and ``recipe_source`` (where the training weight decay came from)."""

    wd: float
    l2: str
    augment: Any
    images: Any
    labels: Any
    transform: str
    recipe_source: str


def resolve_loss(loss: LossSettings, info: Any, data: Any, seed: int) -> Loss:
    """The :class:`Loss` of ``loss`` for the checkpoint ``info`` on ``data`` (an ImageData);
    ``seed``: the paper transform's draws (with ``loss.paper_loss``)."""
    from ..loading.checkpoint_info import l2_and_augment
    from ..paper_loss import paper_loss_data
    preset = LOSS_PRESETS[loss.preset]
    wd = loss.wd if loss.wd is not None else preset.get(
        "wd", default_of(SpectrumSettings, "wd"))  # None: the training weight decay
    on = loss.augment if loss.augment is not None else preset.get(
        "augment", default_of(SpectrumSettings, "augment"))
    l2 = loss.l2 or preset.get("l2", default_of(SpectrumSettings, "l2"))
    wd, augment, recipe = l2_and_augment(wd, bool(on), info, data)
    images, labels, augment, transform = paper_loss_data(loss.paper_loss, data, augment, seed,
                                                         wd=wd)
    return Loss(wd, l2, augment, images, labels, transform, recipe["source"])


__all__ = ["Loss", "resolve_loss"]
