"""``landscape hessian``: max-eigenvalue spectrum (and optionally trace and SLQ density); the
work: :func:`landscape.workflows.hessian.hessian_run`, defaults: ``analyze``'s quick budget."""
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
    from ..settings import SPECTRUM_PRESETS
    from ..settings import CurvatureSettings as C
    from ..settings import SpectrumSettings as S
    from .argtypes import fraction, nonneg_float, positive_float, positive_int
    from .common import add_checkpoint_args, add_data_args
    from .options import link, settings_option, unrelated, uses_settings
    uses_settings(p, S, C)
    add_checkpoint_args(p)
    add_data_args(p, samples=0, batch_size=S.batch_size, split="train")
    link(p, "batch_size", S, "batch_size")
    link(p, "seed", S, "seed")
    unrelated(p, "samples", "the images the mini-batches are drawn from (0: all); the trace and "
                            "density operator's images are --curvature-samples")
    p.add_argument("--preset", choices=list(SPECTRUM_PRESETS), default="plain",
                   help="the loss: plain = NLL on the images as given (wd 0, half L2, no "
                        "augmentation); paper = the paper's loss, as `landscape analyze` uses: "
                        "NLL + wd * sum_p ||p||_2 with the checkpoint's training weight decay, on "
                        "augmented images (--wd, --l2, --augment/--no-augment override it)")
    opt = settings_option
    opt(p, "--top-k", settings=S, field="k", type=positive_int, help="eigenvalues per mini-batch")
    opt(p, "--which", settings=S, field="which",
        help="LM largest magnitude (the paper's, from power iteration), LA largest, SA smallest "
             "(most negative)")
    opt(p, "--batches", dest="batches", settings=S, field="n_batches", type=positive_int,
        help="number of mini-batches (default: --subset of the data / --batch-size)")
    opt(p, "--subset", settings=S, field="subset", type=fraction,
        help="fraction of the data the batches cover when --batches is not given")
    opt(p, "--tol", settings=S, field="tol", type=positive_float,
        help="Lanczos stopping tolerance on Ritz residuals ||Hv - lv|| <= tol |l|")
    opt(p, "--max-iter", settings=S, field="max_iter", type=positive_int,
        help="cap on Hessian-vector products per batch")
    opt(p, "--wd", settings=S, field="wd", type=nonneg_float, default_doc="the preset's",
        help="L2 weight decay added to the loss (default: the preset's: 0 for plain, the "
             "checkpoint's training weight decay for paper)")
    opt(p, "--l2", settings=S, field="l2", default_doc="the preset's",
        help="L2 convention: half = wd/2 ||theta||^2 (Hessian + wd I); paper = wd * sum of "
             "per-tensor norms (the paper's repository); default: the preset's")
    opt(p, "--augment", settings=S, field="augment", action=argparse.BooleanOptionalAction,
        default_doc="the preset's",
        help="pad-and-crop + flip each batch (fixed seed per batch), as in the paper; default: "
             "the preset's")
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
                   help="also estimate the trace (Hutchinson and Hutch++) of the averaged loss")
    p.add_argument("--density", action="store_true",
                   help="also compute the SLQ spectral density of the averaged loss")
    opt(p, "--curvature-samples", settings=C, field="samples", type=positive_int,
        help="images averaged in the --trace/--density operator")
    opt(p, "--curvature-batch-size", settings=C, field="batch_size", type=positive_int,
        help="batch size of the --trace/--density operator")
    opt(p, "--probes", settings=C, field="trace_products", type=positive_int,
        help="trace probes (Hutch++: products)")
    opt(p, "--slq-probes", settings=C, field="density_probes", type=positive_int,
        help="SLQ probe vectors (with --density)")
    opt(p, "--slq-steps", settings=C, field="density_steps", type=positive_int,
        help="Lanczos steps per SLQ probe")
    opt(p, "--sigma", settings=C, field="sigma", type=positive_float,
        help="SLQ Gaussian width (default: 1%% of the Ritz value range)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import distributed as D
    from ..workflows.hessian import hessian_run, summary_line
    summary = hessian_run(args)
    if D.is_writer():
        print(summary_line(summary))
    return 0
