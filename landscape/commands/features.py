"""``landscape fourier|variance|robustness|cka|lesion``: feature-map analyses of checkpoints.

Each subcommand takes one or more checkpoints, writes one raw result per checkpoint into
``--out`` (``<analysis>_<label>.h5|json``, reused when the same settings ran before), a
``config.json``, and its figure(s) drawn from the raw files.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import LandscapeError
from .common import nonneg_float, positive_float, unit_float

ANALYSES = ("fourier", "variance", "robustness", "cka", "lesion")


def _common(p: argparse.ArgumentParser, samples: int, batch_size: int) -> None:
    from .common import add_checkpoint_args, add_data_args, add_out_arg
    add_checkpoint_args(p, many=True)
    add_data_args(p, samples=samples, batch_size=batch_size)
    add_out_arg(p, "runs/features")
    p.add_argument("--force", action="store_true",
                   help="recompute even if a result with the same settings exists in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "fourier",
        help="relative log amplitude of feature maps per block (MSA low-pass / Conv high-pass)",
        description="Mean over images and channels of log|FFT2| of every block output (tokens "
                    "reshaped to the grid, class token dropped); ΔlogA along the diagonal from "
                    "0 to π, and the value at π against normalized depth (Fig. 2a, 8).")
    _common(p, 1000, 128)
    p.add_argument("--eps", type=positive_float, default=1e-6, help="added to |FFT| before the log")
    p.add_argument("--no-input", action="store_true", help="leave out the input reference")
    p.set_defaults(func=run_fourier)

    p = sub.add_parser(
        "variance", help="feature-map variance per block against depth",
        description="Spatial variance of each block output per channel and image, averaged "
                    "(Fig. 9).")
    _common(p, 1000, 128)
    p.add_argument("--ddof", type=int, default=1, choices=[0, 1],
                   help="variance estimator: 1 = unbiased (torch default, as the paper), "
                        "0 = population")
    p.add_argument("--no-input", action="store_true", help="leave out the input reference")
    p.set_defaults(func=run_variance)

    p = sub.add_parser(
        "robustness",
        help="accuracy drop under band-limited noise against noise frequency",
        description="Adds noise whose 2-D spectrum is confined to |r - f| <= width (r = |ω|/(√2π), "
                    "units of π) at a fixed per-image L2 norm in normalized input space, and "
                    "measures the accuracy drop per frequency f (Fig. 2b).")
    _common(p, 1000, 256)
    p.add_argument("--freqs", type=unit_float, nargs="+", default=[i / 10 for i in range(11)],
                   help="noise centre frequencies in units of π (0..1)")
    p.add_argument("--width", type=positive_float, default=0.05,
                   help="band half-width in units of π")
    p.add_argument("--noise-norm", type=nonneg_float, default=5.0,
                   help="L2 norm of the noise per image (normalized input space; "
                        "RMS per pixel = norm / sqrt(C*H*W))")
    p.add_argument("--base", choices=["gaussian", "sign"], default="gaussian",
                   help="base noise before band-limiting: Gaussian or sign-Gaussian (±1)")
    p.set_defaults(func=run_robustness)

    p = sub.add_parser(
        "cka", help="mini-batch linear CKA between all block outputs",
        description="Linear CKA between every pair of block outputs, HSIC averaged over "
                    "mini-batches (Nguyen et al. 2021); heatmap (Fig. 10).")
    _common(p, 1000, 128)
    p.add_argument("--estimator", choices=["unbiased", "biased"], default="unbiased",
                   help="HSIC estimator per batch (biased = plain linear CKA on one batch)")
    p.set_defaults(func=run_cka)

    p = sub.add_parser(
        "lesion", help="accuracy with one residual block removed at a time",
        description="Zeroes the residual branch of each residual block in turn and measures test "
                    "accuracy (Fig. 10).")
    _common(p, 1000, 256)
    p.set_defaults(func=run_lesion)


# ----------------------------------------------------------------------------- runner
def _labels(paths: list[str], shas: list[str], existing: list[Path],
            loader: Callable[[Path], Any]) -> list[str]:
    """Unique names (:func:`landscape.analyze.checkpoint_labels`: the run folder for
    ``model.pt``); a name whose result file in ``--out`` belongs to another checkpoint is not
    reused, so no earlier result is overwritten."""
    from ..analyze import checkpoint_labels
    taken: dict[str, set[str]] = {}
    for f in existing:
        try:
            run = loader(f).config.get("run") or {}
        except Exception:  # noqa: BLE001 - an unreadable result names no owner
            continue
        if run.get("label") and run.get("checkpoint_sha256"):
            taken.setdefault(run["label"], set()).add(str(run["checkpoint_sha256"])[:10])
    return checkpoint_labels(paths, shas, taken=taken)


def _run(args: argparse.Namespace, analysis: str, settings: dict[str, Any],
         compute: Callable[[Any, Any, bool], Any], loader: Callable[[Path], Any], ext: str,
         plot: Callable[[list[Any], Path, list[str]], None]) -> int:
    from ..provenance import file_sha256, output_dir, resume_guard, run_metadata, write_json
    from .common import check_checkpoints, load_checkpoint_and_data

    paths = list(args.checkpoints)
    paths = check_checkpoints(args, paths)
    out = output_dir(args.out)
    labels = _labels(paths, [file_sha256(p) for p in paths],
                     sorted(out.glob(f"{analysis}_*.{ext}")), loader)
    base = {"analysis": analysis, "data": args.data, "split": args.split,
            "samples": args.samples, "batch_size": args.batch_size, "seed": args.seed,
            "model": args.model, **settings}
    results, runs = [], []
    for path, label in zip(paths, labels, strict=True):
        run = {**base, "checkpoint": str(path), "checkpoint_sha256": file_sha256(path),
               "label": label}
        file = out / f"{analysis}_{label}.{ext}"
        res = None
        if file.exists() and not args.force:
            with resume_guard(file, f"{analysis} result",
                              "delete it, use another --out or pass --force to recompute it"):
                old = loader(file)
                if old.config.get("run") == run:
                    res = old
        if res is None:
            model, info, data = load_checkpoint_and_data(args, path)
            res = compute(model, data, not args.quiet)
            res.config["run"] = run
            res.config["label"] = label
            res.config["checkpoint"] = {"path": str(path), "sha256": info.sha256,
                                        "model": info.model, "model_kwargs": info.model_kwargs}
            if getattr(res, "seed", None) is None:
                res.seed = args.seed
            res.save(file)
            print(f"{analysis}: {label}: wrote {file}")
        else:
            print(f"{analysis}: {label}: reusing {file}")
        results.append(file)
        runs.append(run)
    write_json(out / f"config_{analysis}.json", run_metadata(runs=runs))
    plot([loader(f) for f in results], out, labels)
    return 0


def run_fourier(args: argparse.Namespace) -> int:
    from ..features.fourier import FourierResult, fourier_analysis
    from ..reporting.plots.features import plot_fourier_curves, plot_high_frequency

    def compute(model, data, progress):
        return fourier_analysis(model, data, batch_size=args.batch_size, eps=args.eps,
                                include_input=not args.no_input, progress=progress)

    def plot(rs, out, labels):
        for r, lab in zip(rs, labels, strict=True):
            plot_fourier_curves(r, out / f"fourier_curves_{lab}",
                                title=f"{lab}: ΔlogA ({r.n_images} images)")
        plot_high_frequency(rs, out / "fourier_high_frequency", labels)

    return _run(args, "fourier", {"eps": args.eps, "include_input": not args.no_input},
                compute, FourierResult.load, "h5", plot)


def run_variance(args: argparse.Namespace) -> int:
    from ..features.variance import VarianceResult, variance_analysis
    from ..reporting.plots.features import plot_variance

    def compute(model, data, progress):
        return variance_analysis(model, data, batch_size=args.batch_size, ddof=args.ddof,
                                 include_input=not args.no_input, progress=progress)

    return _run(args, "variance", {"ddof": args.ddof, "include_input": not args.no_input},
                compute, VarianceResult.load, "json",
                lambda rs, out, labels: plot_variance(rs, out / "variance", labels))


def run_robustness(args: argparse.Namespace) -> int:
    from ..features.robustness import RobustnessResult, noise_robustness
    from ..reporting.plots.features import plot_robustness

    def compute(model, data, progress):
        try:
            return noise_robustness(model, data, freqs=args.freqs, width=args.width,
                                    norm=args.noise_norm, seed=args.seed, base=args.base,
                                    batch_size=args.batch_size, progress=progress)
        except ValueError as e:
            raise LandscapeError(str(e)) from e

    return _run(args, "robustness", {"freqs": list(args.freqs), "width": args.width,
                                     "noise_norm": args.noise_norm, "base": args.base},
                compute, RobustnessResult.load, "json",
                lambda rs, out, labels: plot_robustness(rs, out / "robustness", labels))


def run_cka(args: argparse.Namespace) -> int:
    from ..features.similarity import CKAResult, cka_analysis
    from ..reporting.plots.features import plot_cka

    def compute(model, data, progress):
        return cka_analysis(model, data, batch_size=args.batch_size, estimator=args.estimator,
                            progress=progress)

    def plot(rs, out, labels):
        for r, lab in zip(rs, labels, strict=True):
            plot_cka(r, out / f"cka_{lab}",
                     title=f"{lab}: CKA ({r.estimator}, {r.n_images} images)")

    return _run(args, "cka", {"estimator": args.estimator}, compute, CKAResult.load, "json", plot)


def run_lesion(args: argparse.Namespace) -> int:
    from ..features.lesion import LesionResult, lesion_study
    from ..reporting.plots.features import plot_lesion

    def compute(model, data, progress):
        try:
            return lesion_study(model, data, batch_size=args.batch_size, progress=progress)
        except ValueError as e:
            raise LandscapeError(str(e)) from e

    return _run(args, "lesion", {}, compute, LesionResult.load, "json",
                lambda rs, out, labels: plot_lesion(rs, out / "lesion", labels))
