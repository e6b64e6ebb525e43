"""Training on preloaded tensors: AdamW + linear warmup + cosine (the paper's recipe, scaled).

Checkpoints every ``save_every`` epochs (``epoch_NNN.pt``, kept for trajectory analyses) and after
every epoch to ``last.pt`` with the optimizer state, so an interrupted run started again with the
same command resumes at the last finished epoch. The final model is ``model.pt``.
"""
from __future__ import annotations

import hashlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import landscape_models as models
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .errors import LandscapeError, NonFiniteLossError
from .loading import checkpoint
from .store.provenance import (
    output_dir,
    read_json,
    read_resume_file,
    resume_guard,
    run_metadata,
    write_json,
)
from .store.resume import check, differences, identity


@dataclass
class TrainConfig:
    """Every setting of a training run (saved as ``config.json`` beside the checkpoints)."""

    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "adamw"  # "adamw" or "sgd" (momentum 0.9, the paper's CNN recipe)
    lr: float = 1e-3
    weight_decay: float = 5e-2
    warmup_epochs: float = 1.0
    min_lr: float = 1e-5
    label_smoothing: float = 0.0
    augment: bool = True
    pad: int = 4
    flip: bool = True
    mixup: float = 0.0
    cutmix: float = 0.0
    seed: int = 0
    save_every: int = 1
    eval_batch_size: int = 512
    freeze: bool = False


def evaluate(model: nn.Module, data: Any, batch_size: int = 512) -> dict[str, float]:
    """Mean NLL (cross-entropy) and accuracy of ``model`` (eval mode) on ``data``
    (:func:`landscape.features.streaming.evaluate_images`, the one evaluation loop)."""
    from .features.streaming import evaluate_images
    acc, loss, _, _ = evaluate_images(model, data, None, batch_size)
    return {"loss": loss, "acc": acc}


def head_parameters(model: nn.Module) -> list[str]:
    """Names of the classifier head's parameters (from the block list's ``head`` block)."""
    try:
        heads = [b.module for b in models.blocks(model) if b.kind == "head"]
    except TypeError:
        heads = []
    ids = {id(p) for h in heads for p in h.parameters()}
    names = [n for n, p in model.named_parameters() if id(p) in ids]
    if not names:  # any nn.Module: the last Linear layer
        lin = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if lin:
            names = [f"{lin[-1]}.{n}" for n, _ in model.get_submodule(lin[-1]).named_parameters()]
    return names


def init_from(model: nn.Module, path: str | Path) -> list[str]:
    """Copy weights from a trained checkpoint into ``model`` for fine-tuning.

    Tensors whose shape differs (the classifier head when the number of classes changes, the
    stem or patch embedding when the number of input channels changes) and keys the checkpoint
    lacks keep the model's fresh initialization; their names are returned.
    """
    src, _ = checkpoint.load(path)
    sd_src = src.state_dict()
    own = model.state_dict()
    reinit = [k for k in own if k not in sd_src or sd_src[k].shape != own[k].shape]
    model.load_state_dict({k: (own[k] if k in reinit else sd_src[k]) for k in own}, strict=True)
    return reinit


def _data_identity(data: Any) -> dict[str, Any]:
    """What makes the training data: name, split, size, normalization and the subset's images
    (SHA-256 of the chosen indices; None for the whole split)."""
    idx = getattr(data, "indices", None)
    sha = None if idx is None else hashlib.sha256(
        np.ascontiguousarray(np.asarray(idx, dtype=np.int64)).tobytes()).hexdigest()
    return {"name": data.name, "split": getattr(data, "split", None), "size": len(data),
            "mean": list(data.mean), "std": list(data.std), "indices_sha256": sha}


def _settings(meta: dict[str, Any]) -> dict[str, Any]:
    """The settings of a run's ``config.json`` that a resume must match, flat."""
    flat = {k: v for k, v in (meta.get("config") or {}).items()}
    flat["model"] = meta.get("model")
    for k in ("init", "subset"):
        if k in meta:
            flat[k] = meta[k]
    for k, v in (meta.get("data") or {"name": meta.get("dataset"),
                                       "size": meta.get("train_size")}).items():
        flat[f"data {k}" if k != "size" else "train_size"] = v
    return flat


def _identity(meta: dict[str, Any]) -> dict[str, Any]:
    """The result-store identity of a run's ``config.json`` (older files: rebuilt from it)."""
    if isinstance(meta.get("identity"), dict):
        return meta["identity"]
    return {"settings": _settings(meta), "checkpoint_sha256": None,
            "versions": meta.get("versions")}


def _check_resume(out: Path, old_meta: dict[str, Any], meta: dict[str, Any]) -> None:
    """Refuse (one line naming what differs) to resume a run recorded with other settings."""
    old, new = _identity(old_meta), meta["identity"]
    diff = differences(old, new)
    if [d.split(":")[0] for d in diff] == ["epochs"]:
        raise LandscapeError(
            f"{out} holds a run of {old['settings']['epochs']} epochs and --epochs is "
            f"{new['settings']['epochs']}: the learning-rate schedule spans all epochs, so a "
            "longer run cannot continue this one; use another --out (or --init "
            + str(out / "model.pt") + " to train further)")
    check(out, "a training run", old, new, "resume with the same ones, or use another --out")


def _lr_at(step: int, total: int, warmup: int, lr: float, min_lr: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))


def train(model: nn.Module, train_data: Any, test_data: Any | None, config: TrainConfig,
          out_dir: str | Path, progress: bool = True,
          info: dict[str, Any] | None = None) -> dict[str, float]:
    """Train ``model`` on ``train_data`` (an ``ImageData`` on the model's device).

    Writes ``config.json``, ``last.pt`` after each epoch, ``epoch_NNN.pt`` every ``save_every``
    epochs, ``model.pt`` and ``metrics.json`` at the end. Resumes from ``last.pt`` when it
    exists with the same config. Raises ``NonFiniteLossError`` on a NaN/inf loss.
    """
    from .data import Augment, mix  # local: data is a sibling analysis input

    out = output_dir(out_dir)
    cfg = dict(config.__dict__)
    data_id = _data_identity(train_data)
    meta = run_metadata(config=cfg, model=model.model_config, dataset=train_data.name,
                        train_size=len(train_data), subset_seed=train_data.seed, data=data_id,
                        **(info or {}))
    meta["identity"] = identity(_settings(meta))
    cfg_path = out / "config.json"
    if cfg_path.exists() and (out / "last.pt").exists():
        old = read_resume_file(cfg_path, read_json, "training config (JSON)")
        if not isinstance(old, dict):
            raise LandscapeError(f"cannot resume from {cfg_path}: not a training config (a JSON "
                                 f"{type(old).__name__}, not an object); delete it or use "
                                 "another --out")
        _check_resume(out, old, meta)
    write_json(cfg_path, meta)

    torch.manual_seed(config.seed)
    if config.freeze:
        keep = set(head_parameters(model))
        for n, p in model.named_parameters():
            p.requires_grad_(n in keep)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() > 1]
    no_decay = [p for p in params if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=config.lr)
    elif config.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=config.lr, momentum=0.9)
    else:
        raise LandscapeError(f"unknown optimizer {config.optimizer!r}; use adamw or sgd")
    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)
    start_epoch = 0
    last = out / "last.pt"
    if last.exists():
        with resume_guard(last, "training state"):
            raw = checkpoint.read(last)
            checkpoint.load_state_dict_checked(model, raw["state_dict"], where=str(last))
            if "optimizer" in raw:
                opt.load_state_dict(raw["optimizer"])
            start_epoch = int(raw.get("epoch") or 0)
        if progress:
            print(f"resuming {out} at epoch {start_epoch}", file=sys.stderr)
    augment = (Augment(pad=config.pad, flip=config.flip, mean=train_data.mean, std=train_data.std)
               if config.augment else None)
    ckpt_meta = dict(dataset=train_data.name, mean=list(train_data.mean), std=list(train_data.std),
                     seed=config.seed)
    metrics: dict[str, float] = {}
    for epoch in range(start_epoch, config.epochs):
        model.train()
        gen = torch.Generator(device="cpu").manual_seed(config.seed * 1000 + epoch)
        batches = train_data.batches(config.batch_size, shuffle=True,
                                     seed=config.seed * 1000 + epoch)
        bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not progress, leave=False, file=sys.stderr)
        run_loss, run_n = 0.0, 0
        for i, (x, y) in enumerate(bar):
            step = epoch * steps_per_epoch + i
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, warmup, config.lr, config.min_lr)
            if augment is not None:
                x = augment(x, gen)
            target: torch.Tensor = y
            if config.mixup > 0 or config.cutmix > 0:
                x, target = mix(x, y, train_data.num_classes, config.mixup, config.cutmix, gen)
            loss = F.cross_entropy(model(x), target, label_smoothing=config.label_smoothing)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"training loss became {loss.item()} at epoch "
                                         f"{epoch + 1}, step {i + 1}; lower --lr (now {config.lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run_loss += loss.item() * len(y)
            run_n += len(y)
            if i % 20 == 0:
                bar.set_postfix(loss=f"{run_loss / run_n:.3f}")
        metrics = {"train_loss": run_loss / max(run_n, 1), "epoch": epoch + 1}
        if test_data is not None:
            ev = evaluate(model, test_data, config.eval_batch_size)
            metrics.update(test_loss=ev["loss"], test_acc=ev["acc"])
        if progress:
            print(f"epoch {epoch + 1}/{config.epochs} " +
                  " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "epoch"),
                  file=sys.stderr)
        if config.save_every and (epoch + 1) % config.save_every == 0:
            checkpoint.save(out / f"epoch_{epoch + 1:03d}.pt", model, epoch=epoch + 1,
                            metrics=metrics, **ckpt_meta)
        checkpoint.save(last, model, epoch=epoch + 1, metrics=metrics, optimizer=opt.state_dict(),
                        **ckpt_meta)
    if not metrics:  # already finished: report the saved metrics
        metrics = dict(checkpoint.read(last).get("metrics") or {})
    model.eval()
    checkpoint.save(out / "model.pt", model, epoch=config.epochs, metrics=metrics, **ckpt_meta)
    write_json(out / "metrics.json", metrics)
    return metrics
