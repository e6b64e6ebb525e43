"""``landscape fourier|variance|robustness|cka|lesion``: feature-map analyses of checkpoints
(the work: :func:`landscape.workflows.features.feature_run`)."""
from __future__ import annotations

import argparse
from typing import Any

from ..settings import (
    ROBUSTNESS_PROTOCOLS,
    CKASettings,
    FourierSettings,
    ImagesSettings,
    LesionSettings,
    RobustnessSettings,
    VarianceSettings,
    default_of,
)
from .argtypes import nonneg_float, positive_float, unit_float
from .options import link, settings_option, uses_settings

# The defaults come from landscape.settings (torch-free), the one place they live.
PAPER_EPS = default_of(RobustnessSettings, "eps")
RADIAL_WIDTH = ROBUSTNESS_PROTOCOLS["radial"]["width"]
RADIAL_NORM = default_of(RobustnessSettings, "norm")


def _common(p: argparse.ArgumentParser, *settings: type) -> None:
    """Checkpoints, data, --out, --force, --quiet; ``settings``: the classes the command builds
    (with :class:`~landscape.settings.ImagesSettings`, whose --samples and --batch-size are
    analyze's ``samples`` and ``batch_size``)."""
    from .common import add_checkpoint_args, add_data_args, add_out_arg
    add_checkpoint_args(p, many=True)
    add_data_args(p, samples=ImagesSettings.samples, batch_size=ImagesSettings.batch_size)
    uses_settings(p, *settings, ImagesSettings)
    link(p, "samples", ImagesSettings, "samples")
    link(p, "batch_size", ImagesSettings, "batch_size")
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
    _common(p, FourierSettings)
    settings_option(p, "--eps", settings=FourierSettings, field="eps", type=positive_float,
                    help="added to |FFT| before the log (the notebook's 1e-6)")
    p.add_argument("--no-input", action="store_true", help="leave out the input reference")
    p.set_defaults(func=run, analysis="fourier")

    p = sub.add_parser(
        "variance", help="feature-map variance per block against depth",
        description="Spatial variance of each block output per channel and image, averaged "
                    "(Fig. 9).")
    _common(p, VarianceSettings)
    settings_option(p, "--ddof", settings=VarianceSettings, field="ddof", type=int,
                    help="variance estimator: 1 = unbiased (torch default, as the paper), "
                         "0 = population")
    p.add_argument("--no-input", action="store_true", help="leave out the input reference")
    p.set_defaults(func=run, analysis="variance")

    p = sub.add_parser(
        "robustness",
        help="accuracy drop under band-limited noise against noise frequency",
        description="Adds band-limited noise in normalized input space and measures the "
                    "accuracy drop per noise\nfrequency f (units of π; Fig. 2b). Two protocols "
                    "(--protocol):\n"
                    "  paper (default): the paper code's FreqAttack(Random(eps)): noise eps * "
                    "sign(N(0,1)) per pixel\n"
                    "    (--base sign; gaussian: eps * N(0,1)), its 2-D spectrum confined to a "
                    "square ring around f of\n"
                    "    half-width --width (default 0.2/π, FreqAttack's s = 0.2 rad), not "
                    "renormalized: the noise\n"
                    "    keeps the energy of the band. --eps applies; --noise-norm is refused.\n"
                    "  radial: base noise (--base gaussian, or sign) confined to the radial band "
                    "|r - f| <= --width\n"
                    f"    (r = |ω|/(√2π), default width {RADIAL_WIDTH:g}), each image's noise "
                    "scaled to L2 norm\n"
                    f"    --noise-norm (default {RADIAL_NORM:g}). --noise-norm applies; --eps is "
                    "refused.\n")
    R = RobustnessSettings
    _common(p, R)
    settings_option(p, "--protocol", settings=R, field="protocol",
                    help="noise protocol (see above)")
    nf = default_of(R, "freqs")
    settings_option(p, "--freqs", settings=R, field="freqs", type=unit_float, nargs="+",
                    convert=lambda n: [round(i / (n - 1), 12) for i in range(n)],
                    help=f"noise centre frequencies in units of π (0..1; default {nf} evenly)")
    settings_option(p, "--width", settings=R, field="width", type=positive_float,
                    default_doc="the protocol's",
                    help="band half-width in units of π "
                         f"(default: paper 0.2/π, radial {RADIAL_WIDTH:g})")
    settings_option(p, "--eps", settings=R, field="eps", type=nonneg_float,
                    default_doc=f"{PAPER_EPS:g} (given only with the paper protocol)",
                    help=f"paper protocol only: noise amplitude per pixel in normalized input "
                         f"space (default {PAPER_EPS:g})")
    settings_option(p, "--noise-norm", settings=R, field="norm", type=nonneg_float,
                    default_doc=f"{RADIAL_NORM:g} (given only with the radial protocol)",
                    help=f"radial protocol only: L2 norm of the noise per image (normalized "
                         f"input space; RMS per pixel = norm / sqrt(C*H*W); default "
                         f"{RADIAL_NORM:g})")
    settings_option(p, "--base", settings=R, field="base", default_doc="the protocol's",
                    help="base noise before band-limiting: Gaussian or sign-Gaussian (±1) "
                         "(default: paper sign, radial gaussian)")
    p.set_defaults(func=run, analysis="robustness")

    p = sub.add_parser(
        "cka", help="mini-batch linear CKA between all block outputs",
        description="Linear CKA between every pair of block outputs, HSIC averaged over "
                    "mini-batches (Nguyen et al. 2021); heatmap (Fig. 10).")
    _common(p, CKASettings)
    link(p, "batch_size", CKASettings, "batch_size",
         help="images per CKA mini-batch (the HSIC is estimated per mini-batch, so this is part "
              "of the estimate, not only of the speed)")
    settings_option(p, "--estimator", settings=CKASettings, field="estimator",
                    help="HSIC estimator per batch (biased = plain linear CKA on one batch)")
    p.set_defaults(func=run, analysis="cka")

    p = sub.add_parser(
        "lesion", help="accuracy with one residual block removed at a time",
        description="Zeroes the residual branch of each residual block in turn and measures test "
                    "accuracy (Fig. 10).")
    _common(p, LesionSettings)
    link(p, "samples", LesionSettings, "samples")
    p.set_defaults(func=run, analysis="lesion")


def check_robustness_options(args: argparse.Namespace) -> None:
    """Each protocol's options apply to it: an option of the other protocol is refused (one
    line), never silently ignored."""
    from ..errors import LandscapeError
    if args.blocks is not None:
        raise LandscapeError("--blocks: robustness measures the model's predictions only and "
                             "uses no block list")
    other = {"paper": ("noise_norm", "--noise-norm", "radial"),
             "radial": ("eps", "--eps", "paper")}[args.protocol]
    if getattr(args, other[0]) is not None:
        raise LandscapeError(f"{other[1]} applies to the {other[2]} protocol only, not to "
                             f"--protocol {args.protocol}")


def settings_of(args: argparse.Namespace) -> object:
    """The settings object of a feature command's options (validated by the class)."""
    a = args.analysis
    if a == "fourier":
        return FourierSettings(eps=args.eps, include_input=not args.no_input)
    if a == "variance":
        return VarianceSettings(ddof=args.ddof, include_input=not args.no_input)
    if a == "robustness":
        given = {k: v for k, v in (("eps", args.eps), ("norm", args.noise_norm),
                                   ("width", args.width), ("base", args.base)) if v is not None}
        return RobustnessSettings(protocol=args.protocol, freqs=len(args.freqs), **given)
    if a == "cka":
        return CKASettings(batch_size=args.batch_size, estimator=args.estimator)
    from ..settings import LesionSettings
    return LesionSettings(samples=args.samples)


def run(args: argparse.Namespace) -> int:
    from ..workflows.features import FeatureJob, feature_run
    from .common import input_options
    if args.analysis == "robustness":
        check_robustness_options(args)
    job = FeatureJob(args.analysis, list(args.checkpoints), args.out, settings_of(args),
                     input_options(args), batch_size=args.batch_size,
                     freqs=list(args.freqs) if args.analysis == "robustness" else None,
                     force=args.force, quiet=args.quiet)
    for label, file, reused in feature_run(job):
        print(f"{args.analysis}: {label}: {'reusing' if reused else 'wrote'} {file}")
    return 0
