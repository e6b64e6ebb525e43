"""Fig. 4: Hessian max-eigenvalue spectra of a tiny ViT and a tiny ResNet vs training-set size.

Both models are trained on 2%, 10%, 30% and 100% of Fashion-MNIST's training split (stratified,
seeded subsets) with the *same budget of optimizer steps*: for a subset of n images and batch B,
an epoch has ceil(n / B) steps, and the run gets ``epochs = max(1, round(steps / ceil(n / B)))``
epochs (so small subsets see many epochs, the full set about ``steps * B / n``); the actual
number of steps is recorded. The default budget, 470 steps of 128, is one epoch of the full 60k
split: 2% -> 47 epochs (470 steps), 10% -> 10 (470), 30% -> 3 (423), 100% -> 1 (469). The recipe
is otherwise the project's (AdamW, warmup, cosine, crop + flip). At the end of training (the
same stage for every subset) the max-eigenvalue spectrum is computed: the top-k (largest
magnitude) Hessian eigenvalues of the NLL on each of ``n_batches`` mini-batches of the run's own
training subset (seeded, no augmentation, eval mode). The summary per run: share of negative
eigenvalues and mean positive eigenvalue.

Writes ``OUT/data_size.json`` (raw eigenvalues, summaries, config, versions; updated after every
run, finished runs are reused on a re-run), ``OUT/spectra.{png,pdf}`` and ``OUT/table.md``.

    python experiments/data_size_study.py --out figures/fig4            # demo scale
    python experiments/data_size_study.py --quick --out /tmp/fig4_quick  # smoke run

The helpers here (budgeted training, spectrum, summary) are shared with locality_study.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import landscape_models as models
import torch

from landscape.alternet_search import model_size, spread
from landscape.curvature.spectrum import SpectrumConfig, max_eigenvalue_spectrum
from landscape.data import load_dataset
from landscape.device import resolve_device
from landscape.store.provenance import read_json, run_metadata, write_json
from landscape.train import TrainConfig, evaluate, train

FRACTIONS = (0.02, 0.10, 0.30, 1.0)
QUICK = dict(steps=6, batch_size=32, test_samples=200, n_batches=2, hessian_batch=8, k=2,
             max_iter=20, tol=1e-2)


def epochs_for_budget(n_train: int, batch_size: int, steps: int) -> int:
    """Epochs that give about ``steps`` optimizer steps on ``n_train`` images."""
    per_epoch = math.ceil(n_train / batch_size)
    return max(1, int(round(steps / per_epoch)))


@dataclasses.dataclass
class StudySettings:
    """Training and spectrum settings shared by the data-size and locality studies."""

    steps: int = 470  # one epoch of the full 60k split at batch 128, so 100% also gets ~the budget
    batch_size: int = 128
    lr: float = 1e-3
    test_samples: int = 2000
    seeds: tuple[int, ...] = (0,)
    data_seed: int = 0
    n_batches: int = 5
    hessian_batch: int = 16
    k: int = 5
    tol: float = 1e-2
    max_iter: int | None = 40
    wd: float = 0.0


def train_and_analyze(name: str, kwargs: dict[str, Any], train_data: Any, test_data: Any,
                      st: StudySettings, seed: int, run_dir: Path,
                      progress: bool) -> dict[str, Any]:
    """Train ``name`` with the fixed step budget, test it, and compute its spectrum."""
    epochs = epochs_for_budget(len(train_data), st.batch_size, st.steps)
    cfg = TrainConfig(epochs=epochs, batch_size=st.batch_size, lr=st.lr, seed=seed, save_every=0,
                      warmup_epochs=min(1.0, epochs / 5))
    torch.manual_seed(seed)
    model = models.create(name, num_classes=train_data.num_classes,
                          in_chans=int(train_data.images.shape[1]),
                          img_size=int(train_data.images.shape[-1]), **kwargs)
    model.to(train_data.images.device)
    t0 = time.perf_counter()
    train(model, train_data, None, cfg, run_dir, progress=progress,
          info={"purpose": "study"})
    train_s = time.perf_counter() - t0
    ev = evaluate(model, test_data)
    t0 = time.perf_counter()
    cfg_s = SpectrumConfig(k=st.k, which="LM", batch_size=st.hessian_batch, n_batches=st.n_batches,
                           seed=seed, wd=st.wd, l2="half", augment=False, tol=st.tol,
                           max_iter=st.max_iter, mode="double_backward")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unconverged batches are recorded (residuals) instead
        res = max_eigenvalue_spectrum(model, train_data.images, train_data.labels, cfg_s,
                                      out=run_dir / "spectrum.h5", progress=progress)
    spec = {"eigenvalues": res.eigenvalues.tolist(), "residuals": res.residuals.tolist(),
            "n_products": res.n_products.tolist(), "summary": res.summary(),
            "config": res.config, "file": str(run_dir / "spectrum.h5")}
    spec_s = time.perf_counter() - t0
    steps = math.ceil(len(train_data) / st.batch_size) * epochs
    return {"model": name, "kwargs": kwargs, "params": model_size(model), "seed": seed,
            "train_size": len(train_data), "epochs": epochs, "steps": steps,
            "test_acc": ev["acc"], "test_err": 1 - ev["acc"], "test_nll": ev["loss"],
            "train_s": train_s, "spectrum_s": spec_s, "spectrum": spec, "run_dir": str(run_dir)}


def summarize(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean/std over seeds per (model, setting)."""
    keys = list(dict.fromkeys((r["model_label"], r["setting_label"]) for r in runs))
    out = []
    for m, s in keys:
        rs = [r for r in runs if r["model_label"] == m and r["setting_label"] == s]
        row: dict[str, Any] = {"model_label": m, "setting_label": s, "n_seeds": len(rs),
                               "train_size": rs[0]["train_size"], "epochs": rs[0]["epochs"],
                               "steps": rs[0]["steps"]}
        for key in ("test_acc", "test_err", "test_nll"):
            row[key] = spread([r[key] for r in rs])
        for key in ("negative_share", "mean_positive"):
            row[key] = spread([r["spectrum"]["summary"][key] for r in rs])
        out.append(row)
    return out


def run_study(jobs: Sequence[dict[str, Any]], data: Callable[[dict], tuple[Any, Any]],
              st: StudySettings, out: Path, filename: str, title: str, runs_dir: Path,
              progress: bool, extra: dict[str, Any], device: Any = "cpu") -> dict[str, Any]:
    """Run every job x seed (finished ones are reused from the JSON file), write it after each."""
    path = out / filename
    header = {"title": title, "settings": dataclasses.asdict(st), **extra}
    doc = run_metadata(**header, runs=[], summary=[])
    if path.exists():
        old = read_json(path)
        if old.get("settings") == header["settings"] and \
                all(old.get(k) == v for k, v in extra.items()):
            doc["runs"] = old.get("runs", [])
        elif progress:
            print(f"{path} holds other settings; starting over", file=sys.stderr)
    done = {(r["model_label"], r["setting_label"], r["seed"]) for r in doc["runs"]}
    for job in jobs:
        for seed in st.seeds:
            key = (job["model_label"], job["setting_label"], seed)
            if key in done:
                continue
            if progress:
                print(f"{job['model_label']} {job['setting_label']} seed {seed}", file=sys.stderr)
            tr, te = data(job)
            tr, te = tr.to(device), te.to(device)
            rd = runs_dir / job["model_label"] / job["setting_label"].replace("%", "pct") \
                / f"seed{seed}"
            r = train_and_analyze(job["model"], job.get("kwargs", {}), tr, te, st, seed, rd,
                                  progress)
            r.update(model_label=job["model_label"], setting_label=job["setting_label"],
                     setting=job["setting"])
            doc["runs"].append(r)
            doc["summary"] = summarize(doc["runs"])
            write_json(path, doc)
            if progress:
                s = r["spectrum"]["summary"]
                print(f"  acc {r['test_acc']:.4f} nll {r['test_nll']:.4f} "
                      f"neg {s['negative_share']:.3f} mean+ {s['mean_positive']:.4g} "
                      f"({r['steps']} steps, {r['train_s']:.0f}+{r['spectrum_s']:.0f} s)",
                      file=sys.stderr)
    doc["summary"] = summarize(doc["runs"])
    write_json(path, doc)
    return doc


def table(doc: dict[str, Any], setting_name: str) -> str:
    """Markdown table of the summary (mean +- std over seeds)."""
    lines = [f"| model | {setting_name} | train images | epochs | steps | test err (%) | test NLL "
             "| negative share (%) | mean positive eig. |",
             "|---|---|---|---|---|---|---|---|---|"]

    def f(d: dict[str, float], scale: float = 1.0, fmt: str = ".3f") -> str:
        return f"{d['mean'] * scale:{fmt}} ± {d['std'] * scale:{fmt}}"

    for r in doc["summary"]:
        lines.append(f"| {r['model_label']} | {r['setting_label']} | {r['train_size']} | "
                     f"{r['epochs']} | {r['steps']} | {f(r['test_err'], 100, '.2f')} | "
                     f"{f(r['test_nll'])} | {f(r['negative_share'], 100, '.1f')} | "
                     f"{f(r['mean_positive'], 1, '.4g')} |")
    return "\n".join(lines) + "\n"


def add_common_args(p: argparse.ArgumentParser, st: StudySettings) -> None:
    p.add_argument("--out", required=True, help="output folder (JSON, figures, table)")
    p.add_argument("--runs-dir", default=None, help="checkpoints folder (default OUT/runs)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    p.add_argument("--steps", type=int, default=st.steps, help="optimizer steps per run")
    p.add_argument("--batch-size", type=int, default=st.batch_size, help="training batch size")
    p.add_argument("--lr", type=float, default=st.lr, help="peak learning rate")
    p.add_argument("--test-samples", type=int, default=st.test_samples,
                   help="test images for error/NLL (0 = all)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(st.seeds), help="training seeds")
    p.add_argument("--n-batches", type=int, default=st.n_batches,
                   help="mini-batches of the max-eigenvalue spectrum")
    p.add_argument("--hessian-batch", type=int, default=st.hessian_batch,
                   help="mini-batch size of the spectrum")
    p.add_argument("--k", type=int, default=st.k, help="top eigenvalues per mini-batch")
    p.add_argument("--tol", type=float, default=st.tol,
                   help="relative Ritz residual at which Lanczos stops")
    p.add_argument("--max-iter", type=int, default=st.max_iter,
                   help="most Hessian-vector products per mini-batch")
    p.add_argument("--wd", type=float, default=st.wd,
                   help="L2 term wd * 0.5 * ||theta||^2 added to the NLL of the spectrum")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--data", default="fashion-mnist",
                   help="dataset (paper scale: cifar10/cifar100 with --models vit_ti resnet50)")
    p.add_argument("--data-root", default=None, help="dataset folder (default: standard location)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, auto, ...")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def settings_from(args: argparse.Namespace, quick: dict[str, Any]) -> StudySettings:
    st = StudySettings(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                       test_samples=args.test_samples, seeds=tuple(args.seeds),
                       n_batches=args.n_batches, hessian_batch=args.hessian_batch, k=args.k,
                       tol=args.tol, max_iter=args.max_iter, wd=args.wd)
    if args.quick:
        st = dataclasses.replace(st, **quick)
    if args.threads:
        torch.set_num_threads(args.threads)
    return st


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_args(p, StudySettings())
    p.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS),
                   help="training-set fractions")
    p.add_argument("--models", nargs="+", default=["vit_tiny", "resnet_tiny"],
                   help="registry models")
    args = p.parse_args(argv)
    st = settings_from(args, QUICK)
    fractions = [0.004, 0.01] if args.quick else list(args.fractions)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_dir = Path(args.runs_dir or (out / "runs" if args.quick else "checkpoints/data_size"))
    test = load_dataset(args.data, "test", root=args.data_root, subset=st.test_samples or None,
                        seed=st.data_seed)
    cache: dict[float, Any] = {}

    def data(job: dict) -> tuple[Any, Any]:
        f = job["setting"]
        if f not in cache:
            cache.clear()  # one training subset in memory at a time
            cache[f] = load_dataset(args.data, "train", root=args.data_root,
                                    subset=(None if f >= 1 else f), seed=st.data_seed)
        return cache[f], test

    # model by model (all fractions of the first model first), so a partial run is usable
    jobs = [{"model": m, "model_label": m, "setting": f, "setting_label": f"{100 * f:g}%"}
            for m in args.models for f in fractions]
    doc = run_study(jobs, data, st, out, "data_size.json",
                    f"Hessian max-eigenvalue spectra vs training-set size (fixed budget of "
                    f"{st.steps} steps)", runs_dir, not args.quiet,
                    {"dataset": args.data, "fractions": fractions, "models": args.models,
                     "quick": bool(args.quick)}, resolve_device(args.device))
    from landscape.reporting.plots.alternet import plot_spectra
    plot_spectra(out / "data_size.json", out / "spectra")
    (out / "table.md").write_text(table(doc, "train fraction"))
    print(table(doc, "train fraction"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
