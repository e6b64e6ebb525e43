"""One frozen, typed settings object per quantity: the only place its defaults live.

Each class holds the settings that define one quantity, each field with its type, default,
allowed values and a one-line doc (``field.metadata["doc"]``); building one validates it and a
bad value raises :class:`~landscape.errors.LandscapeError` in one line naming the field. The
commands take their argparse defaults from these classes (``default_of``), ``landscape analyze``
builds them from its budget (:mod:`landscape.analyze.config`), and result files record their
``to_dict()``. Torch-free, so ``--help`` needs no heavy import.

``landscape analyze``'s default budget is these defaults, so every command computes by default
what ``analyze`` does. The loss of the spectrum and curvature is a named preset
(:data:`LOSS_PRESETS`, chosen by :class:`LossSettings`): ``paper`` by default (the paper's
loss: NLL + wd * sum_p ||p||_2 with the checkpoint's training weight decay, on augmented
images, as ``losslandscape.ipynb`` and the spectrum code of xxxnell/how-do-vits-work do), or
``plain`` (the Hessian of the NLL on the images as given); the surface's ``wd``/``augment``
defaults are the paper preset's too.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import LandscapeError

CONFIRM_STEPS = 3  # Lanczos steps a converged top-k must survive (see curvature.lanczos)

# Where a count stops being meaningful (a bound of its own, before the memory estimate of
# check_memory): eigenvalues / Lanczos steps / SLQ probes (each keeps a vector of every
# parameter), Hessian-vector products, images, random planes and noise frequencies.
MAX_EIGENVALUES = 10_000
MAX_PRODUCTS = 1_000_000
MAX_IMAGES = 100_000_000
MAX_PLANES = 1_000
MAX_FREQS = 10_000
SEED_MAX = 2 ** 62 - 1  # seeds are offset; see landscape.validate.SEED_LIMIT


def setting(default: Any, doc: str, *, choices: tuple[Any, ...] | None = None,
            minimum: float | None = None, maximum: float | None = None) -> Any:
    """A settings field: default, doc, optional allowed values and bounds (inclusive). Every
    float is refused unless finite; ``maximum`` of a count is where it stops being meaningful
    (what a count would need in memory is checked by :func:`check_memory` once the model's
    size is known)."""
    return field(default=default, metadata={"doc": doc, "choices": choices, "minimum": minimum,
                                            "maximum": maximum})


def _types(annotation: Any) -> tuple[type, ...]:
    hint = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (
        annotation,)
    out: list[type] = []
    for h in hint:
        h = {"int": int, "float": float, "str": str, "bool": bool, "None": type(None)}.get(h, h)
        if isinstance(h, type):
            out.append(h)
    if float in out:
        out.append(int)  # 1 for 1.0
    return tuple(out)


class Settings:
    """Validation, docs and plain-dict export shared by every settings class."""

    QUANTITY: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            check_value(type(self), f.name, getattr(self, f.name),
                        f"{self.QUANTITY} setting {f.name}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def docs(cls) -> dict[str, str]:
        """{field: one-line doc}."""
        return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}  # type: ignore


def check_value(cls: type, name: str, v: Any, label: str | None = None) -> None:
    """Raise LandscapeError (one line, naming ``label``) unless ``v`` suits field ``name`` of
    settings class ``cls``: its type, allowed values, finiteness and bounds."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    label = label or f"{cls.QUANTITY} setting {name}"  # type: ignore[attr-defined]
    allowed = _types(typing.get_type_hints(cls)[name])
    if allowed and (not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed)):
        raise LandscapeError(f"{label} must be {' or '.join(t.__name__ for t in allowed)}, "
                             f"got {v!r}")
    choices = f.metadata.get("choices")
    if choices is not None and v not in choices:
        raise LandscapeError(f"{label} must be one of {', '.join(map(str, choices))}, got {v!r}")
    if v is not None and not isinstance(v, (str, bool)):
        check_number(label, v, f.metadata.get("minimum"), f.metadata.get("maximum"))


def check_number(label: str, v: float, minimum: float | None = None,
                 maximum: float | None = None) -> None:
    """Raise LandscapeError (one line naming ``label``) unless ``v`` is finite and in
    [minimum, maximum] (either bound may be None). Written so that NaN fails every test."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise LandscapeError(f"{label} must be a number, got {v!r}")
    if not math.isfinite(v):
        raise LandscapeError(f"{label} must be a finite number, got {v!r}")
    if minimum is not None and not (v >= minimum):
        raise LandscapeError(f"{label} must be >= {minimum:g}, got {v!r}")
    if maximum is not None and not (v <= maximum):
        raise LandscapeError(f"{label} must be <= {maximum:,}, got {v!r}"
                             + (" (larger counts are not meaningful and would not fit in memory "
                                "or time)" if isinstance(v, int) else ""))


def memory_needed(settings: Settings, n_params: int) -> dict[str, int]:
    """Bytes a count of ``settings`` needs at least for a model of ``n_params`` parameters,
    per field (float64 vectors of every parameter: the Lanczos basis keeps ``k`` + confirm + 1,
    Hutch++ keeps 2/3 of its products, SLQ keeps ``(steps + 1) * probes``; see
    :mod:`landscape.curvature.lanczos`, ``trace``, ``density``)."""
    v = 8 * max(int(n_params), 1)
    if isinstance(settings, SpectrumSettings):
        return {"k": (settings.k + settings.confirm + 1) * v}
    if isinstance(settings, CurvatureSettings):
        return {"top_k": (settings.top_k + settings.lanczos_confirm + 1) * v
                if settings.top_k else 0,
                "trace_products": (2 * settings.trace_products // 3 + 1) * v
                if settings.trace_products else 0,
                "density_probes": (settings.density_steps + 1) * settings.density_probes * v}
    return {}


def check_memory(settings: Settings, n_params: int, names: dict[str, str] | None = None,
                 available: int | None = None) -> None:
    """Refuse (one line) a count of ``settings`` that would need more memory than the machine
    has available (:func:`memory_needed`; ``available`` defaults to what /proc/meminfo says).
    ``names`` maps field names to the names the user gave (``analyze``'s ``top_k``...)."""
    from .validate import available_memory, gib
    have = available if available is not None else available_memory()
    if have is None:
        return
    for name, need in memory_needed(settings, n_params).items():
        if need > have:
            shown = (names or {}).get(name, f"{settings.QUANTITY} setting {name}")
            value = getattr(settings, name)
            raise LandscapeError(f"{shown} = {value} needs about {gib(need)} of memory for this "
                                 f"model ({n_params:,} parameters) but {gib(have)} is available; "
                                 "lower it")


def default_of(cls: type, name: str) -> Any:
    """The default of field ``name`` of settings class ``cls`` (for argparse defaults)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default
    raise KeyError(f"{cls.__name__} has no field {name}")


@dataclass(frozen=True)
class SpectrumSettings(Settings):
    """Top-k Hessian eigenvalues per mini-batch (the paper's max-eigenvalue spectrum, Fig. 4)."""

    QUANTITY: ClassVar[str] = "spectrum"
    k: int = setting(5, "eigenvalues per mini-batch (the paper: top-5)", minimum=1,
                     maximum=MAX_EIGENVALUES)
    which: str = setting("LM", "LM largest magnitude (the paper's), LA largest, SA smallest",
                         choices=("LM", "LA", "SA"))
    batch_size: int = setting(16, "images per mini-batch (the paper: 16)", minimum=1,
                             maximum=MAX_IMAGES)
    n_batches: int | None = setting(16, "mini-batches (0 or None: subset * N / batch_size, the "
                                    "paper's budget)", minimum=0, maximum=MAX_IMAGES)
    subset: float = setting(0.1, "fraction of the data the batches cover when n_batches is None",
                            minimum=0.0, maximum=1.0)
    seed: int = setting(0, "batches, augmentation and start vectors", minimum=0,
                     maximum=SEED_MAX)
    wd: float = setting(0.0, "L2 weight decay added to the loss", minimum=0.0)
    l2: str = setting("half", "L2 convention: half = wd/2 ||theta||^2, paper = wd * sum_p "
                      "||p||_2 (the paper's code)", choices=("half", "paper"))
    augment: bool = setting(False, "pad-and-crop + flip each batch (fixed seed per batch)")
    tol: float = setting(1e-3, "Lanczos stop: Ritz residual <= tol * |eigenvalue|", minimum=0.0)
    max_iter: int | None = setting(100, "cap on Hessian-vector products per batch", minimum=1,
                                  maximum=MAX_PRODUCTS)
    method: str = setting("lanczos", "eigen solver method", choices=("lanczos",))
    backend: str = setting("landscape", "ours (Lanczos) or pyhessian's power iteration",
                           choices=("landscape", "pyhessian"))
    mode: str = setting("auto", "Hessian-vector product mode (auto: cached choice, else the "
                        "measured rule, else measured in the first products)",
                        choices=("auto", "double_backward", "forward_over_reverse"))
    start: str = setting("auto", "Lanczos start vector", choices=("auto", "gradient", "random"))
    negative: bool = setting(True, "also the most negative eigenvalue of every batch")
    warm_start: bool = setting(False, "start from the previous batch's Ritz vectors")
    segment: int = setting(16, "warm-start chain length", minimum=1, maximum=MAX_IMAGES)
    confirm: int = setting(CONFIRM_STEPS, "Lanczos steps a converged top-k must survive",
                           minimum=0, maximum=MAX_EIGENVALUES)
    curvature: str = setting("hessian", "the Hessian, or the GGN / empirical Fisher in its place",
                             choices=("hessian", "ggn", "ef"))

    def to_dict(self) -> dict[str, Any]:
        """The settings; ``curvature`` only when it is not the Hessian (files written before the
        GGN/EF existed keep their identity and resume)."""
        d = dataclasses.asdict(self)
        if d["curvature"] == "hessian":
            del d["curvature"]
        return d


#: The named presets of the loss (spectrum, curvature, surface); analyze uses ``paper``.
#: ``wd`` None: the checkpoint's training weight decay.
LOSS_PRESETS: dict[str, dict[str, Any]] = {
    "plain": {},
    "paper": {"l2": "paper", "augment": True, "wd": None},
}
SPECTRUM_PRESETS = LOSS_PRESETS


@dataclass(frozen=True)
class LossSettings(Settings):
    """The loss whose curvature the spectrum and the curvature estimates take: a named preset
    (:data:`LOSS_PRESETS`; ``paper``, as ``landscape analyze``, by default) and what overrides
    it. Resolved for one checkpoint by :func:`landscape.runners.loss.resolve_loss`."""

    QUANTITY: ClassVar[str] = "loss"
    preset: str = setting("paper", "plain = NLL on the images as given (wd 0, half L2, no "
                          "augmentation); paper = NLL + wd * sum_p ||p||_2 with the "
                          "checkpoint's training weight decay, on augmented images",
                          choices=tuple(LOSS_PRESETS))
    wd: float | None = setting(None, "L2 weight decay (None: the preset's; paper: the "
                               "checkpoint's training weight decay, 0 when unknown)", minimum=0.0)
    l2: str = setting("", "L2 convention ('': the preset's; see SpectrumSettings.l2)",
                      choices=("", "half", "paper"))
    augment: bool | None = setting(None, "pad-and-crop + flip each batch (None: the preset's)")
    paper_loss: bool = setting(False, "the paper's training transform (Mixup/CutMix, label "
                               "smoothing, soft-target NLL; landscape.paper_loss)")


@dataclass(frozen=True)
class ImagesSettings(Settings):
    """The test images the feature analyses (Fourier, variance, robustness, CKA, lesion) run
    the model on: how many (a seeded, class-stratified subset) and the forward batch size."""

    QUANTITY: ClassVar[str] = "images"
    samples: int = setting(500, "test images (a seeded stratified subset; 0: all)", minimum=0,
                           maximum=MAX_IMAGES)
    batch_size: int = setting(250, "images per forward pass (robustness: also per noise draw)",
                              minimum=1, maximum=MAX_IMAGES)


@dataclass(frozen=True)
class CurvatureSettings(Settings):
    """Extreme eigenvalues, Hutch++/Hutchinson trace and SLQ density of the loss averaged over
    ``samples`` images. 0 products/probes/k: that estimate is not taken."""

    QUANTITY: ClassVar[str] = "curvature"
    samples: int = setting(128, "images averaged in the operator (seeded permutation)", minimum=1,
                          maximum=MAX_IMAGES)
    batch_size: int = setting(256, "images per batch of the operator", minimum=1,
                             maximum=MAX_IMAGES)
    seed: int = setting(0, "images, augmentation, probes and start vectors", minimum=0,
                     maximum=SEED_MAX)
    wd: float = setting(0.0, "L2 weight decay composed with the Hessian", minimum=0.0)
    l2: str = setting("half", "L2 convention (see SpectrumSettings.l2)", choices=("half", "paper"))
    mode: str = setting("auto", "Hessian-vector product mode (as SpectrumSettings.mode)",
                        choices=("auto", "double_backward", "forward_over_reverse"))
    top_k: int = setting(5, "top (LM) and bottom (SA) eigenvalues (0: none)", minimum=0,
                         maximum=MAX_EIGENVALUES)
    lanczos_tol: float = setting(1e-3, "Ritz residual <= tol * |eigenvalue|", minimum=0.0)
    lanczos_max_iter: int | None = setting(100, "cap on products per eigen-problem", minimum=1,
                                          maximum=MAX_PRODUCTS)
    lanczos_confirm: int = setting(CONFIRM_STEPS, "steps a converged top-k must survive",
                                   minimum=0, maximum=MAX_EIGENVALUES)
    trace_products: int = setting(12, "Hutch++ products (0: no trace)", minimum=0,
                                  maximum=MAX_PRODUCTS)
    hutchinson_probes: int = setting(0, "plain Hutchinson probes (0: none)", minimum=0,
                                     maximum=MAX_PRODUCTS)
    density_probes: int = setting(1, "SLQ probes (0: no density)", minimum=0,
                                  maximum=MAX_EIGENVALUES)
    density_steps: int = setting(30, "Lanczos steps per SLQ probe", minimum=1,
                                 maximum=MAX_EIGENVALUES)
    sigma: float | None = setting(None, "SLQ Gaussian width (None: 1% of the Ritz range)",
                                  minimum=0.0)


@dataclass(frozen=True)
class SurfaceSettings(Settings):
    """A filter-normalized random-plane loss surface (Li et al.; the paper's Fig. 1)."""

    QUANTITY: ClassVar[str] = "surface"
    grid: str = setting("-1:1:9", "x coordinates MIN:MAX:NUM")
    ygrid: str = setting("-1:1:9", "y coordinates MIN:MAX:NUM ('': a 1-D curve)")
    norm: str = setting("filter", "direction normalization (filter: Li et al.; hdvw: the paper "
                        "code's dim-0)", choices=("filter", "hdvw", "layer", "model", "none"))
    planes: int = setting(3, "random planes per model (direction seeds differ)", minimum=1,
                         maximum=MAX_PLANES)
    radii: str = setting("0.25,0.5,0.75,1.0", "sharpness read at these radii")
    augment: bool = setting(LOSS_PRESETS["paper"]["augment"],
                            "the training transform (pad-crop + flip), fixed seed")
    wd: float | None = setting(LOSS_PRESETS["paper"]["wd"],
                               "L2 weight decay (None: the checkpoint's training wd)",
                               minimum=0.0)
    samples: int = setting(500, "training images the loss is averaged over (a seeded "
                           "stratified subset; 0: all); the caller selects them", minimum=0,
                           maximum=MAX_IMAGES)
    plan: str = setting("", "'' = measured per file, or KEY=VALUE,... pinned plan keys")


@dataclass(frozen=True)
class FourierSettings(Settings):
    """Relative log amplitude of feature maps (fourier_analysis.ipynb)."""

    QUANTITY: ClassVar[str] = "fourier"
    readout: str = setting("paper", "diagonal read-out: paper (notebook) or nyquist",
                           choices=("paper", "nyquist"))
    eps: float = setting(1e-6, "added to |FFT| before the log (the notebook's 1e-6)",
                         minimum=0.0)
    include_input: bool = setting(True, "the input image as the depth-0 reference")


@dataclass(frozen=True)
class VarianceSettings(Settings):
    """Feature-map variance per block (featuremap_variance.ipynb)."""

    QUANTITY: ClassVar[str] = "variance"
    ddof: int = setting(1, "1 = unbiased (torch default, as the paper), 0 = population",
                        choices=(0, 1))
    include_input: bool = setting(True, "the input image as the depth-0 reference")


#: Each robustness protocol's own defaults: band half-width (units of pi) and base noise. paper:
#: ops/adversarial.py's FreqAttack (s = 0.2 rad = 0.2/pi, sign noise); radial: ours.
ROBUSTNESS_PROTOCOLS: dict[str, dict[str, Any]] = {
    "paper": {"width": 0.2 / math.pi, "base": "sign"},
    "radial": {"width": 0.05, "base": "gaussian"},
}


@dataclass(frozen=True)
class RobustnessSettings(Settings):
    """Accuracy under band-limited noise (ops/adversarial.py FreqAttack; Fig. 2b)."""

    QUANTITY: ClassVar[str] = "robustness"
    protocol: str = setting("paper", "paper: FreqAttack square band, eps * sign noise; radial: "
                            "radial band, fixed L2 norm per image",
                            choices=tuple(ROBUSTNESS_PROTOCOLS))
    freqs: int = setting(6, "noise frequencies evenly in [0, 1] (units of pi)", minimum=1,
                        maximum=MAX_FREQS)
    eps: float = setting(0.5, "paper protocol: sign-noise amplitude (normalized pixels)",
                         minimum=0.0)
    norm: float = setting(5.0, "radial protocol: L2 norm of the noise per image", minimum=0.0)
    width: float = setting(0.0, "band half-width, units of pi (0: the protocol's default)",
                           minimum=0.0, maximum=1.0)
    base: str = setting("", "base noise: sign or gaussian ('' : the protocol's default)",
                        choices=("", "sign", "gaussian"))


@dataclass(frozen=True)
class CKASettings(Settings):
    """Mini-batch linear CKA between block outputs (Nguyen et al. 2021; Fig. 10)."""

    QUANTITY: ClassVar[str] = "cka"
    batch_size: int = setting(50, "images per CKA mini-batch", minimum=4,
                             maximum=MAX_IMAGES)
    estimator: str = setting("unbiased", "HSIC estimator per batch",
                             choices=("unbiased", "biased"))


@dataclass(frozen=True)
class LesionSettings(Settings):
    """Accuracy with one residual branch removed at a time (Fig. 10)."""

    QUANTITY: ClassVar[str] = "lesion"
    samples: int = setting(1000, "test images (0: all)", minimum=0,
                          maximum=MAX_IMAGES)


SETTINGS: dict[str, type] = {c.QUANTITY: c for c in (
    SpectrumSettings, CurvatureSettings, SurfaceSettings, FourierSettings, VarianceSettings,
    RobustnessSettings, CKASettings, LesionSettings, LossSettings, ImagesSettings)}

__all__ = ["CKASettings", "CONFIRM_STEPS", "CurvatureSettings", "FourierSettings",
           "ImagesSettings", "LOSS_PRESETS", "LesionSettings", "LossSettings",
           "ROBUSTNESS_PROTOCOLS", "RobustnessSettings",
           "SETTINGS", "SPECTRUM_PRESETS", "Settings", "SpectrumSettings", "SurfaceSettings",
           "VarianceSettings", "check_memory", "check_number", "check_value", "default_of",
           "memory_needed", "setting"]
