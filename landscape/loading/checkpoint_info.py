"""What a checkpoint says beyond its weights, for every command and ``analyze`` alike: a unique,
readable label per checkpoint (:func:`checkpoint_labels`) and the recipe it was trained with
(:func:`training_recipe`)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..store.provenance import read_json

#: File stems that name no model (``landscape train`` writes ``model.pt``, ``last.pt``).
GENERIC_STEMS = ("model", "last", "best", "final", "checkpoint")

def _own_name(path: Path, recorded: str | None) -> str:
    """The name recorded in the checkpoint, else the file stem (``.pt``/``.pth``/``.tar`` off),
    else, for a generic stem such as ``model``, the run folder's name (``run/epoch_003`` keeps
    both)."""
    if recorded:
        return str(recorded)
    stem = path.name
    for ext in (".tar", ".pth", ".pt", ".ckpt"):
        stem = stem[:-len(ext)] if stem.endswith(ext) else stem
    folder = path.resolve().parent.name
    if stem in GENERIC_STEMS:
        return folder or stem
    if stem.startswith("epoch_") and folder:
        return f"{folder}_{stem}"
    return stem


def checkpoint_labels(paths: Sequence[str | Path], shas: Sequence[str],
                      recorded: Sequence[str | None] | None = None,
                      taken: dict[str, set[str]] | None = None) -> list[str]:
    """One unique, readable name per checkpoint: its own name (see :func:`_own_name`); names
    shared by different checkpoints get their folder prefixed, then the start of their SHA-256.
    ``taken`` maps names already used in the output folder to the SHA-256 prefixes that own
    them; a name owned by another checkpoint gets this checkpoint's SHA-256 prefix appended, so
    no result of another checkpoint is overwritten."""
    paths = [Path(p) for p in paths]
    recorded = list(recorded or [None] * len(paths))
    labels = [_own_name(p, r) for p, r in zip(paths, recorded, strict=False)]

    def clashes(labs: list[str]) -> set[int]:
        return {i for i, lab in enumerate(labs)
                if any(lab == o and shas[i] != shas[j] for j, o in enumerate(labs) if j != i)}

    for i in clashes(labels):
        folder = paths[i].resolve().parent.name
        if folder and not labels[i].startswith(folder):
            labels[i] = f"{folder}_{labels[i]}"
    for i in clashes(labels):
        labels[i] = f"{labels[i]}-{shas[i][:8]}"
    for i, lab in enumerate(labels):
        owners = (taken or {}).get(lab, set())
        if owners and not any(shas[i].startswith(o) for o in owners):
            labels[i] = f"{lab}-{shas[i][:8]}"
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):  # the same checkpoint given twice
        seen[lab] = seen.get(lab, 0) + 1
        if seen[lab] > 1:
            labels[i] = f"{lab}-{seen[lab]}"
    return labels


def training_recipe(info: Any) -> dict[str, Any]:
    """The weight decay and augmentation a checkpoint was trained with: from the checkpoint's
    ``extra`` (``weight_decay``, ``augment``), else its run folder's ``config.json`` (written by
    ``landscape train``), else unknown (``wd`` None: the L2 term is left out and the report says
    so); pad and flip not recorded are :class:`landscape.data.Augment`'s defaults. The paper's
    landscape and spectrum use the model's own training weight decay."""
    from ..data import Augment
    d = Augment()  # the one default of pad and flip
    DEFAULT_PAD, DEFAULT_FLIP = d.pad, d.flip  # noqa: N806
    extra = dict(getattr(info, "extra", None) or {})
    out: dict[str, Any] = {"wd": None, "pad": DEFAULT_PAD, "flip": DEFAULT_FLIP,
                           "source": "unknown"}
    if "weight_decay" in extra:
        aug = extra.get("augment") or {}
        out.update(wd=float(extra["weight_decay"]), pad=int(aug.get("pad", DEFAULT_PAD)),
                   flip=bool(aug.get("flip", DEFAULT_FLIP)), source="checkpoint")
        return out
    cfg_path = Path(str(info.path)).parent / "config.json"
    if cfg_path.is_file():
        try:
            c = read_json(cfg_path).get("config") or {}
        except Exception:  # noqa: BLE001 - an unreadable run config: recipe unknown
            c = {}
        if "weight_decay" in c:
            out.update(wd=float(c["weight_decay"]), pad=int(c.get("pad", DEFAULT_PAD)),
                       flip=bool(c.get("flip", DEFAULT_FLIP)), source=str(cfg_path.name))
    return out


def l2_and_augment(wd: float | None, augment: bool, info: Any, data: Any
                   ) -> tuple[float, Any, dict[str, Any]]:
    """(weight decay, ``Augment`` or None, recipe) for one model: ``wd`` None means the
    training weight decay (0 when unknown); the augmentation is the recipe's pad and flip."""
    from ..data import Augment
    recipe = training_recipe(info)
    out = float(wd) if wd is not None else float(recipe["wd"] or 0.0)
    aug = (Augment(pad=recipe["pad"], flip=recipe["flip"], mean=data.mean, std=data.std)
           if augment else None)
    return out, aug, recipe


__all__ = ["GENERIC_STEMS", "checkpoint_labels", "l2_and_augment", "training_recipe"]
