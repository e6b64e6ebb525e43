"""End to end: data -> search -> held-out comparison (what the CLI and the experiment call)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LandscapeError
from ..store.provenance import run_metadata, write_json
from .patterns import baseline_pattern, heads_per_stage, pattern_str
from .search import SearchConfig, SearchResult, run_search
from .trainer import RegistryTrainer, compare_models, split_validation

# Baseline CNN name -> (AlterNet family in the registry, default units per stage).
FAMILIES: dict[str, tuple[str, tuple[int, ...]]] = {
    "resnet_tiny": ("alternet_tiny", (2, 2, 2)),
    "alternet_tiny": ("alternet_tiny", (2, 2, 2)),
    "resnet50": ("alternet50", (3, 4, 6, 4)),
    "alternet50": ("alternet50", (3, 4, 6, 4)),
}


@dataclass
class BuildupSettings:
    """Everything ``landscape alternet-search`` needs (recorded in ``config.json``)."""

    baseline: str = "resnet_tiny"
    depths: tuple[int, ...] | None = None
    data: str = "fashion-mnist"
    data_root: str | None = None
    subset: None | int | float = 3000
    val_samples: int = 1000
    test_samples: int = 0
    data_seed: int = 0
    metric: str = "nll"
    seeds: tuple[int, ...] = (0, 1)
    min_delta: float = 0.0
    keep_first: bool = True
    min_stage: int = 0
    patience: int | None = None
    max_candidates: int | None = None
    heads_base: int = 1
    heads_growth: int = 2
    dim_head: int | None = None
    compare: tuple[str, ...] = ("vit_tiny",)
    train: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"


def run_buildup(settings: BuildupSettings, out_dir: str | Path,
                runs_dir: str | Path | None = None,
                progress: bool = True) -> tuple[SearchResult, dict[str, Any] | None]:
    """Load the data, run the build-up search (``out_dir/search.json``) and compare the final
    AlterNet with the all-conv baseline and the ``compare`` models on the test split
    (``out_dir/comparison.json``). Validation data are held out of the training subset; the
    test split is never used for a decision."""
    from ..data import load_dataset
    from ..device import resolve_device
    from ..train import TrainConfig

    if settings.baseline not in FAMILIES:
        raise LandscapeError(f"no AlterNet family for baseline {settings.baseline!r}; known: "
                             f"{', '.join(sorted(FAMILIES))}")
    family, default_depths = FAMILIES[settings.baseline]
    depths = tuple(settings.depths or default_depths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = Path(runs_dir) if runs_dir is not None else out / "runs"
    device = resolve_device(settings.device)
    subset = settings.subset
    if subset is not None:
        subset = subset + settings.val_samples if subset > 1 else subset
    full = load_dataset(settings.data, "train", root=settings.data_root,
                        subset=int(subset) if subset is not None and subset > 1 else subset,
                        seed=settings.data_seed)
    tr, va = split_validation(full, settings.val_samples, settings.data_seed)
    te = load_dataset(settings.data, "test", root=settings.data_root,
                      subset=settings.test_samples or None, seed=settings.data_seed)
    try:
        cfg = TrainConfig(**{"save_every": 0, **settings.train})
    except TypeError as e:
        raise LandscapeError(f"bad training setting: {e}") from None
    trainer = RegistryTrainer(family, tr.to(device), va.to(device), cfg, runs, device, progress)
    heads = heads_per_stage(len(depths), settings.heads_base, settings.heads_growth)
    mk: dict[str, Any] = {"heads": list(heads)}
    if settings.dim_head:
        mk["dim_head"] = int(settings.dim_head)
    scfg = SearchConfig(metric=settings.metric, seeds=tuple(settings.seeds),
                        min_delta=settings.min_delta, keep_first=settings.keep_first,
                        min_stage=settings.min_stage, patience=settings.patience,
                        max_candidates=settings.max_candidates, model_kwargs=mk)
    write_json(out / "config.json", run_metadata(settings=dataclasses.asdict(settings),
                                                 family=family, depths=list(depths),
                                                 trainer=trainer.info(), runs_dir=str(runs)))
    result = run_search(trainer, baseline_pattern(depths), scfg, out / "search.json",
                        trainer_info=trainer.info(), progress=progress)
    comparison = None
    specs = {f"AlterNet ({pattern_str(result.final_pattern)})": (family, result.model_kwargs),
             f"baseline CNN ({pattern_str(baseline_pattern(depths))})":
                 (family, {**mk, "pattern": pattern_str(baseline_pattern(depths))})}
    for name in settings.compare:
        specs[name] = (name, {})
    if settings.compare is not None:
        cmp = compare_models(trainer, specs, te.to(device), settings.seeds, progress)
        comparison = run_metadata(test_size=len(te), seeds=list(settings.seeds),
                                  final_pattern=pattern_str(result.final_pattern),
                                  sequence=result.sequence, models=cmp)
        write_json(out / "comparison.json", comparison)
    return result, comparison


def buildup_run(settings: BuildupSettings, out_dir: str | Path,
                runs_dir: str | Path | None = None, progress: bool = True) -> list[str]:
    """``landscape alternet-search``: :func:`run_buildup` into the locked folder ``out_dir``,
    then its figures (``buildup``, ``comparison``); returns the lines that report it."""
    from ..reporting.plots.alternet import plot_buildup, plot_comparison
    from ..store.provenance import output_dir

    out = output_dir(out_dir)
    result, comparison = run_buildup(settings, out, runs_dir, progress=progress)
    plot_buildup(out / "search.json", out / "buildup")
    lines = ["build-up sequence: " + " -> ".join(result.sequence),
             f"final pattern: {','.join(result.final_pattern)} ({result.stop_reason})"]
    if comparison is not None:
        plot_comparison(out / "comparison.json", out / "comparison")
        for label, r in comparison["models"].items():
            a, n = r["test_acc_spread"], r["test_nll_spread"]
            lines.append(f"  {label}: test acc {a['mean']:.4f} +- {a['std']:.4f}, "
                         f"NLL {n['mean']:.4f} +- {n['std']:.4f} ({len(r['seeds'])} seeds)")
    return lines
