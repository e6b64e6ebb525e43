"""``landscape analyze``: every analysis on one or more checkpoints, side by side, as one report.

For each checkpoint (same direction seeds, probe seeds and images for all of them) it runs the
Hessian spectrum and curvature, the loss surface, Fourier, variance, noise robustness, CKA and
lesion analyses with a budget preset, writes the raw results under ``OUT/raw/<label>-<sha>/``,
the figures under ``OUT/figures/<section>/``, then ``summary.json`` and ``report.html``.

Re-running with the same settings reuses finished raw results (each is keyed by the checkpoint's
SHA-256 and the settings that define it); ``force=True`` recomputes. The report and summary are
deleted at the start of a run and written only at its end, so a failed run never leaves a report
that claims success.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import landscape_models as models
import numpy as np

from ..errors import LandscapeError
from ..loading import checkpoint as ckpt
from ..loading.checkpoint_info import checkpoint_labels
from ..store.provenance import output_dir, read_cache_json, read_json, run_metadata, write_json
from ..store.resume import ResultCache
from ..summary import ModelSummary, Summary
from ..summary_fields import plain

# The settings live in a light module so that `landscape analyze --help` needs no torch.
from .config import ANALYSES, AnalyzeConfig, make_config  # noqa: E402
from .steps import RUNNERS, _say, joint_figures  # noqa: E402
from .summarize import summarize  # noqa: E402


def family(arch: str, block_kinds: Sequence[str]) -> str:
    """"cnn", "vit" or "hybrid" from the block kinds (MSA and Conv blocks: hybrid)."""
    has_msa, has_conv = "msa" in block_kinds, "conv" in block_kinds
    if has_msa and has_conv:
        return "hybrid"
    if has_msa:
        return "vit"
    return "cnn"


def _taken_labels(raw: Path) -> dict[str, set[str]]:
    """Labels already used in the raw-results folder ``raw`` (folders
    ``<label>-<sha256[:10]>``) and their owners' SHA-256 prefixes."""
    taken: dict[str, set[str]] = {}
    for d in raw.iterdir() if raw.is_dir() else []:
        lab, _, sha = d.name.rpartition("-")
        if d.is_dir() and lab and len(sha) == 10 and all(c in "0123456789abcdef" for c in sha):
            taken.setdefault(lab, set()).add(sha)
    return taken


def _is_seconds(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)


def _timing_summary(timing: dict[str, dict[str, Any]], wall: float) -> dict[str, Any]:
    """Compute time of the results (summed over the runs that computed them), this run's wall
    time, and how many results were reused from the cache."""
    entries = [t for per in timing.values() for t in per.values()]
    known = [t["seconds"] for t in entries if _is_seconds(t["seconds"])]
    return {"compute_s": float(sum(known)), "wall_time_s": float(wall),
            "n_results": len(entries), "n_reused": sum(bool(t["reused"]) for t in entries),
            "n_unknown": len(entries) - len(known), "per_model": timing}


def _rel(paths: Sequence[Path], out: Path) -> list[str]:
    return [str(Path(p).relative_to(out)) for p in paths if str(p).endswith(".png")]


#: Analyses whose heavy part is sharded over torchrun ranks (every rank takes part); the others
#: run on the writer (rank 0) alone, while the other ranks wait.
COLLECTIVE = ("hessian", "surface")


@dataclasses.dataclass
class _Inputs:
    """What every model of one run shares: the loaded models, the dataset name and the image
    subsets (the same images for every model)."""

    loaded: list[tuple[Any, Any]]
    data_name: str
    sets: dict[str, Any]
    eval_set: Any
    train: Any = None  # the whole training split (None when no analysis loads it)
    test: Any = None  # the whole test split
    device: Any = None


def _subset(data: Any, n: int, seed: int, device: Any) -> Any:
    """The seeded, class-stratified subset the commands' ``--samples``/``--seed`` draw
    (``load_dataset(subset=n, seed=seed)``), so both paths see the same images."""
    from ..data import stratified_subset
    return stratified_subset(data, n, seed).to(device)


def _draw_sets(inputs: _Inputs, cfg: AnalyzeConfig) -> _Inputs:
    """``inputs`` with the image subsets of ``cfg`` (drawn again after the quick budget's
    adaptation changed how many images an analysis takes)."""
    test, train, device = inputs.test, inputs.train, inputs.device
    sets: dict[str, Any] = {"feat": _subset(test, cfg.samples, cfg.seed, device),
                            "lesion": _subset(test, cfg.lesion_samples, cfg.seed, device),
                            "surface": None, "hessian": None}
    if train is not None:
        from ..runners import hessian_pool
        from .steps import curvature_settings, spectrum_settings
        sets["surface"] = _subset(train, cfg.surface_samples, cfg.seed, device)  # as the command
        sets["hessian"] = hessian_pool(train, spectrum_settings(cfg), curvature_settings(cfg),
                                       cfg.seed).to(device)  # as `landscape hessian`
    return dataclasses.replace(inputs, sets=sets,
                               eval_set=_subset(test, cfg.eval_samples, cfg.seed, device))


def _load_inputs(cards: Sequence[Any], cfg: AnalyzeConfig, todo: Sequence[str],
                 progress: bool, download: bool = False,
                 files: Sequence[Any] | None = None) -> _Inputs:
    """Load and validate every checkpoint (one
    :class:`~landscape.loading.model_cards.ModelCard` each) and the data before anything is
    computed. Block lists and stages come from the first batch of the loaded test images (image
    folders included), so they match what is analysed."""
    from ..data import load_dataset
    from ..device import resolve_device
    from ..loading.model_cards import assign_card_blocks, load_card_weights

    device = resolve_device(cfg.device)
    files = list(files) if files is not None else [None] * len(cards)
    loaded = [load_card_weights(card, device, cfg.data, f)
              for card, f in zip(cards, files, strict=True)]
    datasets = {(cfg.data or info.dataset) for _, info in loaded}
    if None in datasets:
        raise LandscapeError(f"{loaded[0][1].path} does not record its dataset; pass --data")
    if len(datasets) > 1:
        raise LandscapeError(f"checkpoints were trained on different datasets "
                             f"({', '.join(sorted(datasets))}); pass --data to analyze them on one")
    data_name = datasets.pop()
    first = loaded[0][1]
    norm: Any = True
    if first.mean is not None and first.std is not None:
        norm = (tuple(first.mean), tuple(first.std))
    test = load_dataset(data_name, "test", root=cfg.data_root, normalize=norm, progress=progress,
                        download=download)
    example = test.images[:2].to(device)  # the probe batch: stages from the data itself
    log = (lambda t: print(t, file=sys.stderr)) if progress else None
    loaded = [assign_card_blocks(net, info, card, example, log)
              for (net, info), card in zip(loaded, cards, strict=True)]
    for _net, info in loaded:
        ckpt.check_compatible(info, test)
    # Training images only for the analyses that use them (Hessian, surface).
    train = (load_dataset(data_name, "train", root=cfg.data_root, normalize=norm, progress=progress,
                          download=download)
             if {"hessian", "surface"} & set(todo) else None)

    return _draw_sets(_Inputs(loaded, data_name, {}, None, train, test, device), cfg)


def _training_fields(net: Any, info: Any, inputs: _Inputs, cfg: AnalyzeConfig,
                     cache: ResultCache) -> dict[str, Any]:
    """What the training claims read from a model entry: the checkpoint's recorded ``recipe``,
    its ``epochs`` and ``data_fraction`` (1.0 unless the recipe says otherwise), and the NLL and
    accuracy on ``eval_samples`` of the model's own training images (its seeded stratified
    subset when it was trained on one, as ``landscape.data.load_dataset(subset=, seed=)`` drew
    it; no augmentation, eval mode), computed once and cached."""
    from ..data.loading import subset_indices
    from ..train import evaluate
    recipe = dict((getattr(info, "extra", None) or {}).get("recipe") or {})
    fraction = float(recipe.get("data_fraction", 1.0))
    out: dict[str, Any] = {"recipe": recipe or None, "epochs": recipe.get("epochs"),
                           "data_fraction": fraction}
    train = inputs.train
    if train is None:
        return out
    idx = np.arange(len(train))
    if fraction < 1.0:
        idx = subset_indices(np.asarray(train.labels), fraction, int(info.seed or 0),
                             train.num_classes)
    n = min(len(idx), cfg.eval_samples or len(idx))
    pick = np.sort(np.random.default_rng(cfg.seed + 3).permutation(idx)[:n])

    def evaluate_to(p: Path) -> Any:
        own = dataclasses.replace(train, images=train.images[pick], labels=train.labels[pick],
                                  indices=pick, seed=cfg.seed + 3)
        write_json(p, evaluate(net, own.to(next(net.parameters()).device), cfg.batch_size))
        return read_json(p)

    ev, _ = cache.get("train_eval.json", {"n": n, "seed": cfg.seed, "fraction": fraction,
                                          "subset_seed": info.seed, "data": inputs.data_name},
                      evaluate_to, read_json)
    out.update(train_nll=ev["loss"], train_acc=ev["acc"], train_eval_samples=n)
    return out


def _analyze_model(i: int, net: Any, info: Any, label: str, inputs: _Inputs, cfg: AnalyzeConfig,
                   todo: Sequence[str], raw_root: Path, fig_dir: Path, out: Path, force: bool,
                   progress: bool, results: dict[str, dict[str, Any]],
                   figs: dict[str, list[str]]) -> tuple[ModelSummary | None, dict[str, Any],
                                                        bool]:
    """Every analysis of one model: (its model entry (writer only), timings, computed?).
    Collective analyses run on every rank; the rest on the writer alone."""
    from .. import distributed as D
    from ..train import evaluate

    writer, n = D.is_writer(), len(inputs.loaded)
    tag = f"[model {i + 1} of {n}: {label}]"
    _say(progress and writer, f"model {i + 1} of {n}: {label} ({info.path})")
    cache = ResultCache(raw_root / f"{label}-{info.sha256[:10]}", force, info.sha256,
                        log=(lambda t: _say(progress, f"{tag} {t}")), writer=writer)
    times_path = cache.folder / "timings.json"
    times = read_cache_json(times_path, {}, "timings cache") if writer else {}
    entry = None
    if writer:
        bl = models.blocks(net) if hasattr(net, "block_list") else []

        def evaluate_to(p: Path) -> Any:
            write_json(p, evaluate(net, inputs.eval_set, cfg.batch_size))
            return read_json(p)

        ev, _ = cache.get("eval.json", {"n": len(inputs.eval_set), "seed": cfg.seed,
                                        "data": inputs.data_name}, evaluate_to, read_json)
        entry = {"label": label, "checkpoint": str(info.path), "sha256": info.sha256,
                 "arch": info.model, "seed": info.seed,
                 "family": info.extra.get("family") or family(info.model, [b.kind for b in bl]),
                 "params": sum(p.numel() for p in net.parameters()),
                 "dataset": inputs.data_name, "test_acc": ev["acc"], "test_nll": ev["loss"],
                 "eval_samples": len(inputs.eval_set)}
        _say(progress, f"{tag} test acc {ev['acc']:.4f}, NLL {ev['loss']:.4f} "
                       f"({len(inputs.eval_set)} images)")
        entry = ModelSummary.from_json(plain(
            {**entry, **_training_fields(net, info, inputs, cfg, cache)}), f"models[{i}]")
    base_key = {"data": inputs.data_name, "seed": cfg.seed, "subset": "stratified"}
    timing: dict[str, Any] = {}
    computed = False
    only = info.extra.get("only")  # a model card's own analyses
    for analysis in todo:
        if (not writer and analysis not in COLLECTIVE) or (only is not None
                                                           and analysis not in only):
            continue
        t0 = time.perf_counter()
        _say(progress and writer, f"{tag} {analysis} ...")
        res, reused, files = RUNNERS[analysis](
            net=net, label=label, cfg=cfg, cache=cache, key=base_key, info=info, sets=inputs.sets,
            fig_dir=fig_dir, progress=progress and writer, tag=tag)
        computed = computed or not reused
        if not writer:
            continue
        results[analysis][label] = res
        for section, paths in files.items():
            figs.setdefault(section, []).extend(_rel(paths, out))
        dt = time.perf_counter() - t0
        if not reused:
            times[analysis] = round(dt, 2)
            write_json(times_path, times)
        timing[analysis] = {"seconds": times.get(analysis), "reused": bool(reused)}
        was = (f"reused (computed in {times[analysis]:.1f} s by an earlier run)"
               if reused and _is_seconds(times.get(analysis)) else
               "reused" if reused else "computed")
        _say(progress, f"{tag} {analysis}: {was} ({dt:.1f} s)")
    return entry, timing, computed


def _finish(models: Sequence[ModelSummary], settings: dict[str, Any],
            results: dict[str, dict[str, Any]], labels: list[str], figs: dict[str, list[str]],
            cfg: AnalyzeConfig, todo: Sequence[str], out: Path, fig_dir: Path,
            timing: dict[str, Any], t_start: float, progress: bool) -> Summary:
    """The figures comparing models, the typed summary (one entry per analysis and model), the
    claims, ``config.json``, ``report.html`` and ``summary.json`` (written last)."""
    _say(progress, f"figures comparing {len(labels)} model(s) ...")
    for section, paths in joint_figures(results, labels, fig_dir).items():
        figs.setdefault(section, []).extend(_rel(paths, out))
    sections = {analysis: {lab: summarize(analysis, r, cfg)
                           for lab, r in results[analysis].items()} for analysis in todo}
    wall = time.perf_counter() - t_start
    meta = run_metadata()
    summary = Summary(models=tuple(models), settings=plain(settings), sections=sections,
                      figures=plain(figs), timing=plain(_timing_summary(timing, wall)),
                      versions=plain(meta["versions"]), created=meta["created"],
                      wall_time_s=wall)
    from ..claims import claims_to_json, evaluate_claims
    from ..reporting.report import format_summary_table, write_report
    claims = evaluate_claims(summary)
    summary = dataclasses.replace(summary, claims=plain(claims_to_json(claims)))
    shas = {m.label: m.sha256 for m in summary.models}
    write_json(out / "config.json", run_metadata(config=summary.settings, checkpoints=shas))
    write_report(out, summary, claims)
    summary.write(out / "summary.json")
    if progress:
        print(format_summary_table(summary, claims))
        print(f"report: {out / 'report.html'} ({wall:.0f} s)")
    return summary


def _cost_before_work(inputs: _Inputs, labels: Sequence[str], cfg: AnalyzeConfig,
                      todo: Sequence[str], budget: str, say: bool, adapt: bool = True
                      ) -> tuple[AnalyzeConfig, dict[str, list[Any]]]:
    """Time a probe on every model, print the estimate per model and analysis, and under the
    quick budget shrink the work for all models alike when the most expensive
    model would exceed :data:`~landscape.analyze.cost.QUICK_TARGET_S` (settings that differ
    from the preset were set by the user and are kept). Under torchrun the writer decides."""
    from .. import distributed as D
    from . import cost as C
    decided: Any = None
    if D.is_writer():
        pool = inputs.sets.get("hessian") or inputs.sets["feat"]
        costs, probes = [], {}
        for net, _info in inputs.loaded:
            n_res = sum(b.branch is not None for b in models.blocks(net)) \
                if hasattr(net, "block_list") else 0
            shape = (type(net).__name__, tuple(tuple(q.shape) for q in net.parameters()))
            if shape not in probes:  # one probe per architecture (seeds share their costs)
                probes[shape] = C.probe(net, pool.images, pool.labels)
            p = probes[shape]
            costs.append(lambda c, p=p, n_res=n_res: C.estimate(
                p, c, todo, len(pool), len(inputs.sets["feat"]), len(inputs.sets["lesion"]),
                n_res, n_eval=len(inputs.eval_set)))
        new, adapted = cfg, {}
        if budget == "quick" and adapt:
            preset = make_config("quick")
            fixed = {a for a in C.ADAPTABLE if getattr(cfg, a) != getattr(preset, a)}
            new, adapted = C.adapt_quick(cfg, lambda c: max(
                (f(c) for f in costs), key=C.total_seconds), fixed, target=C.QUICK_TARGET_S)
        if say:
            _say(True, "cost estimate (timed probe; this machine, now):")
            for lab, f in zip(labels, costs, strict=True):
                _say(True, "  " + C.format_estimate(lab, f(new)))
            if adapted:
                _say(True, "  quick budget reduced for the largest model, every model alike: "
                     + ", ".join(f"{k} {v[0]} -> {v[1]}" for k, v in adapted.items()))
        decided = (new, adapted)
    return D.broadcast_object(decided)


def analyze(checkpoints: Sequence[str | Path], out_dir: str | Path,
            config: AnalyzeConfig | None = None, only: Sequence[str] | None = None,
            force: bool = False, model: str | None = None, progress: bool = True,
            budget: str = "custom", raw_dir: str | Path | None = None,
            model_def: str | None = None, blocks: str | None = None,
            code_root: str | Path | None = None, *, cards: Sequence[Any] = (),
            model_kwargs: dict[str, Any] | None = None,
            input_shape: tuple[int, int, int] | None = None,
            download: bool = False, allow_nonfinite: bool = True,
            adapt: bool = True) -> Summary | None:
    """Run the analyses on every checkpoint and write ``summary.json`` and ``report.html``.

    ``checkpoints`` are loaded with ``model``/``model_def`` (called with ``model_kwargs``)/
    ``code_root``/``blocks``; ``cards`` (:func:`~landscape.loading.model_cards.read_cards`)
    follow them, each loaded its own way, so one run compares any mix of models.
    ``input_shape`` (C, H, W) is checked against the data's images; ``download`` fetches
    missing CIFAR archives. Each checkpoint is read once
    (:func:`~landscape.loading.checkpoint.read_checkpoint`), before any output; unless
    ``allow_nonfinite``, one holding NaN/inf values is refused then.

    Under ``budget="quick"`` the cost estimate may reduce the settings for every model alike
    (:func:`landscape.analyze.cost.adapt_quick`); ``adapt=False`` keeps them.

    ``raw_dir`` (default ``OUT/raw``) holds the raw results; runs that share it reuse each
    other's finished results (the paper-figure targets reuse the demo's). Returns the typed
    :class:`~landscape.summary.Summary` that ``summary.json`` holds (also a read-only mapping
    over that JSON object: ``summary["models"]``).
    Bad input (missing checkpoint, wrong classes, a file as output folder) raises
    ``LandscapeError`` before anything is computed.

    Under torchrun (``torchrun --nproc-per-node N -m landscape analyze ...``) every rank calls
    this: the Hessian spectrum's mini-batches, the curvature operator's batches and every
    surface plane's grid points are sharded over the ranks (:mod:`landscape.distributed`);
    the feature analyses run on rank 0, which alone writes the raw results, figures, summary
    and report. Rank 0 returns the summary, the others None.
    """
    from .. import distributed as D

    D.init_from_env()
    writer = D.is_writer()
    cfg = config or make_config("quick")
    todo = list(only) if only else list(ANALYSES)
    bad = [a for a in todo if a not in ANALYSES]
    if bad:
        raise LandscapeError(f"unknown analysis {', '.join(bad)}; "
                             f"choose from {', '.join(ANALYSES)}")
    if not checkpoints and not cards:
        raise LandscapeError("no checkpoint given (pass CKPT files or --models CARDS.toml)")
    if "surface" in todo:
        from .steps import surface_plan
        surface_plan(cfg.surface_plan)  # a bad pinned plan: before anything is computed
    from ..loading.model_cards import card_from_options, checkpoint_paths
    all_cards = [card_from_options(p, model=model, model_def=model_def, code_root=code_root,
                                   kwargs=model_kwargs, blocks=blocks, input_shape=input_shape)
                 for p in checkpoints] + list(cards)
    checkpoints = checkpoint_paths(all_cards)
    files = [ckpt.read_checkpoint(p, allow_nonfinite=allow_nonfinite) for p in checkpoints]
    out = output_dir(out_dir) if writer else Path(out_dir)
    if writer:
        for stale in ("report.html", "summary.json"):
            if (out / stale).exists():
                (out / stale).unlink()
    t_start = time.perf_counter()
    inputs = _load_inputs(all_cards, cfg, todo, progress and writer, download, files)
    del files  # the models hold the weights now
    raw_root = Path(raw_dir or out / "raw")
    labels = checkpoint_labels(checkpoints, [info.sha256 for _, info in inputs.loaded],
                               [info.extra.get("name") for _, info in inputs.loaded],
                               _taken_labels(raw_root))
    labels = D.broadcast_object(labels)  # the writer's view of the raw folder names them
    figs: dict[str, list[str]] = {}
    settings: dict[str, Any] = {"budget": budget, "only": todo, "dataset": inputs.data_name,
                                **cfg.to_dict(), "ranks": D.world_size()}
    model_entries: list[ModelSummary] = []
    cfg, adapted = _cost_before_work(inputs, labels, cfg, todo, budget, progress and writer,
                                     adapt)
    settings.update(cfg.to_dict())
    if adapted:
        settings["adapted"] = adapted
        inputs = _draw_sets(inputs, cfg)  # fewer images where the adaptation says so
    results: dict[str, dict[str, Any]] = {a: {} for a in todo}
    timing: dict[str, dict[str, Any]] = {}
    per_model: list[float] = []
    _say(progress and writer, f"analyze: {len(inputs.loaded)} checkpoint(s) × {len(todo)} "
                              f"analyses ({', '.join(todo)}) into {out}"
                              + (f" on {D.world_size()} ranks" if D.world_size() > 1 else ""))
    for i, ((net, info), label) in enumerate(zip(inputs.loaded, labels, strict=True)):
        t_model = time.perf_counter()
        entry, timing[label], computed = _analyze_model(
            i, net, info, label, inputs, cfg, todo, raw_root, out / "figures", out, force,
            progress, results, figs)
        if entry is not None:
            model_entries.append(entry)
        if computed:
            per_model.append(time.perf_counter() - t_model)
        left = len(inputs.loaded) - i - 1
        if left and per_model:
            _say(progress and writer, f"model {i + 1} of {len(inputs.loaded)} done; about "
                                      f"{left * float(np.mean(per_model)) / 60:.0f} min left "
                                      f"for {left} more (if none is cached)")
    summary = None
    if writer:
        summary = _finish(model_entries, settings, results, labels, figs, cfg, todo, out,
                          out / "figures", timing, t_start, progress)
    D.barrier()
    return summary
