"""Settings of ``landscape analyze``: the :class:`AnalyzeConfig` fields, the budget presets and
how a TOML file and ``--set`` overrides are applied. Kept free of torch and numpy so that the
CLI can list them in ``--help`` without the heavy imports (``landscape.analyze`` re-exports them).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import LandscapeError

ANALYSES = ("hessian", "surface", "fourier", "variance", "robustness", "cka", "lesion")


@dataclass
class AnalyzeConfig:
    """Every setting of an analysis run; ``BUDGETS`` gives the presets."""

    data: str | None = None          # default: the checkpoint's dataset
    data_root: str | None = None
    seed: int = 0                       # images, directions, probes
    device: str = "auto"
    eval_samples: int = 2000            # test images for accuracy/NLL
    # feature-map analyses (test images)
    samples: int = 500
    batch_size: int = 250
    fourier_readout: str = "paper"      # diagonal read-out: "paper" (notebook) or "nyquist"
    fourier_min_freq: float | None = None  # claims: lowest read-out (units of π); None: 3π/4
    robustness_freqs: int = 6           # frequencies in [0, 1] (units of pi)
    robustness_protocol: str = "paper"  # "paper" (FreqAttack square band) or "radial"
    robustness_eps: float = 0.5         # paper protocol: sign-noise amplitude (normalized pixels)
    robustness_norm: float = 5.0        # radial protocol: L2 norm of the noise per image
    robustness_width: float = 0.0       # band half-width (units of pi); 0: the protocol's default
    cka_batch_size: int = 50            # CKA mini-batches (the bootstrap resamples them)
    groups: int = 25                    # image groups kept per model for the claims' bootstrap
    lesion_samples: int = 1000
    # loss surface (training images, BN in eval mode). The paper's losslandscape.ipynb: NLL +
    # wd * sum_p ||p||_2 on augmented training images; a fixed, seeded augmented copy here.
    surface_samples: int = 500
    surface_grid: str = "-1:1:9"
    surface_ygrid: str = "-1:1:9"
    surface_radius: float = 1.0
    surface_radii: str = "0.25,0.5,0.75,1.0"  # sharpness (loss increase) read at these radii
    surface_planes: int = 3             # random planes per model (direction seeds differ)
    surface_norm: str = "filter"        # Li et al. per filter; "hdvw": the paper code's dim-0
    surface_augment: bool = True
    surface_wd: float | None = None  # None: the checkpoint's training weight decay
    # surface and Hessian on the paper's training transform: Mixup/CutMix + label smoothing,
    # soft-target NLL (landscape.paper_loss); the paper budget also sets both wd to 0.05
    paper_loss: bool = False
    # Hessian (training images)
    spectrum_batches: int = 16
    spectrum_batch_size: int = 16
    top_k: int = 5
    lanczos_tol: float = 1e-3           # Ritz residual <= tol * |eigenvalue|
    lanczos_max_iter: int = 100         # cap on Hessian-vector products per eigen-problem
    hessian_mode: str = "double_backward"  # measured fastest (benchmarks/hessian.py); or "auto"
    hessian_wd: float | None = None  # None: the checkpoint's training weight decay (paper L2)
    hessian_augment: bool = True        # the paper: NLL + L2 on augmented training images
    curvature_samples: int = 128        # one operator averaged over these images
    curvature_batch_size: int = 256     # one batch keeps its graph between products (fastest)
    trace_products: int = 12
    density_probes: int = 1
    density_steps: int = 30

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {},
    "standard": dict(eval_samples=0, samples=2000, lesion_samples=5000, surface_samples=2000,
                     surface_grid="-1:1:21", surface_ygrid="-1:1:21", spectrum_batches=100,
                     curvature_samples=1024, trace_products=99, density_probes=4,
                     density_steps=80, robustness_freqs=11),
    # The paper: top-5 per mini-batch of 16 over ~10% of the training set, NLL + L2 on augmented
    # data; surfaces on the training set.
    "paper": dict(eval_samples=0, samples=10000, lesion_samples=0, surface_samples=10000,
                  surface_grid="-1:1:41", surface_ygrid="-1:1:41", spectrum_batches=0,
                  curvature_samples=2048,
                  trace_products=199, density_probes=8, density_steps=100,
                  robustness_freqs=21, paper_loss=True, surface_wd=0.05, hessian_wd=0.05),
}


def make_config(budget: str = "quick", toml_path: str | None = None,
                overrides: dict[str, Any] | None = None) -> AnalyzeConfig:
    """Preset, then the TOML file (top-level keys or an ``[analyze]`` table), then overrides."""
    if budget not in BUDGETS:
        raise LandscapeError(f"unknown budget {budget!r}; choose one of {', '.join(BUDGETS)}")
    values: dict[str, Any] = dict(BUDGETS[budget])
    if toml_path:
        import tomllib
        try:
            with open(toml_path, "rb") as f:
                doc = tomllib.load(f)
        except FileNotFoundError:
            raise LandscapeError(f"config file not found: {toml_path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, IsADirectoryError) as e:
            raise LandscapeError(f"unreadable config file {toml_path}: {e}") from None
        doc = doc.get("analyze", doc)
        values.update(doc)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name: f for f in dataclasses.fields(AnalyzeConfig)}
    bad = sorted(set(values) - set(known))
    if bad:
        raise LandscapeError(f"unknown setting(s) {', '.join(bad)}; known: {', '.join(known)}")
    cfg = AnalyzeConfig(**values)
    for name in known:  # type-check TOML values
        v = getattr(cfg, name)
        default = getattr(AnalyzeConfig(), name)
        if default is not None and v is not None and not isinstance(v, type(default)) and not (
                isinstance(default, float) and isinstance(v, int)):
            raise LandscapeError(f"setting {name} must be {type(default).__name__}, got {v!r}")
    for name, allowed in (("fourier_readout", ("paper", "nyquist")),
                          ("robustness_protocol", ("paper", "radial"))):
        if getattr(cfg, name) not in allowed:
            raise LandscapeError(f"setting {name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(cfg, name)!r}")
    if cfg.groups < 2 or cfg.cka_batch_size < 4:
        raise LandscapeError("settings groups must be >= 2 and cka_batch_size >= 4")
    return cfg
