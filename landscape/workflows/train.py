"""``landscape train``: the registry model trained on a dataset into a run folder (the loop:
:func:`landscape.train.train`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def train_run(options: Any) -> tuple[dict[str, float], list[str], Path]:
    """``landscape train`` with ``options`` (its argparse namespace): load the data, create the
    registry model (from ``options.init`` when given), train it into ``options.out``. Returns
    (final metrics, tensors re-initialized from ``init``, output folder)."""
    import landscape_models as models
    import torch

    from ..data import load_dataset
    from ..device import resolve_device
    from ..errors import LandscapeError
    from ..store.provenance import output_dir
    from ..train import TrainConfig, init_from, train

    o = options
    if o.init:
        from .inputs import check_checkpoints
        check_checkpoints(o, [o.init])
    device = resolve_device(o.device)
    tr = load_dataset(o.data, "train", root=o.data_root, subset=o.subset, seed=o.seed,
                      download=o.download)
    te = load_dataset(o.data, "test", root=o.data_root, subset=o.test_samples or None,
                      seed=o.seed, download=o.download)
    torch.manual_seed(o.seed)
    try:
        model = models.create(o.model, num_classes=tr.num_classes, in_chans=tr.images.shape[1],
                              img_size=tr.images.shape[-1])
    except KeyError as e:
        raise LandscapeError(str(e).strip("'\"")) from None
    reinit = init_from(model, o.init) if o.init else []
    out = output_dir(o.out)
    cfg = TrainConfig(epochs=o.epochs, batch_size=o.batch_size, lr=o.lr, optimizer=o.optimizer,
                      weight_decay=o.weight_decay, warmup_epochs=o.warmup_epochs,
                      label_smoothing=o.label_smoothing, augment=not o.no_augment,
                      flip=not o.no_flip, mixup=o.mixup, cutmix=o.cutmix, seed=o.seed,
                      save_every=o.save_every, freeze=o.freeze)
    model.to(device)
    metrics = train(model, tr.to(device), te.to(device), cfg, out, progress=not o.quiet,
                    info={"init": o.init, "subset": o.subset})
    return metrics, reinit, out

