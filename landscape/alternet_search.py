"""The AlterNet build-up rule of "How Do Vision Transformers Work?" (Sec. 4.1) as a search.

The paper designs AlterNet by editing a baseline CNN step by step:

1. replace Conv blocks with MSA blocks *alternately* from the *end* of the network;
2. if an added MSA block does not improve predictive performance, revert it and replace a
   Conv block at the end of an *earlier* stage instead;
3. MSA blocks in late stages get more heads and a larger hidden dimension.

A model is described by a **pattern**: one string per stage, in forward order, of unit types
``"C"`` (conv unit) and ``"M"`` (MSA unit), e.g. ``("CC", "CC", "CM")``; ``pattern_str`` gives the
``"CC,CC,CM"`` form that ``models.create("alternet_tiny", pattern=...)`` accepts.

Candidate order and stopping rule (what :func:`run_search` does, exactly)
-------------------------------------------------------------------------
* **Slots** of a stage with ``n`` units are its alternate positions counted from the end:
  ``n-1, n-3, n-5, ...`` (rule 1); with ``keep_first`` (default) position 0 is never a slot,
  because the first unit of a stage carries the stride / width change.
* Candidate 0 is the baseline pattern (all ``C``); it is always accepted.
* A **stage pointer** ``s`` starts at the last stage. The next candidate is the current accepted
  pattern with the first slot of stage ``s`` (in slot order) that is still ``C`` turned into ``M``.
  If stage ``s`` has no such slot, ``s`` moves to ``s - 1`` (repeatedly).
* The candidate is trained for every seed in ``seeds``; its score is the **mean** over seeds of
  the metric (validation NLL, lower is better, or accuracy, higher is better).
* **Accept** if the score beats the current accepted pattern's score by more than ``min_delta``
  (strictly); the candidate becomes the current pattern, ``s`` stays (rule 1 continues in the
  same stage). **Reject** otherwise: the pattern is reverted (the current pattern is unchanged)
  and ``s`` moves to ``s - 1`` (rule 2: try the end of an earlier stage).
* **Stop** when ``s < min_stage`` (no stage left that may take another MSA), after ``patience``
  consecutive rejections (``None`` = no limit), or when ``max_candidates`` candidates (baseline
  included) have been evaluated. The final pattern is the last accepted one.

Rule 3 is carried by :func:`heads_per_stage` and ``SearchConfig.model_kwargs`` (heads grow by
``growth`` per stage; MSA width = stage width, which grows in the model), which reach the trainer
with every candidate.

Log and resume
--------------
Every finished training (pattern, seed) and every decided candidate is written to a JSON log
(atomically: temp file + rename) right away. Started again with the same settings, the search
replays the procedure and takes finished trainings from the log instead of training them again,
so the final log equals the one an uninterrupted run writes. Other settings raise
``LandscapeError``.

The trainer is injected: ``trainer(pattern, model_kwargs, seed) -> {"acc", "nll", "params", ...}``
so the logic is testable without training; :class:`RegistryTrainer` is the real one.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from .errors import LandscapeError
from .provenance import read_json, run_metadata, write_json

SCHEMA = "landscape.alternet_search/1"
METRICS = ("nll", "acc")

Pattern = tuple[str, ...]
Trainer = Callable[[Pattern, dict, int], dict]

# Baseline CNN name -> (AlterNet family in the registry, default units per stage).
FAMILIES: dict[str, tuple[str, tuple[int, ...]]] = {
    "resnet_tiny": ("alternet_tiny", (2, 2, 2)),
    "alternet_tiny": ("alternet_tiny", (2, 2, 2)),
    "resnet50": ("alternet50", (3, 4, 6, 4)),
    "alternet50": ("alternet50", (3, 4, 6, 4)),
}


# ---------------------------------------------------------------------------------------------
# Patterns


def parse_pattern(pattern: Union[str, Sequence[Union[str, Sequence[str]]]]) -> Pattern:
    """A pattern as a tuple of per-stage strings of 'C'/'M' (accepts ``"CC,CM"`` or lists)."""
    if isinstance(pattern, str):
        parts = [p for p in pattern.replace("|", ",").replace("-", ",").replace(" ", ",").split(",")
                 if p]
    else:
        parts = ["".join(p) if not isinstance(p, str) else p for p in pattern]
    stages = tuple(p.strip().upper() for p in parts)
    if not stages or any(not s for s in stages):
        raise LandscapeError(f"pattern {pattern!r} has an empty stage")
    bad = set("".join(stages)) - {"C", "M"}
    if bad:
        raise LandscapeError(f"pattern {pattern!r}: unit types must be C or M, got {sorted(bad)}")
    return stages


def pattern_str(pattern: Pattern) -> str:
    """``("CC", "CM")`` -> ``"CC,CM"`` (the form models.create(..., pattern=) takes)."""
    return ",".join(pattern)


def baseline_pattern(depths: Sequence[int]) -> Pattern:
    """The all-conv pattern with ``depths[s]`` units in stage ``s``."""
    if not depths or any(int(d) < 1 for d in depths):
        raise LandscapeError(f"every stage needs at least one unit, got depths {list(depths)}")
    return tuple("C" * int(d) for d in depths)


def stage_slots(depth: int, keep_first: bool = True) -> list[int]:
    """Positions a stage of ``depth`` units may turn into MSA, in order: depth-1, depth-3, ..."""
    lo = 1 if keep_first else 0
    return [i for i in range(depth - 1, lo - 1, -2)]


def heads_per_stage(num_stages: int, base: int = 1, growth: int = 2) -> tuple[int, ...]:
    """Rule 3: MSA heads per stage, ``base * growth**s`` (e.g. 1, 2, 4)."""
    if base < 1 or growth < 1:
        raise LandscapeError(f"heads need base >= 1 and growth >= 1, got {base}, {growth}")
    return tuple(int(base * growth ** s) for s in range(num_stages))


def with_msa(pattern: Pattern, stage: int, slot: int) -> Pattern:
    """``pattern`` with unit ``slot`` of ``stage`` set to 'M'."""
    s = pattern[stage]
    return pattern[:stage] + (s[:slot] + "M" + s[slot + 1:],) + pattern[stage + 1:]


def next_slot(pattern: Pattern, stage: int, keep_first: bool = True,
              min_stage: int = 0) -> Optional[tuple[int, int]]:
    """(stage, slot) of the next candidate: the first free slot of ``stage``, else of earlier
    stages down to ``min_stage``; None when no stage can take another MSA."""
    for s in range(stage, min_stage - 1, -1):
        for i in stage_slots(len(pattern[s]), keep_first):
            if pattern[s][i] == "C":
                return s, i
    return None


# ---------------------------------------------------------------------------------------------
# Search


@dataclass
class SearchConfig:
    """Settings of the build-up search (all recorded in the log)."""

    metric: str = "nll"
    seeds: tuple[int, ...] = (0,)
    min_delta: float = 0.0
    keep_first: bool = True
    min_stage: int = 0
    patience: Optional[int] = None
    max_candidates: Optional[int] = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self, num_stages: int) -> None:
        if self.metric not in METRICS:
            raise LandscapeError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if not self.seeds:
            raise LandscapeError("give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise LandscapeError(f"seeds repeat: {list(self.seeds)}")
        if not 0 <= self.min_stage < num_stages:
            raise LandscapeError(f"min_stage {self.min_stage} outside 0..{num_stages - 1}")
        if self.patience is not None and self.patience < 1:
            raise LandscapeError(f"patience must be >= 1, got {self.patience}")
        if self.max_candidates is not None and self.max_candidates < 1:
            raise LandscapeError(f"max_candidates must be >= 1, got {self.max_candidates}")
        if self.min_delta < 0:
            raise LandscapeError(f"min_delta must be >= 0, got {self.min_delta}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["seeds"] = [int(s) for s in self.seeds]
        return d


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample std (0 for one value), min and max."""
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max())}


def better(new: float, old: float, metric: str, min_delta: float = 0.0) -> bool:
    """True when score ``new`` improves on ``old`` by more than ``min_delta``."""
    if not math.isfinite(new):
        return False
    if not math.isfinite(old):
        return True
    return (old - new > min_delta) if metric == "nll" else (new - old > min_delta)


@dataclass
class SearchResult:
    """The outcome: final pattern, its model kwargs, and every candidate (log records)."""

    final_pattern: Pattern
    model_kwargs: dict[str, Any]
    candidates: list[dict[str, Any]]
    stop_reason: str
    log_path: Optional[Path]

    @property
    def sequence(self) -> list[str]:
        """Accepted patterns in order (the build-up sequence)."""
        return [c["pattern"] for c in self.candidates if c["accepted"]]


def _plain(v: Any) -> Any:
    """Numbers as plain Python floats/ints (JSON), anything else unchanged."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    return v


def _run_key(pattern: Pattern, seed: int) -> str:
    return f"{pattern_str(pattern)}@{int(seed)}"


class _Log:
    """The JSON log: header, finished trainings (``runs``) and decided candidates."""

    def __init__(self, path: Optional[Path], header: dict[str, Any]) -> None:
        self.path = path
        self.doc: dict[str, Any] = {"schema": SCHEMA, **header, "runs": [], "candidates": [],
                                    "status": "running", "final": None}
        self.old_runs: list[dict[str, Any]] = []
        self.logged: set[str] = set()
        if path is not None and path.exists():
            old = read_json(path)
            if old.get("schema") != SCHEMA:
                raise LandscapeError(f"{path} is not an AlterNet search log")
            for key in ("baseline", "search", "trainer"):
                if old.get(key) != header.get(key):
                    raise LandscapeError(
                        f"{path} holds a search with other settings ({key} differs: "
                        f"{old.get(key)!r} vs {header.get(key)!r}); use another --out or delete it")
            self.doc["meta"] = old.get("meta", header.get("meta"))
            self.old_runs = list(old.get("runs", []))
        self.cache = {r["key"]: r for r in self.old_runs}
        self.resumed = len(self.cache)

    def add_run(self, rec: dict[str, Any]) -> None:
        """Log a finished training (once per key, in the order the search needs them)."""
        if rec["key"] not in self.logged:
            self.logged.add(rec["key"])
            self.doc["runs"].append(rec)
            self.save()

    def save(self) -> None:
        """Write the log; trainings of an earlier run not replayed yet are kept at the end."""
        if self.path is None:
            return
        pending = [r for r in self.old_runs if r["key"] not in self.logged]
        write_json(self.path, {**self.doc, "runs": self.doc["runs"] + pending})


def run_search(trainer: Trainer, baseline: Union[Pattern, str], config: SearchConfig,
               log_path: Union[str, Path, None] = None, *, trainer_info: Optional[dict] = None,
               clock: Callable[[], float] = time.perf_counter,
               progress: bool = False) -> SearchResult:
    """Run the AlterNet build-up from ``baseline`` (see the module docstring for the rules).

    ``trainer(pattern, model_kwargs, seed)`` trains one model and returns at least ``acc`` and
    ``nll`` on validation data (``params``, ``time_s`` and other numbers are logged if given; the
    wall time is measured with ``clock`` when ``time_s`` is missing). ``trainer_info`` (the
    training recipe) goes into the log header and must match on resume.
    """
    base = parse_pattern(baseline)
    config.validate(len(base))
    if any(u != "C" for u in "".join(base)):
        raise LandscapeError(f"the baseline must be all conv units, got {pattern_str(base)}")
    path = Path(log_path) if log_path is not None else None
    # through JSON once, so a resumed log compares equal (tuples become lists, ...)
    header = {"meta": run_metadata(), "baseline": pattern_str(base),
              "search": json.loads(json.dumps(config.to_dict(), default=str)),
              "trainer": json.loads(json.dumps(trainer_info or {}, default=str))}
    log = _Log(path, header)
    log.save()
    if log.resumed and progress:
        print(f"resuming {path}: {log.resumed} finished trainings reused", file=sys.stderr)
    decided: list[dict[str, Any]] = log.doc["candidates"]

    def evaluate(pattern: Pattern) -> dict[str, Any]:
        kwargs = {**config.model_kwargs, "pattern": pattern_str(pattern)}
        runs = []
        for seed in config.seeds:
            key = _run_key(pattern, seed)
            rec = log.cache.get(key)
            if rec is None:
                if progress:
                    print(f"training {pattern_str(pattern)} seed {seed}", file=sys.stderr)
                t0 = clock()
                out = dict(trainer(pattern, dict(kwargs), int(seed)))
                dt = clock() - t0
                for k in ("acc", "nll"):
                    if k not in out:
                        raise LandscapeError(f"trainer returned no {k!r} (got {sorted(out)})")
                rec = {"key": key, "pattern": pattern_str(pattern), "seed": int(seed),
                       **{k: _plain(v) for k, v in out.items()}}
                rec.setdefault("time_s", float(dt))
                log.cache[key] = rec
            log.add_run(rec)
            runs.append(rec)
        acc = [float(r["acc"]) for r in runs]
        nll = [float(r["nll"]) for r in runs]
        sa, sn = spread(acc), spread(nll)
        return {"pattern": pattern_str(pattern), "model_kwargs": kwargs,
                "params": runs[0].get("params"), "seeds": [int(s) for s in config.seeds],
                "acc": acc, "nll": nll, "acc_mean": sa["mean"], "nll_mean": sn["mean"],
                "acc_spread": sa, "nll_spread": sn,
                "time_s": float(sum(float(r.get("time_s", 0.0)) for r in runs))}

    def score(c: dict[str, Any]) -> float:
        return c["nll_mean"] if config.metric == "nll" else c["acc_mean"]

    def record(c: dict[str, Any], **extra: Any) -> dict[str, Any]:
        c = {"index": len(decided), **c, "score": score(c), **extra}
        decided.append(c)
        log.save()
        if progress:
            print(f"candidate {c['index']} {c['pattern']}: acc={c['acc_mean']:.4f} "
                  f"nll={c['nll_mean']:.4f} -> {'accepted' if c['accepted'] else 'rejected'} "
                  f"({c['reason']})", file=sys.stderr)
        return c

    current = record(evaluate(base), stage=None, slot=None, parent=None, rule="baseline",
                     best_before=None, accepted=True, reason="baseline")
    current_pattern = base
    stage = len(base) - 1
    rejections = 0
    stop = ""
    while True:
        if config.max_candidates is not None and len(decided) >= config.max_candidates:
            stop = f"max_candidates ({config.max_candidates}) reached"
            break
        nxt = next_slot(current_pattern, stage, config.keep_first, config.min_stage)
        if nxt is None:
            stop = "no stage can take another MSA block"
            break
        if rejections:
            rule = "2: last MSA reverted; end of an earlier stage"
        elif nxt[0] < stage:
            rule = "1: stage full; continue in an earlier stage"
        else:
            rule = "1: next alternate Conv from the end"
        stage = nxt[0]
        cand = with_msa(current_pattern, *nxt)
        res = evaluate(cand)
        before = current["score"]
        ok = better(score(res), before, config.metric, config.min_delta)
        c = record(res, stage=nxt[0], slot=nxt[1], parent=current["index"], rule=rule,
                   best_before=before, accepted=ok,
                   reason=(f"{config.metric} {score(res):.6g} "
                           f"{'improves on' if ok else 'does not improve on'} {before:.6g}"))
        if ok:
            current, current_pattern, rejections = c, cand, 0
        else:
            rejections += 1
            stage -= 1
            if config.patience is not None and rejections >= config.patience:
                stop = f"{rejections} consecutive rejections (patience {config.patience})"
                break
            if stage < config.min_stage:
                stop = "no earlier stage left to try"
                break
    final_kwargs = {**config.model_kwargs, "pattern": pattern_str(current_pattern)}
    log.doc["status"] = "finished"
    log.doc["final"] = {"pattern": pattern_str(current_pattern), "candidate": current["index"],
                        "model_kwargs": final_kwargs, "stop_reason": stop,
                        "sequence": [c["pattern"] for c in decided if c["accepted"]],
                        "acc_mean": current["acc_mean"], "nll_mean": current["nll_mean"]}
    log.save()
    return SearchResult(current_pattern, final_kwargs, list(decided), stop, path)


# ---------------------------------------------------------------------------------------------
# The real trainer: registry model + landscape.train


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
                 runs_dir: Union[str, Path], device: Any = "cpu", progress: bool = False) -> None:
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
        import torch

        import models

        from .train import evaluate, train

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
    from .train import evaluate

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


# ---------------------------------------------------------------------------------------------
# End to end: data -> search -> held-out comparison (what the CLI and the experiment call)


@dataclass
class BuildupSettings:
    """Everything ``landscape alternet-search`` needs (recorded in ``config.json``)."""

    baseline: str = "resnet_tiny"
    depths: Optional[tuple[int, ...]] = None
    data: str = "fashion-mnist"
    data_root: Optional[str] = None
    subset: Union[None, int, float] = 3000
    val_samples: int = 1000
    test_samples: int = 0
    data_seed: int = 0
    metric: str = "nll"
    seeds: tuple[int, ...] = (0, 1)
    min_delta: float = 0.0
    keep_first: bool = True
    min_stage: int = 0
    patience: Optional[int] = None
    max_candidates: Optional[int] = None
    heads_base: int = 1
    heads_growth: int = 2
    dim_head: Optional[int] = None
    compare: tuple[str, ...] = ("vit_tiny",)
    train: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"


def run_buildup(settings: BuildupSettings, out_dir: Union[str, Path],
                runs_dir: Union[str, Path, None] = None,
                progress: bool = True) -> tuple[SearchResult, Optional[dict[str, Any]]]:
    """Load the data, run the build-up search (``out_dir/search.json``) and compare the final
    AlterNet with the all-conv baseline and the ``compare`` models on the test split
    (``out_dir/comparison.json``). Validation data are held out of the training subset; the
    test split is never used for a decision."""
    from .data import load_dataset
    from .device import resolve_device
    from .train import TrainConfig

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
