"""``landscape hessian``: max-eigenvalue spectrum (and optionally trace and SLQ density)."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "hessian", help="Hessian max-eigenvalue spectrum, trace and density of a checkpoint",
        description="Top-k Hessian eigenvalues of the loss (NLL, optionally + L2 weight decay, "
                    "optionally on augmented data) for many mini-batches (the paper's "
                    "max-eigenvalue spectrum: batches of 16 over 10% of the training set), "
                    "written raw to OUT/spectrum.h5 with its density plot; --trace and --density "
                    "add Hutchinson/Hutch++ trace and an SLQ spectral density of the loss averaged "
                    "over --curvature-samples images. Re-running continues unfinished batches. "
                    "Runs under torchrun (batches sharded over ranks).")
    from .common import (
        add_checkpoint_args,
        add_data_args,
        fraction,
        nonneg_float,
        positive_float,
        positive_int,
    )
    add_checkpoint_args(p)
    add_data_args(p, samples=0, batch_size=16, split="train")
    p.add_argument("--top-k", type=positive_int, default=5, help="eigenvalues per mini-batch")
    p.add_argument("--which", choices=["LM", "LA", "SA"], default="LM",
                   help="LM largest magnitude (the paper's, from power iteration), LA largest, "
                        "SA smallest (most negative)")
    p.add_argument("--batches", type=positive_int, default=None,
                   help="number of mini-batches (default: --subset of the data / --batch-size)")
    p.add_argument("--subset", type=fraction, default=0.1,
                   help="fraction of the data the batches cover when --batches is not given")
    p.add_argument("--tol", type=positive_float, default=1e-3,
                   help="Lanczos stopping tolerance on Ritz residuals ||Hv - lv|| <= tol |l|")
    p.add_argument("--max-iter", type=positive_int, default=None,
                   help="cap on Hessian-vector products per batch (default: the solver's own cap)")
    p.add_argument("--wd", type=nonneg_float, default=0.0,
                   help="L2 weight decay added to the loss (the paper: its training wd)")
    p.add_argument("--l2", choices=["half", "paper"], default="half",
                   help="L2 convention: half = wd/2 ||theta||^2 (Hessian + wd I); "
                        "paper = wd * sum of per-tensor norms (the paper's repository)")
    p.add_argument("--augment", action="store_true",
                   help="pad-and-crop + flip each batch (fixed seed per batch), as in the paper")
    p.add_argument("--backend", choices=["landscape", "pyhessian"], default="landscape",
                   help="eigen solver: ours (Lanczos) or pyhessian's power iteration (cross-check)")
    p.add_argument("--start", choices=["auto", "gradient", "random"], default="auto",
                   help="Lanczos start vector: gradient = unit loss gradient + unit Gaussian (the "
                        "top eigenvalues converge in fewer products at a trained model), random = "
                        "Gaussian; auto = gradient for LM/LA, random for SA")
    p.add_argument("--warm-start", action="store_true",
                   help="start each batch's Lanczos from the previous batch's Ritz vectors "
                        "(chains of 16 batches); off by default: measured no cheaper "
                        "(benchmarks/hessian.py)")
    p.add_argument("--mode", choices=["auto", "double_backward", "forward_over_reverse"],
                   default="auto", help="Hessian-vector product mode (auto = measured default)")
    p.add_argument("--trace", action="store_true",
                   help="also estimate the trace (Hutchinson and Hutch++) of the averaged loss")
    p.add_argument("--density", action="store_true",
                   help="also compute the SLQ spectral density of the averaged loss")
    p.add_argument("--curvature-samples", type=positive_int, default=512,
                   help="images averaged in the --trace/--density operator")
    p.add_argument("--curvature-batch-size", type=positive_int, default=128,
                   help="batch size of the --trace/--density operator")
    p.add_argument("--probes", type=positive_int, default=100,
                   help="trace probes (Hutch++: products)")
    p.add_argument("--slq-probes", type=positive_int, default=4, help="SLQ probe vectors")
    p.add_argument("--slq-steps", type=positive_int, default=80, help="Lanczos steps per SLQ probe")
    p.add_argument("--sigma", type=positive_float, default=None,
                   help="SLQ Gaussian width (default: 1%% of the Ritz value range)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import distributed as D
    from ..hessian import HessianOperator, hutchinson_trace, hutchpp_trace, slq_density
    from ..provenance import output_dir, run_metadata, write_json
    from ..spectrum import SpectrumConfig, max_eigenvalue_spectrum
    from .common import load_checkpoint_and_data

    D.init_from_env()
    model, info, data = load_checkpoint_and_data(args, args.checkpoint)
    model.eval()
    out = output_dir(args.out) if D.is_writer() else None
    augment = None
    if args.augment:
        from ..data import Augment
        augment = Augment(pad=4, flip=True, mean=data.mean, std=data.std)
    cfg = SpectrumConfig(k=args.top_k, which=args.which, batch_size=args.batch_size,
                         n_batches=args.batches, subset=args.subset, seed=args.seed, wd=args.wd,
                         l2=args.l2, augment=args.augment, tol=args.tol, max_iter=args.max_iter,
                         backend=args.backend, mode=args.mode, start=args.start,
                         warm_start=args.warm_start)
    meta = {"checkpoint": info.path, "checkpoint_sha256": info.sha256, "model": info.model,
            "dataset": data.name, "split": data.split, "n_data": len(data),
            "data_indices_seed": data.seed}
    res = max_eigenvalue_spectrum(model, data.images, data.labels, cfg,
                                  out=(out / "spectrum.h5") if out else None, augment=augment,
                                  progress=not args.quiet, meta=meta)
    if D.is_writer():  # after the spectrum: a refused or unreadable spectrum.h5 changes nothing
        write_json(out / "config.json", run_metadata(command="hessian", config=cfg.to_dict(),
                                                      args=vars(args) | {"func": None}, **meta))
    summary: dict[str, Any] = {"spectrum": res.summary()}
    if args.trace or args.density:
        n = min(args.curvature_samples, len(data))
        idx = np.random.default_rng(args.seed + 1).permutation(len(data))[:n]
        import torch
        ii = torch.as_tensor(idx, device=data.images.device)
        x, y = data.images[ii], data.labels[ii]
        bs = args.curvature_batch_size
        batches = [(x[s:s + bs], y[s:s + bs]) for s in range(0, n, bs)]
        op = HessianOperator(model, batches, wd=args.wd, l2=args.l2, mode=args.mode,
                             augment=augment, augment_seed=args.seed, distributed=True)
        if args.trace:
            h = hutchinson_trace(op, args.probes, seed=args.seed)
            hp = hutchpp_trace(op, args.probes, seed=args.seed)
            summary["trace"] = {"hutchinson": h.to_dict(), "hutch++": hp.to_dict(),
                                "n_samples": n, "batch_size": bs}
        if args.density:
            d = slq_density(op, args.slq_probes, args.slq_steps, seed=args.seed, sigma=args.sigma)
            if D.is_writer():
                d.save(out / "density.h5", config=op.config(), **{"meta": meta})
                from ..reporting.plots.hessian import plot_slq_density
                plot_slq_density(out / "density.h5", out / "density")
            summary["density"] = {"sigma": d.sigma, "n_products": d.n_products, "steps": d.steps,
                                  "n_probes": args.slq_probes, "file": "density.h5"}
    if D.is_writer():
        write_json(out / "summary.json", run_metadata(**summary, **meta))
        from ..reporting.plots.hessian import plot_spectrum
        plot_spectrum([out / "spectrum.h5"], out / "spectrum", labels=[info.model])
        s = summary["spectrum"]
        nan = float("nan")
        print(f"{info.model}: {s['n_batches_finished']}/{s['n_batches']} batches, "
              f"negative share {s['negative_share']:.4f}, mean positive {s['mean_positive']:.4g}, "
              f"lambda_min < 0 in {s.get('lambda_min_negative_share', nan):.3f} of batches, "
              f"median |lambda_min|/lambda_max {s.get('median_abs_min_over_max', nan):.3g}"
              + (f", trace {summary['trace']['hutch++']['trace']:.4g} "
                 f"+- {summary['trace']['hutch++']['stderr']:.2g}" if "trace" in summary else "")
              + f" -> {out}")
    D.barrier()
    return 0
