"""``landscape train``: the registry model trained on a dataset into a run folder (the loop:
:func:`landscape.train.train`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..train import TrainConfig


@dataclass(frozen=True)
class TrainJob:
    """What ``landscape train`` trains, on what and where: the registry model, the dataset (its
    root, ``subset``: a count or fraction of the training images, ``test_samples``: 0 = all),
    the checkpoint to start from (``init``), the device, the output folder and ``quiet``."""

    model: str
    data: str
    out: str
    data_root: str | None = None
    download: bool = False
    subset: float | int | None = None
    test_samples: int = 0
    init: str | None = None
    allow_nonfinite: bool = False
    device: str = "auto"
    quiet: bool = False


def train_run(config: TrainConfig, job: TrainJob) -> tuple[dict[str, float], list[str], Path]:
    """Train ``job.model`` with ``config`` (the recipe; its seed also draws the subset): load
    the data, create the registry model (from ``job.init`` when given), train it into
    ``job.out``. Returns (final metrics, tensors re-initialized from ``init``, output folder)."""
    import landscape_models as models
    import torch

    from ..data import load_dataset
    from ..device import resolve_device
    from ..errors import LandscapeError
    from ..store.provenance import output_dir
    from ..train import init_from, train
    from .inputs import InputOptions, check_checkpoints

    if job.init:
        check_checkpoints(InputOptions(allow_nonfinite=job.allow_nonfinite), [job.init])
    device = resolve_device(job.device)
    seed = config.seed
    tr = load_dataset(job.data, "train", root=job.data_root, subset=job.subset, seed=seed,
                      download=job.download)
    te = load_dataset(job.data, "test", root=job.data_root, subset=job.test_samples or None,
                      seed=seed, download=job.download)
    torch.manual_seed(seed)
    try:
        model = models.create(job.model, num_classes=tr.num_classes,
                              in_chans=tr.images.shape[1], img_size=tr.images.shape[-1])
    except KeyError as e:
        raise LandscapeError(str(e).strip("'\"")) from None
    reinit = init_from(model, job.init) if job.init else []
    out = output_dir(job.out)
    model.to(device)
    info: dict[str, Any] = {"init": job.init, "subset": job.subset}
    metrics = train(model, tr.to(device), te.to(device), config, out, progress=not job.quiet,
                    info=info)
    return metrics, reinit, out
