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

from ..errors import LandscapeError

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
    from ..store.provenance import atomic_write
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
    return _read_bytes(_checked_path(path), None)[0]


def _checked_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise LandscapeError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise LandscapeError(f"checkpoint path is a directory, not a file: {path}")
    return path


def _read_bytes(path: Path, digest: Any) -> tuple[dict[str, Any], str | None]:
    """(the checkpoint dict, hex SHA-256 of the same bytes when ``digest`` is a hashlib object):
    the file is read once, hashed and unpickled (``weights_only=True``) from memory."""
    import io
    try:
        raw = path.read_bytes()
        sha = None
        if digest is not None:
            digest.update(raw)
            sha = digest.hexdigest()
        import warnings
        with warnings.catch_warnings():  # a bare pickle: torch's two-line protocol warning
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
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
    return obj, sha


#: Where a checkpoint may hold its weights: our format and the paper's (``state_dict``), most
#: training scripts (``model_state_dict``, ``model``, ``model_state``), or a bare state dict.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "model_state")


@dataclass
class CheckpointFile:
    """One checkpoint file read once (:func:`read_checkpoint`): its path, the SHA-256 of the
    bytes read, the raw dict, the state dict found in it (``module.`` prefixes off) and its
    format: ``landscape`` (ours), ``paper`` (``{"name", "state_dict"}``), ``state_dict`` (a
    bare state dict) or the key that held it (``model_state_dict``, ``model``, ...)."""

    path: Path
    sha256: str
    obj: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    format: str


def _is_state_dict(d: Any) -> bool:
    return isinstance(d, dict) and bool(d) and all(isinstance(v, torch.Tensor)
                                                   for v in d.values())


def read_checkpoint(path: str | Path, allow_nonfinite: bool = True) -> CheckpointFile:
    """Read, hash and parse a checkpoint file once; every loader takes the result (the one
    parser, so every command accepts the same formats, see :data:`STATE_DICT_KEYS`). Unless
    ``allow_nonfinite``, a state dict holding NaN or inf values is refused
    (:func:`check_finite`, on the same tensors). ``torch.load(..., weights_only=True)``."""
    import hashlib
    path = _checked_path(path)
    obj, sha = _read_bytes(path, hashlib.sha256())
    sd: Any = None
    if obj.get("format") == FORMAT:
        sd, fmt = obj.get("state_dict"), FORMAT
    elif _is_state_dict(obj):
        sd, fmt = obj, "state_dict"
    else:
        fmt = ""
        for key in STATE_DICT_KEYS:
            if isinstance(obj.get(key), dict):
                sd, fmt = obj[key], key
                break
        if fmt == "state_dict" and "name" in obj:
            fmt = "paper"
    if not fmt:
        keys = ", ".join(sorted(map(str, obj))[:8])
        raise LandscapeError(f"not a checkpoint: {path} has neither a state_dict nor tensors "
                             f"(expected a dict of tensors, or one under "
                             f"{', '.join(STATE_DICT_KEYS)}; keys: {keys})")
    if not _is_state_dict(sd):
        raise LandscapeError(f"corrupt checkpoint: {path}: its state_dict does not hold tensors")
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    if not allow_nonfinite:
        check_finite(sd, str(path))
    return CheckpointFile(path, str(sha), obj, sd, fmt)


def _paper_model_name(name: str) -> str | None:
    n = name.lower()
    n = re.sub(r"_(cifar(10|100)|imagenet)(_.*)?$", "", n)
    return PAPER_MODELS.get(n)


def load(path: str | Path | CheckpointFile, model: str | None = None,
         model_kwargs: dict[str, Any] | None = None,
         device: str | torch.device = "cpu",
         bare_kwargs: dict[str, Any] | None = None) -> tuple[nn.Module, CheckpointInfo]:
    """Rebuild the model a checkpoint describes and load its weights (strict).

    ``path``: a file, or one already read (:func:`read_checkpoint`). ``model`` names the
    architecture for a state dict without a recorded model (bare, or under one of
    :data:`STATE_DICT_KEYS`), and may override the paper's name; ``model_kwargs`` (e.g.
    ``num_classes``) complete or override the recorded constructor args. ``bare_kwargs`` (the
    dataset's classes, channels and image size, from ``--data``) are the constructor args of
    such a model, which records none. The model is returned in eval mode on ``device``.
    """
    f = path if isinstance(path, CheckpointFile) else read_checkpoint(path)
    obj, sd, where = f.obj, f.state_dict, f.path
    if f.format == FORMAT:
        name = model or obj.get("model")
        kwargs = dict(obj.get("model_kwargs") or {})
        kwargs.update(model_kwargs or {})
        norm = obj.get("normalization") or {}
        info = CheckpointInfo(str(where), f.sha256, FORMAT, name, kwargs, obj.get("dataset"),
                              norm.get("mean"), norm.get("std"), obj.get("seed"), obj.get("epoch"),
                              dict(obj.get("metrics") or {}), dict(obj.get("extra") or {}))
    elif f.format == "paper":
        pname = str(obj.get("name", ""))
        name = model or _paper_model_name(pname)
        if name is None:
            raise LandscapeError(f"{where}: unknown model name {pname!r} in checkpoint; "
                                 f"pass --model (one of {', '.join(models.names())})")
        dataset = "cifar100" if "cifar100" in pname.lower() or not pname else None
        kwargs = {"num_classes": 100, "in_chans": 3, "img_size": 32}
        kwargs.update(model_kwargs or {})
        info = CheckpointInfo(str(where), f.sha256, "paper", name, kwargs, dataset or "cifar100",
                              extra={"paper_name": pname})
    else:  # a state dict that records no model: bare or under a training script's key
        if model is None:
            shape = "a bare state_dict" if f.format == "state_dict" else \
                f"a state dict under {f.format!r} without a model name"
            raise LandscapeError(f"{where} is {shape}; pass --model NAME "
                                 f"(one of {', '.join(models.names())})")
        info = CheckpointInfo(str(where), f.sha256, "state_dict", model,
                              {**(bare_kwargs or {}), **(model_kwargs or {})})
    if info.model not in models.names():
        raise LandscapeError(f"{where}: unknown model {info.model!r}; known models: "
                             f"{', '.join(models.names())}")
    net = models.create(info.model, **info.model_kwargs)
    info.model_kwargs = dict(net.model_config["kwargs"])
    try:
        load_state_dict_checked(net, sd, where=str(where))
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
    """:func:`check_finite` on the state dict of a checkpoint file (any supported format)."""
    read_checkpoint(path, allow_nonfinite=False)


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
