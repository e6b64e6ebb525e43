"""Block outputs streamed over image batches in eval mode: the one feature-streaming path of the
Fourier, variance, CKA, robustness and lesion analyses, and the one evaluation loop.

``data`` is an ``ImageData`` (``.images``, ``.labels``), a tensor of images, or a tuple
``(images, labels)``; a run takes its first ``samples`` images (all when ``samples`` is falsy).
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..device import eval_mode, model_device
from ..errors import LandscapeError

Batch = tuple[torch.Tensor, torch.Tensor | None]


def image_batches(data: Any, samples: int | None, batch_size: int
                  ) -> tuple[Iterator[Batch], int]:
    """(iterator of (x, y) batches over the first ``samples`` images, number of images)."""
    if hasattr(data, "images"):
        images, labels = data.images, getattr(data, "labels", None)
    elif isinstance(data, (tuple, list)):
        images, labels = data[0], (data[1] if len(data) > 1 else None)
    elif isinstance(data, torch.Tensor):
        images, labels = data, None
    else:
        raise LandscapeError(f"data must be ImageData, a tensor or (images, labels), "
                             f"not {type(data)}")
    n = len(images) if not samples else min(int(samples), len(images))
    if samples and samples > len(images):
        warnings.warn(f"asked for {samples} images but the data has {len(images)}; using all",
                      stacklevel=2)
    if n == 0:
        raise LandscapeError("no images to analyze")
    if batch_size < 1:
        raise LandscapeError("batch_size must be >= 1")

    def it() -> Iterator[Batch]:
        for s in range(0, n, batch_size):
            e = min(n, s + batch_size)
            yield images[s:e], (labels[s:e] if labels is not None else None)
    return it(), n


def stream_block_outputs(model: nn.Module, data: Any, block_list: Sequence | None = None,
                         samples: int | None = None, batch_size: int = 128,
                         device: torch.device | None = None, progress: bool = False,
                         desc: str = "features"
                         ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, dict]]:
    """Yield ``(x, y, outputs)`` per batch, ``outputs[block.name]`` the block's feature map (the
    residual stream after it, read at the block's taps); refused blocks are absent, with a warning.

    The model runs in eval mode without gradients; its train/eval flags are restored after.
    Only one batch of outputs is alive at a time.
    """
    import landscape_models as models
    from tqdm import tqdm

    bl = models.blocks(model) if block_list is None else list(block_list)
    for b in bl:
        if b.refused is not None:
            warnings.warn(f"block {b.name} ({b.kind}) is not read: {b.refused}", stacklevel=2)
    dev = model_device(model, device)
    it, n = image_batches(data, samples, batch_size)
    with eval_mode(model), torch.no_grad(), models.capture(bl) as out, \
            tqdm(total=n, desc=desc, unit="img", disable=not progress, file=None) as bar:
        for x, y in it:
            x = x.to(dev)
            out.clear()
            model(x)
            yield x, (y.to(dev) if y is not None else None), dict(out)
            bar.update(len(x))


def evaluate_images(model: nn.Module, data: Any, samples: int | None = None,
                    batch_size: int = 256, device: torch.device | None = None
                    ) -> tuple[float, float, int, list[int]]:
    """(accuracy, mean cross-entropy, number of images, 0/1 correctness per image) of ``model``
    in eval mode without gradients (the one evaluation loop; ``landscape.train.evaluate`` and
    the lesion study call it)."""
    dev = model_device(model, device)
    it, n = image_batches(data, samples, batch_size)
    correct, loss, hits = 0.0, 0.0, []
    with eval_mode(model), torch.no_grad():
        for x, y in it:
            if y is None:
                raise LandscapeError("evaluation needs labels")
            x, y = x.to(dev), y.to(dev)
            logits = model(x)
            hit = logits.argmax(1) == y
            hits.extend(int(v) for v in hit.tolist())
            correct += float(hit.sum())
            loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
    return correct / n, loss / n, n, hits


def count_images(data: Any, samples: int | None) -> int:
    """How many images a run over ``data`` with ``samples`` uses."""
    return image_batches(data, samples, 1)[1]


def normalized_depths(n_blocks: int) -> np.ndarray:
    """Depth of [input, block_0, ..., block_{L-1}]: ``j / L`` (input 0, last block 1)."""
    return np.arange(n_blocks + 1, dtype=np.float64) / max(n_blocks, 1)


def kept_rows(block_list: Sequence, skipped: set[str], include_input: bool
              ) -> list[tuple[str, str, int, float]]:
    """(name, kind, stage, normalized depth) of the input (when ``include_input``) and of every
    block not in ``skipped``, in forward order: the rows of a per-block result."""
    depths = normalized_depths(len(block_list))
    rows = [("input", "input", 0, 0.0)] if include_input else []
    return rows + [(b.name, b.kind, int(b.stage), float(depths[i + 1]))
                   for i, b in enumerate(block_list) if b.name not in skipped]


def data_description(data: Any) -> dict[str, Any]:
    """Name/split/seed of an ``ImageData`` (empty for plain tensors)."""
    if not hasattr(data, "images"):
        return {}
    return {k: getattr(data, k) for k in ("name", "split", "seed")
            if isinstance(getattr(data, k, None), (str, int, float))}
