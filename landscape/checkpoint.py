"""Checkpoints: our self-describing format, the paper's format, and bare state_dicts.

Our format is a plain dict (loadable with ``weights_only=True``)::

    {"format": "landscape", "format_version": 1, "model": NAME, "model_kwargs": {...},
     "dataset": NAME, "normalization": {"mean": [...], "std": [...]}, "seed": int,
     "epoch": int, "metrics": {...}, "state_dict": {...}, "optimizer": {...} (optional)}

so ``landscape analyze ckpt.pt`` needs no other flag. The paper's released files are
``{"name", "state_dict"[, "optimizer"]}``; bare state_dicts need the model name.
Loading never unpickles code: ``torch.load(..., weights_only=True)`` always.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import landscape_models as models
import torch
import torch.nn as nn

from .errors import LandscapeError
from .provenance import file_sha256

FORMAT = "landscape"
FORMAT_VERSION = 1

# The paper's checkpoint names -> (registry name, constructor kwargs, dataset).
PAPER_MODELS = {
    "resnet_50": "resnet50", "resnet50": "resnet50",
    "vit_ti": "vit_ti", "pit_ti": "pit_ti", "swin_ti": "swin_ti",
    "alternet_50": "alternet50", "alternet50": "alternet50",
}
PAPER_DATASETS = {"cifar100": 100, "cifar10": 10}


@dataclass
class CheckpointInfo:
    """What a checkpoint says about itself (plus its path and SHA-256)."""

    path: str
    sha256: str
    format: str  # "landscape" | "paper" | "state_dict"
    model: str
    model_kwargs: dict[str, Any]
    dataset: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    seed: int | None = None
    epoch: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.model_kwargs.get("num_classes", 0))

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file ``path`` names: the file itself, or a run folder's ``model.pt``."""
    p = Path(path)
    if p.is_dir():
        if (p / "model.pt").is_file():
            return p / "model.pt"
        raise LandscapeError(f"{p} is a folder without model.pt (a finished `landscape train` "
                             "run has one); pass a checkpoint file")
    if not p.is_file():
        raise LandscapeError(f"checkpoint not found: {p}")
    return p


def save(path: str | Path, model: nn.Module, *, dataset: str | None = None,
         mean: list[float] | None = None, std: list[float] | None = None,
         seed: int | None = None, epoch: int | None = None,
         metrics: dict[str, Any] | None = None, optimizer: dict | None = None,
         extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` in our format, atomically (a killed save never leaves a torn file)."""
    cfg = getattr(model, "model_config", None)
    if cfg is None:
        raise LandscapeError("model was not built by landscape_models.create(); "
                             "cannot record how to rebuild it")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model": cfg["name"], "model_kwargs": _plain(cfg["kwargs"]),
        "dataset": dataset,
        "normalization": {"mean": list(mean) if mean is not None else None,
                          "std": list(std) if std is not None else None},
        "seed": seed, "epoch": epoch, "metrics": _plain(metrics or {}),
        "extra": _plain(extra or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if optimizer is not None:
        obj["optimizer"] = optimizer
    from .provenance import atomic_write
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)
    return path


def _plain(obj: Any) -> Any:
    """JSON-like copy (tuples -> lists, tensors/numpy scalars -> numbers) safe for weights_only."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else obj.tolist()
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


def read(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, loaded with ``weights_only=True``; clear errors for bad files."""
    path = Path(path)
    if not path.exists():
        raise LandscapeError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise LandscapeError(f"checkpoint path is a directory, not a file: {path}")
    try:
        import warnings
        with warnings.catch_warnings():  # a bare pickle: torch's two-line protocol warning
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure becomes one clear line
        text = str(e)
        reason = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
        reason = reason[0] if reason else type(e).__name__
        if "Unsupported global" in text or "GLOBAL" in text:
            raise LandscapeError(f"refusing to load {path}: it contains pickled code or objects "
                                 f"that a weights-only load does not allow ({reason[:160]})"
                                 ) from None
        raise LandscapeError(f"not a readable PyTorch checkpoint (corrupt or wrong file): "
                             f"{path}: {reason[:160]}") from None
    if not isinstance(obj, dict):
        raise LandscapeError(f"not a checkpoint: {path} holds a {type(obj).__name__}, not a dict")
    return obj


def _paper_model_name(name: str) -> str | None:
    n = name.lower()
    n = re.sub(r"_(cifar(10|100)|imagenet)(_.*)?$", "", n)
    return PAPER_MODELS.get(n)


def load(path: str | Path, model: str | None = None,
         model_kwargs: dict[str, Any] | None = None,
         device: str | torch.device = "cpu",
         bare_kwargs: dict[str, Any] | None = None) -> tuple[nn.Module, CheckpointInfo]:
    """Rebuild the model a checkpoint describes and load its weights (strict).

    ``model`` names the architecture for bare state_dicts (and may override the paper's name);
    ``model_kwargs`` (e.g. ``num_classes``) complete or override the recorded constructor args.
    ``bare_kwargs`` (the dataset's classes, channels and image size, from ``--data``) are the
    constructor args of a bare state_dict's model, which records none.
    The model is returned in eval mode on ``device``.
    """
    path = Path(path)
    obj = read(path)
    sha = file_sha256(path)
    if obj.get("format") == FORMAT:
        sd = obj.get("state_dict")
        name = model or obj.get("model")
        kwargs = dict(obj.get("model_kwargs") or {})
        kwargs.update(model_kwargs or {})
        norm = obj.get("normalization") or {}
        info = CheckpointInfo(str(path), sha, "landscape", name, kwargs, obj.get("dataset"),
                              norm.get("mean"), norm.get("std"), obj.get("seed"), obj.get("epoch"),
                              dict(obj.get("metrics") or {}), dict(obj.get("extra") or {}))
    elif "state_dict" in obj and isinstance(obj.get("state_dict"), dict):
        sd = obj["state_dict"]
        pname = str(obj.get("name", ""))
        name = model or _paper_model_name(pname)
        if name is None:
            raise LandscapeError(f"{path}: unknown model name {pname!r} in checkpoint; "
                                 f"pass --model (one of {', '.join(models.names())})")
        dataset = "cifar100" if "cifar100" in pname.lower() or not pname else None
        kwargs = {"num_classes": 100, "in_chans": 3, "img_size": 32}
        kwargs.update(model_kwargs or {})
        info = CheckpointInfo(str(path), sha, "paper", name, kwargs, dataset or "cifar100",
                              extra={"paper_name": pname})
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = obj
        if model is None:
            raise LandscapeError(f"{path} is a bare state_dict; pass --model NAME "
                                 f"(one of {', '.join(models.names())})")
        info = CheckpointInfo(str(path), sha, "state_dict", model,
                              {**(bare_kwargs or {}), **(model_kwargs or {})})
    else:
        keys = ", ".join(sorted(map(str, obj))[:8])
        raise LandscapeError(f"not a checkpoint: {path} has neither a state_dict nor tensors "
                             f"(keys: {keys})")
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise LandscapeError(f"corrupt checkpoint: {path}: its state_dict does not hold tensors")
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    if info.model not in models.names():
        raise LandscapeError(f"{path}: unknown model {info.model!r}; known models: "
                             f"{', '.join(models.names())}")
    net = models.create(info.model, **info.model_kwargs)
    info.model_kwargs = dict(net.model_config["kwargs"])
    try:
        load_state_dict_checked(net, sd, where=str(path))
    except LandscapeError as e:
        if info.format != "state_dict" or bare_kwargs:
            raise
        raise LandscapeError(f"{e} (a bare state_dict records no dataset: pass --data to size "
                             "the model for it)") from None
    return net.to(device).eval(), info


def check_finite(state: nn.Module | dict[str, Any], where: str = "") -> None:
    """Refuse (LandscapeError) a model or state_dict holding NaN or infinite floating values in
    any parameter or buffer: every analysis of it would be NaN. The CLI calls this on every
    checkpoint it reads unless ``--allow-nonfinite`` is given."""
    sd = state.state_dict() if isinstance(state, nn.Module) else state
    bad = []
    for name, t in sd.items():
        if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()):
            n = int((~torch.isfinite(t)).sum())
            if n:
                bad.append(f"{name} ({n} of {t.numel()})")
    if bad:
        more = f", ... ({len(bad) - 4} more)" if len(bad) > 4 else ""
        raise LandscapeError(f"{where + ': ' if where else ''}checkpoint holds NaN or infinite "
                             f"values in {len(bad)} tensor(s): {', '.join(bad[:4])}{more}; "
                             "every result would be NaN (pass --allow-nonfinite to run anyway)")


def check_finite_file(path: str | Path) -> None:
    """:func:`check_finite` on the tensors of a checkpoint file (any supported format)."""
    obj = read(path)
    sd = obj.get("state_dict") if isinstance(obj.get("state_dict"), dict) else obj
    check_finite({k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}, str(path))


def check_compatible(info: CheckpointInfo, data: Any) -> None:
    """Refuse a dataset whose classes or input channels differ from the checkpoint's model."""
    if info.num_classes and data.num_classes != info.num_classes:
        raise LandscapeError(f"{info.path}: model has {info.num_classes} classes but dataset "
                             f"{data.name!r} has {data.num_classes}")
    in_chans = info.model_kwargs.get("in_chans")
    if in_chans and data.images.shape[1] != in_chans:
        raise LandscapeError(f"{info.path}: model takes {in_chans} input channels but dataset "
                             f"{data.name!r} has {data.images.shape[1]}")


def load_state_dict_checked(model: nn.Module, sd: dict[str, torch.Tensor], where: str = "") -> None:
    """Strict load that lists missing keys, unexpected keys and shape mismatches in one error."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    problems = []
    name = getattr(model, "model_config", {}).get("name", type(model).__name__)

    def lst(items: list[str]) -> str:
        more = f", ... ({len(items) - 8} more)" if len(items) > 8 else ""
        return ", ".join(items[:8]) + more

    if missing:
        problems.append(f"missing keys ({len(missing)}): {lst(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {lst(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {lst(shapes)}")
    if problems:
        raise LandscapeError(f"{where}: checkpoint does not fit model {name!r}: "
                             + "; ".join(problems))
    model.load_state_dict(sd, strict=True)
