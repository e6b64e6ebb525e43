"""The real trainer (registry model + ``landscape.train``) and the held-out comparison."""
from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LandscapeError
from .patterns import Pattern, pattern_str
from .search import spread


def split_validation(data: Any, n_val: int, seed: int) -> tuple[Any, Any]:
    """(train, validation) ImageData: a seeded random ``n_val`` images held out of ``data``."""
    import torch

    n = len(data)
    if not 0 < n_val < n:
        raise LandscapeError(f"validation size must be in 1..{n - 1}, got {n_val}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    base = data.indices if data.indices is not None else np.arange(n, dtype=np.int64)

    def part(idx: Any) -> Any:
        return dataclasses.replace(data, images=data.images[idx], labels=data.labels[idx],
                                   indices=np.asarray(base)[idx.numpy()])

    return part(perm[n_val:]), part(perm[:n_val])


def model_size(model: Any) -> int:
    """Number of parameters."""
    return int(sum(p.numel() for p in model.parameters()))


class RegistryTrainer:
    """Trains ``models.create(family, pattern=..., **kwargs)`` with :func:`landscape.train.train`.

    Every (model, seed) gets its own folder ``runs_dir/<name>/<pattern>/seed<k>`` holding the
    checkpoints, so training itself resumes at the last finished epoch and a finished run is
    just reloaded. Returns validation ``acc``/``nll`` (the search metric), ``params`` and the
    training wall time ``train_s``.
    """

    def __init__(self, family: str, train_data: Any, val_data: Any, config: Any,
                 runs_dir: str | Path, device: Any = "cpu", progress: bool = False) -> None:
        self.family = family
        self.train_data = train_data
        self.val_data = val_data
        self.config = config
        self.runs_dir = Path(runs_dir)
        self.device = device
        self.progress = progress

    def info(self) -> dict[str, Any]:
        """The recipe, as recorded in the search log."""
        cfg = dataclasses.asdict(self.config)
        cfg.pop("seed", None)
        return {"family": self.family, "train_config": cfg, "dataset": self.train_data.name,
                "train_size": len(self.train_data), "val_size": len(self.val_data),
                "data_seed": int(self.train_data.seed)}

    def fit(self, name: str, kwargs: dict[str, Any], seed: int, tag: str) -> tuple[Any, dict]:
        """Train (or reload) one model; returns (model in eval mode, info dict)."""
        import landscape_models as models
        import torch

        from ..train import evaluate, train

        d = self.train_data
        torch.manual_seed(int(seed))
        try:
            model = models.create(name, num_classes=d.num_classes, in_chans=int(d.images.shape[1]),
                                  img_size=int(d.images.shape[-1]), **kwargs)
        except (KeyError, ValueError, TypeError) as e:
            raise LandscapeError(f"cannot build {name} with {kwargs}: {e}") from None
        model.to(self.device)
        cfg = dataclasses.replace(self.config, seed=int(seed))
        out = self.runs_dir / name / tag / f"seed{int(seed)}"
        t0 = time.perf_counter()
        train(model, d, None, cfg, out, progress=self.progress,
              info={"purpose": "alternet-search"})
        dt = time.perf_counter() - t0
        ev = evaluate(model, self.val_data, cfg.eval_batch_size)
        model.eval()
        return model, {"acc": ev["acc"], "nll": ev["loss"], "params": model_size(model),
                       "train_s": dt, "run_dir": str(out)}

    def __call__(self, pattern: Pattern, model_kwargs: dict, seed: int) -> dict:
        _, info = self.fit(self.family, model_kwargs, seed, pattern_str(pattern).replace(",", "-"))
        return info


def compare_models(trainer: RegistryTrainer, specs: dict[str, tuple[str, dict[str, Any]]],
                   test_data: Any, seeds: Sequence[int],
                   progress: bool = False) -> dict[str, Any]:
    """Held-out comparison: each ``label -> (registry name, kwargs)`` trained with the search's
    recipe for every seed (finished runs are reloaded), evaluated on ``test_data``.

    Returns ``{label: {"model", "kwargs", "params", "seeds", "test_acc", "test_nll",
    "test_acc_spread", "test_nll_spread", "val_acc", "val_nll"}}``.
    """
    from ..train import evaluate

    out: dict[str, Any] = {}
    for label, (name, kwargs) in specs.items():
        accs, nlls, vaccs, vnlls, params = [], [], [], [], None
        tag = str(kwargs.get("pattern", "default")).replace(",", "-")
        for seed in seeds:
            if progress:
                print(f"comparison: {label} seed {seed}", file=sys.stderr)
            model, info = trainer.fit(name, kwargs, seed, tag)
            ev = evaluate(model, test_data, trainer.config.eval_batch_size)
            accs.append(ev["acc"])
            nlls.append(ev["loss"])
            vaccs.append(info["acc"])
            vnlls.append(info["nll"])
            params = info["params"]
        out[label] = {"model": name, "kwargs": kwargs, "params": params,
                      "seeds": [int(s) for s in seeds], "test_acc": accs, "test_nll": nlls,
                      "test_acc_spread": spread(accs), "test_nll_spread": spread(nlls),
                      "val_acc": vaccs, "val_nll": vnlls}
    return out
