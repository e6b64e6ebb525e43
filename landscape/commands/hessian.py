"""``landscape hessian``: max-eigenvalue spectrum (and optionally trace and SLQ density); the
work: :func:`landscape.workflows.hessian.hessian_run`; every default is the settings' (the
paper loss preset, 16 mini-batches of 16), so the command computes what ``analyze`` does."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "hessian", help="Hessian max-eigenvalue spectrum, trace and density of a checkpoint",
        description="Top-k Hessian eigenvalues of the loss (--preset: by default the paper's, "
                    "NLL + L2 with the training weight decay on augmented images, as `landscape "
                    "analyze`) for many mini-batches (the paper's "
                    "max-eigenvalue spectrum: batches of 16; --batches 0 covers 10% of the "
                    "training set as the paper does), "
                    "written raw to OUT/spectrum.h5 with its density plot; --trace and --density "
                    "add Hutchinson/Hutch++ trace and an SLQ spectral density of the loss averaged "
                    "over --curvature-samples images. Re-running continues unfinished batches. "
                    "Runs under torchrun (batches sharded over ranks).")
    from ..settings import CurvatureSettings as C
    from ..settings import LossSettings as L
    from ..settings import SpectrumSettings as S
    from .argtypes import fraction, nonneg_float, nonneg_int, positive_float, positive_int
    from .common import add_checkpoint_args, add_data_args
    from .options import link, settings_option, unrelated, uses_settings
    uses_settings(p, S, C, L)
    add_checkpoint_args(p)
    add_data_args(p, samples=0, batch_size=S.batch_size, split="train")
    link(p, "batch_size", S, "batch_size")
    link(p, "seed", S, "seed")
    unrelated(p, "samples", "the training images the mini-batches and the curvature's images "
                            "are drawn from; 0 (default): as `landscape analyze` (hessian_pool)")
    for a in p._actions:
        if a.dest == "samples":
            a.help = ("training images the mini-batches and the --trace/--density images are "
                      "drawn from: 0 (default) = as `landscape analyze`, a stratified subset "
                      "(seed + 2) of max(--curvature-samples, --batches x --batch-size) images "
                      "(all of them with --batches 0); N = a stratified subset of N (--seed)")
    opt = settings_option
    opt(p, "--preset", settings=L, field="preset",
        help="the loss: paper (default, as `landscape analyze`) = NLL + wd * sum_p ||p||_2 with "
             "the checkpoint's training weight decay, on augmented images (the training "
             "recipe's pad and flip); plain = NLL on the images as given (wd 0, half L2, no "
             "augmentation); --wd, --l2, --augment/--no-augment override it")
    opt(p, "--top-k", settings=S, field="k", type=positive_int, help="eigenvalues per mini-batch")
    opt(p, "--which", settings=S, field="which",
        help="LM largest magnitude (the paper's, from power iteration), LA largest, SA smallest "
             "(most negative)")
    opt(p, "--batches", dest="batches", settings=S, field="n_batches", type=nonneg_int,
        help="number of mini-batches (0: --subset of the data / --batch-size, the paper's)")
    opt(p, "--subset", settings=S, field="subset", type=fraction,
        help="fraction of the data the batches cover with --batches 0")
    opt(p, "--tol", settings=S, field="tol", type=positive_float,
        help="Lanczos stopping tolerance on Ritz residuals ||Hv - lv|| <= tol |l| (also of the "
             "--trace/--density operator's eigenvalues, as in analyze)")
    opt(p, "--max-iter", settings=S, field="max_iter", type=positive_int,
        help="cap on Hessian-vector products per batch (and per eigen-problem of the "
             "--trace/--density operator)")
    opt(p, "--wd", settings=L, field="wd", type=nonneg_float,
        help="L2 weight decay added to the loss (default: the preset's: the checkpoint's "
             "training weight decay for paper, 0 for plain)")
    opt(p, "--l2", settings=L, field="l2", default_doc="the preset's",
        help="L2 convention: half = wd/2 ||theta||^2 (Hessian + wd I); paper = wd * sum of "
             "per-tensor norms (the paper's repository); default: the preset's")
    opt(p, "--augment", settings=L, field="augment", action=argparse.BooleanOptionalAction,
        help="pad-and-crop + flip each batch (fixed seed per batch), as in the paper; default: "
             "the preset's")
    opt(p, "--paper-loss", settings=L, field="paper_loss", action="store_true",
        help="the paper's training transform: Mixup/CutMix, label smoothing, soft-target NLL "
             "(as analyze --set paper_loss=true)")
    opt(p, "--backend", settings=S, field="backend",
        help="eigen solver: ours (Lanczos) or pyhessian's power iteration (cross-check; the "
             "Hessian only)")
    opt(p, "--start", settings=S, field="start",
        help="Lanczos start vector: gradient = unit loss gradient + unit Gaussian (the top "
             "eigenvalues converge in fewer products at a trained model), random = Gaussian; "
             "auto = gradient for LM/LA, random for SA")
    opt(p, "--warm-start", settings=S, field="warm_start", action="store_true",
        help="start each batch's Lanczos from the previous batch's Ritz vectors (chains of 16 "
             "batches); off by default: measured no cheaper (benchmarks/hessian.py)")
    opt(p, "--curvature", settings=S, field="curvature",
        help="the curvature matrix: hessian (of the loss), ggn (generalized Gauss-Newton "
             "J^T H_out J: positive semi-definite for cross-entropy, the Hessian without its "
             "residual term) or ef (empirical Fisher, the mean of per-sample gradient outer "
             "products); the L2 term is added to each. ggn and ef refuse --backend pyhessian "
             "and a --mode other than auto")
    opt(p, "--mode", settings=S, field="mode",
        help="Hessian-vector product mode (auto: measured once and recorded; the Hessian only)")
    p.add_argument("--trace", action="store_true",
                   help="also estimate the trace (Hutch++, and Hutchinson with "
                        "--hutchinson-probes) of the averaged loss, with its --curvature-top-k "
                        "extreme eigenvalues")
    p.add_argument("--density", action="store_true",
                   help="also compute the SLQ spectral density of the averaged loss, with its "
                        "--curvature-top-k extreme eigenvalues")
    opt(p, "--curvature-samples", settings=C, field="samples", type=positive_int,
        help="images averaged in the --trace/--density operator")
    opt(p, "--curvature-batch-size", settings=C, field="batch_size", type=positive_int,
        help="batch size of the --trace/--density operator")
    opt(p, "--curvature-top-k", settings=C, field="top_k", type=nonneg_int,
        help="top (LM) and bottom (SA) eigenvalues of the --trace/--density operator (0: none)")
    opt(p, "--probes", settings=C, field="trace_products", type=positive_int,
        help="Hutch++ products of --trace")
    opt(p, "--hutchinson-probes", settings=C, field="hutchinson_probes", type=nonneg_int,
        help="plain Hutchinson probes of --trace (0: none)")
    opt(p, "--slq-probes", settings=C, field="density_probes", type=positive_int,
        help="SLQ probe vectors (with --density)")
    opt(p, "--slq-steps", settings=C, field="density_steps", type=positive_int,
        help="Lanczos steps per SLQ probe")
    opt(p, "--sigma", settings=C, field="sigma", type=positive_float,
        help="SLQ Gaussian width (default: 1%% of the Ritz value range)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def settings_of(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(SpectrumSettings, CurvatureSettings, LossSettings) of the options, each validated by its
    class. The curvature's eigenvalue tolerance, cap, product mode and seed are the spectrum's
    (as in ``analyze``); its trace and density are 0 without --trace / --density."""
    from ..settings import CurvatureSettings, LossSettings, SpectrumSettings
    spectrum = SpectrumSettings(
        k=args.top_k, which=args.which, batch_size=args.batch_size, n_batches=args.batches,
        subset=args.subset, seed=args.seed, tol=args.tol, max_iter=args.max_iter,
        backend=args.backend, mode=args.mode, start=args.start, warm_start=args.warm_start,
        curvature=args.curvature)
    curvature = CurvatureSettings(
        samples=args.curvature_samples, batch_size=args.curvature_batch_size, seed=args.seed,
        mode=args.mode, top_k=args.curvature_top_k, lanczos_tol=args.tol,
        lanczos_max_iter=args.max_iter, trace_products=args.probes if args.trace else 0,
        hutchinson_probes=args.hutchinson_probes if args.trace else 0,
        density_probes=args.slq_probes if args.density else 0, density_steps=args.slq_steps,
        sigma=args.sigma)
    loss = LossSettings(preset=args.preset, wd=args.wd, l2=args.l2 or "", augment=args.augment,
                        paper_loss=args.paper_loss)
    return spectrum, curvature, loss


def run(args: argparse.Namespace) -> int:
    from .. import distributed as D
    from ..curvature import check_curvature_options
    from ..workflows.hessian import HessianJob, hessian_run, summary_line
    from .common import input_options
    check_curvature_options(args.curvature, backend=args.backend, mode=args.mode)  # first
    spectrum, curvature, loss = settings_of(args)
    job = HessianJob(args.checkpoint, args.out, input_options(args),
                     curvature=bool(args.trace or args.density), quiet=args.quiet)
    summary = hessian_run(spectrum, curvature, loss, job)
    if D.is_writer():
        print(summary_line(summary))
    return 0
