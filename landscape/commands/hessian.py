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
    from ..settings import default_of as d
    from .argtypes import fraction, nonneg_float, positive_float, positive_int
    from .common import add_checkpoint_args, add_data_args
    add_checkpoint_args(p)
    add_data_args(p, samples=0, batch_size=d(S, "batch_size"), split="train")
    p.add_argument("--preset", choices=list(SPECTRUM_PRESETS), default="plain",
                   help="the loss: plain = NLL on the images as given (wd 0, half L2, no "
                        "augmentation); paper = the paper's loss, as `landscape analyze` uses: "
                        "NLL + wd * sum_p ||p||_2 with the checkpoint's training weight decay, on "
                        "augmented images (--wd, --l2, --augment/--no-augment override it)")
    p.add_argument("--top-k", type=positive_int, default=d(S, "k"),
                   help="eigenvalues per mini-batch")
    p.add_argument("--which", choices=["LM", "LA", "SA"], default=d(S, "which"),
                   help="LM largest magnitude (the paper's, from power iteration), LA largest, "
                        "SA smallest (most negative)")
    p.add_argument("--batches", type=positive_int, default=d(S, "n_batches"),
                   help="number of mini-batches (default: --subset of the data / --batch-size)")
    p.add_argument("--subset", type=fraction, default=d(S, "subset"),
                   help="fraction of the data the batches cover when --batches is not given")
    p.add_argument("--tol", type=positive_float, default=d(S, "tol"),
                   help="Lanczos stopping tolerance on Ritz residuals ||Hv - lv|| <= tol |l|")
    p.add_argument("--max-iter", type=positive_int, default=d(S, "max_iter"),
                   help="cap on Hessian-vector products per batch")
    p.add_argument("--wd", type=nonneg_float, default=None,
                   help="L2 weight decay added to the loss (default: the preset's: 0 for plain, "
                        "the checkpoint's training weight decay for paper)")
    p.add_argument("--l2", choices=["half", "paper"], default=None,
                   help="L2 convention: half = wd/2 ||theta||^2 (Hessian + wd I); "
                        "paper = wd * sum of per-tensor norms (the paper's repository); "
                        "default: the preset's")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="pad-and-crop + flip each batch (fixed seed per batch), as in the paper; "
                        "default: the preset's")
    p.add_argument("--backend", choices=["landscape", "pyhessian"], default=d(S, "backend"),
                   help="eigen solver: ours (Lanczos) or pyhessian's power iteration (cross-check)")
    p.add_argument("--start", choices=["auto", "gradient", "random"], default=d(S, "start"),
                   help="Lanczos start vector: gradient = unit loss gradient + unit Gaussian (the "
                        "top eigenvalues converge in fewer products at a trained model), random = "
                        "Gaussian; auto = gradient for LM/LA, random for SA")
    p.add_argument("--warm-start", action="store_true", default=d(S, "warm_start"),
                   help="start each batch's Lanczos from the previous batch's Ritz vectors "
                        "(chains of 16 batches); off by default: measured no cheaper "
                        "(benchmarks/hessian.py)")
    p.add_argument("--curvature", choices=["hessian", "ggn", "ef"], default="hessian",
                   help="the curvature matrix: hessian (of the loss), ggn (generalized "
                        "Gauss-Newton J^T H_out J: positive semi-definite for cross-entropy, the "
                        "Hessian without its residual term) or ef (empirical Fisher, the mean of "
                        "per-sample gradient outer products); the L2 term is added to each")
    p.add_argument("--mode", choices=["auto", "double_backward", "forward_over_reverse"],
                   default=d(S, "mode"),
                   help="Hessian-vector product mode (auto: measured once and recorded)")
    p.add_argument("--trace", action="store_true",
                   help="also estimate the trace (Hutchinson and Hutch++) of the averaged loss")
    p.add_argument("--density", action="store_true",
                   help="also compute the SLQ spectral density of the averaged loss")
    p.add_argument("--curvature-samples", type=positive_int, default=d(C, "samples"),
                   help="images averaged in the --trace/--density operator")
    p.add_argument("--curvature-batch-size", type=positive_int, default=d(C, "batch_size"),
                   help="batch size of the --trace/--density operator")
    p.add_argument("--probes", type=positive_int, default=d(C, "trace_products"),
                   help="trace probes (Hutch++: products)")
    p.add_argument("--slq-probes", type=positive_int, default=d(C, "density_probes"),
                   help="SLQ probe vectors (with --density)")
    p.add_argument("--slq-steps", type=positive_int, default=d(C, "density_steps"),
                   help="Lanczos steps per SLQ probe")
    p.add_argument("--sigma", type=positive_float, default=d(C, "sigma"),
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
