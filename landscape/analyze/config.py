"""Settings of ``landscape analyze``: the :class:`AnalyzeConfig` fields, the budget presets and
how a TOML file and ``--set`` overrides are applied. Kept free of torch and numpy so that the
CLI can list them in ``--help`` without the heavy imports.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from ..errors import LandscapeError
from ..settings import (
    LOSS_PRESETS,
    CKASettings,
    CurvatureSettings,
    FourierSettings,
    ImagesSettings,
    LesionSettings,
    LossSettings,
    RobustnessSettings,
    SpectrumSettings,
    SurfaceSettings,
    check_number,
    check_value,
    default_of,
)

ANALYSES = ("hessian", "surface", "fourier", "variance", "robustness", "cka", "lesion")


#: The keys of :class:`AnalyzeConfig` that are a field of one quantity's settings class
#: (:mod:`landscape.settings`): their default and validation come from there, nowhere else.
FROM_SETTINGS: dict[str, tuple[type, str]] = {
    "samples": (ImagesSettings, "samples"),
    "batch_size": (ImagesSettings, "batch_size"),
    "fourier_readout": (FourierSettings, "readout"),
    "robustness_freqs": (RobustnessSettings, "freqs"),
    "robustness_protocol": (RobustnessSettings, "protocol"),
    "robustness_eps": (RobustnessSettings, "eps"),
    "robustness_norm": (RobustnessSettings, "norm"),
    "robustness_width": (RobustnessSettings, "width"),
    "cka_batch_size": (CKASettings, "batch_size"),
    "lesion_samples": (LesionSettings, "samples"),
    "surface_grid": (SurfaceSettings, "grid"),
    "surface_ygrid": (SurfaceSettings, "ygrid"),
    "surface_radii": (SurfaceSettings, "radii"),
    "surface_planes": (SurfaceSettings, "planes"),
    "surface_norm": (SurfaceSettings, "norm"),
    "surface_plan": (SurfaceSettings, "plan"),
    "surface_samples": (SurfaceSettings, "samples"),
    "surface_augment": (SurfaceSettings, "augment"),
    "surface_wd": (SurfaceSettings, "wd"),
    "paper_loss": (LossSettings, "paper_loss"),
    "spectrum_batches": (SpectrumSettings, "n_batches"),
    "spectrum_batch_size": (SpectrumSettings, "batch_size"),
    "top_k": (SpectrumSettings, "k"),
    "lanczos_tol": (SpectrumSettings, "tol"),
    "lanczos_max_iter": (SpectrumSettings, "max_iter"),
    "hessian_mode": (SpectrumSettings, "mode"),
    "hessian_wd": (LossSettings, "wd"),
    "curvature_samples": (CurvatureSettings, "samples"),
    "curvature_batch_size": (CurvatureSettings, "batch_size"),
    "trace_products": (CurvatureSettings, "trace_products"),
    "density_probes": (CurvatureSettings, "density_probes"),
    "density_steps": (CurvatureSettings, "density_steps"),
}


def _d(key: str) -> Any:
    cls, name = FROM_SETTINGS[key]
    return default_of(cls, name)


@dataclass
class AnalyzeConfig:
    """Every setting of an analysis run. Keys in :data:`FROM_SETTINGS` take their defaults from
    the quantity's settings class; the rest (how many images, batches, groups) are the run's
    budget, and ``BUDGETS`` gives the presets (quick: what ``make_config()`` builds). The
    spectrum and curvature use the ``paper`` preset (:data:`landscape.settings.SPECTRUM_PRESETS`:
    the paper's L2 with the training weight decay, on augmented images)."""

    data: str | None = None          # default: the checkpoint's dataset
    data_root: str | None = None
    seed: int = 0                       # images, directions, probes
    device: str = "auto"
    eval_samples: int = 2000            # test images for accuracy/NLL
    # feature-map analyses (test images)
    samples: int = _d("samples")
    batch_size: int = _d("batch_size")
    fourier_readout: str = _d("fourier_readout")
    fourier_min_freq: float | None = None  # claims: lowest read-out (units of π); None: 3π/4
    robustness_freqs: int = _d("robustness_freqs")
    robustness_protocol: str = _d("robustness_protocol")
    robustness_eps: float = _d("robustness_eps")
    robustness_norm: float = _d("robustness_norm")
    robustness_width: float = _d("robustness_width")
    cka_batch_size: int = _d("cka_batch_size")
    groups: int = 25                    # image groups kept per model for the claims' bootstrap
    lesion_samples: int = _d("lesion_samples")
    # loss surface (training images, BN in eval mode). The paper's losslandscape.ipynb: NLL +
    # wd * sum_p ||p||_2 on augmented training images; a fixed, seeded augmented copy here.
    surface_samples: int = _d("surface_samples")
    surface_grid: str = _d("surface_grid")
    surface_ygrid: str = _d("surface_ygrid")
    surface_radius: float = 1.0         # the plotted half-width of the first plane
    surface_radii: str = _d("surface_radii")
    surface_planes: int = _d("surface_planes")
    surface_norm: str = _d("surface_norm")
    surface_augment: bool = _d("surface_augment")
    surface_wd: float | None = _d("surface_wd")  # None: the training weight decay
    surface_plan: str = _d("surface_plan")
    # surface and Hessian on the paper's training transform: Mixup/CutMix + label smoothing,
    # soft-target NLL (landscape.paper_loss); the paper budget also sets both wd to 0.05
    paper_loss: bool = _d("paper_loss")
    # Hessian (training images); the loss: the paper preset (LossSettings' default)
    spectrum_batches: int = _d("spectrum_batches")
    spectrum_batch_size: int = _d("spectrum_batch_size")
    top_k: int = _d("top_k")
    lanczos_tol: float = _d("lanczos_tol")
    lanczos_max_iter: int = _d("lanczos_max_iter")
    hessian_mode: str = _d("hessian_mode")
    hessian_wd: float | None = _d("hessian_wd")  # None: the training weight decay
    hessian_augment: bool = LOSS_PRESETS["paper"]["augment"]
    curvature_samples: int = _d("curvature_samples")
    curvature_batch_size: int = _d("curvature_batch_size")
    trace_products: int = _d("trace_products")
    density_probes: int = _d("density_probes")
    density_steps: int = _d("density_steps")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Budgets: what differs from the settings' defaults. quick, the CPU demo's, is the settings'
#: defaults themselves (so every command computes by default what `analyze` computes).
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
        from ..validate import read_toml
        doc = read_toml(toml_path, f"config file {toml_path}")
        doc = doc.get("analyze", doc)
        values.update(doc)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name: f for f in dataclasses.fields(AnalyzeConfig)}
    bad = sorted(set(values) - set(known))
    if bad:
        raise LandscapeError(f"unknown setting(s) {', '.join(bad)}; known: {', '.join(known)}")
    cfg = AnalyzeConfig(**values)
    hints = typing.get_type_hints(AnalyzeConfig)
    for name in known:  # type-check TOML and --set values
        v = getattr(cfg, name)
        if name in FROM_SETTINGS:
            cls, fname = FROM_SETTINGS[name]
            check_value(cls, fname, v, f"setting {name}")
            continue
        allowed = _allowed(hints[name])
        if not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed):
            raise LandscapeError(f"setting {name} must be "
                                 f"{' or '.join(t.__name__ for t in allowed)}, got {v!r}")
        if isinstance(v, float):  # NaN and inf pass no bound: refused here, by name
            check_number(f"setting {name}", v)
    if cfg.groups < 2:
        raise LandscapeError(f"setting groups must be >= 2, got {cfg.groups}")
    for name, (lo, strict, why) in LOWER_BOUNDS.items():
        v = getattr(cfg, name)
        if v is not None and not (v > lo if strict else v >= lo):
            raise LandscapeError(f"setting {name} must be {'>' if strict else '>='} {lo:g}, "
                                 f"got {v!r}{why}")
    for name, (lo, hi) in RANGES.items():
        if getattr(cfg, name) is not None:
            check_number(f"setting {name}", getattr(cfg, name), lo, hi)
    # each robustness protocol has its own amplitude: the other one's is refused, not ignored
    other = {"paper": "robustness_norm", "radial": "robustness_eps"}[cfg.robustness_protocol]
    if getattr(cfg, other) != getattr(AnalyzeConfig(), other):
        raise LandscapeError(f"setting {other} applies to the "
                             f"{'radial' if other == 'robustness_norm' else 'paper'} robustness "
                             f"protocol only, not to robustness_protocol = "
                             f"{cfg.robustness_protocol!r}")
    if 0 < cfg.trace_products < 6:
        raise LandscapeError(f"setting trace_products must be 0 (no trace) or >= 6 (Hutch++ "
                             f"needs 6 products at least), got {cfg.trace_products}")
    return cfg


def _allowed(hint: Any) -> tuple[type, ...]:
    import types
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    out = tuple(a for a in args if isinstance(a, type))
    return out + ((int,) if float in out else ())


#: Lower bounds of the budget settings (the keys not in FROM_SETTINGS, whose bounds live in
#: their settings class): name -> (bound, strict?, hint). A 0 that means something ("all
#: images", "no L2") is allowed; a 0 that has no meaning is refused here, before any work
#: (tests/test_set_zero.py runs every numeric key at 0).
_ALL = " (0 = all images)"
LOWER_BOUNDS: dict[str, tuple[float, bool, str]] = {
    "seed": (0, False, ""), "eval_samples": (0, False, _ALL), "surface_radius": (0, True, ""),
}
#: Closed ranges of budget settings whose meaning bounds them from above too.
RANGES: dict[str, tuple[float, float]] = {"fourier_min_freq": (0.0, 1.0),
                                          "groups": (2, 1_000_000)}
