"""The feature-map runners (Fourier, variance, robustness, CKA, lesion): one function per
quantity, called by ``landscape fourier|variance|robustness|cka|lesion`` and by
``landscape analyze`` alike (see :mod:`landscape.runners`).

A result is identified by :func:`feature_key`: the analysis, the images (dataset, split, how
many, the seed), the forward batch size, the architecture and the quantity's settings
(``to_dict()``); the identity is stored in ``result.config["identity"]`` by both paths.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..settings import (
    ROBUSTNESS_PROTOCOLS,
    CKASettings,
    FourierSettings,
    ImagesSettings,
    LesionSettings,
    RobustnessSettings,
    VarianceSettings,
)


@dataclass
class Run:
    """What a runner returns: the result object, the file it is stored in, whether a stored
    result was reused, and what else the caller reports (e.g. the surface's effective wd)."""

    result: Any
    file: Path
    reused: bool
    extra: dict[str, Any] = field(default_factory=dict)


def feature_key(analysis: str, data: Any, seed: int, batch_size: int, info: Any,
                model: Any, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that identify a feature result (see module doc)."""
    arch = getattr(info, "model", None) or type(model).__name__
    return {"analysis": analysis, "data": data.name, "split": data.split, "samples": len(data),
            "seed": int(seed), "batch_size": int(batch_size), "model": arch, **settings}


def _checkpoint(info: Any) -> dict[str, Any] | None:
    if info is None:
        return None
    return {"path": str(info.path), "sha256": info.sha256, "model": info.model,
            "model_kwargs": info.model_kwargs}


def _run(analysis: str, ext: str, load: Callable[[Path], Any], compute: Callable[[], Any],
         key: dict[str, Any], store: Any, info: Any, seed: int, stem: str | None,
         label: str) -> Run:
    """Through ``store``: the stored result when its identity matches ``key``, else
    ``compute()`` with the identity, label and checkpoint recorded in its ``config``."""

    def make(path: Path) -> Any:
        res = compute()
        res.config.update(identity=store.identity(key), label=label)
        if info is not None:
            res.config["checkpoint"] = _checkpoint(info)
        if getattr(res, "seed", None) is None:
            res.seed = int(seed)
        res.save(path)
        return res

    name = f"{stem or analysis}.{ext}"
    res, reused = store.get(name, key, make, load)
    return Run(res, Path(store.folder) / name, bool(reused))


def run_fourier(model: Any, data: Any, settings: FourierSettings, store: Any, *,
                info: Any = None, seed: int = 0, batch_size: int = ImagesSettings.batch_size,
                progress: bool = False,
                stem: str | None = None, label: str = "") -> Run:
    """Relative log amplitude of every block's feature map
    (:func:`landscape.features.fourier.fourier_analysis`) on ``data``."""
    from ..features.fourier import FourierResult, fourier_analysis
    s = settings.to_dict()
    key = feature_key("fourier", data, seed, batch_size, info, model, s)
    return _run("fourier", "h5", FourierResult.load, lambda: fourier_analysis(
        model, data, batch_size=batch_size, progress=progress, **s), key, store, info, seed, stem,
        label)


def run_variance(model: Any, data: Any, settings: VarianceSettings, store: Any, *,
                 info: Any = None, seed: int = 0, batch_size: int = ImagesSettings.batch_size,
                 progress: bool = False,
                 stem: str | None = None, label: str = "") -> Run:
    """Feature-map variance per block (:func:`landscape.features.variance.variance_analysis`)."""
    from ..features.variance import VarianceResult, variance_analysis
    s = settings.to_dict()
    key = feature_key("variance", data, seed, batch_size, info, model, s)
    return _run("variance", "json", VarianceResult.load, lambda: variance_analysis(
        model, data, batch_size=batch_size, progress=progress, **s), key, store, info, seed,
        stem, label)


def robustness_frequencies(settings: RobustnessSettings,
                           freqs: Sequence[float] | None = None) -> list[float]:
    """The noise frequencies (units of π): ``freqs`` when given, else ``settings.freqs``
    evenly in [0, 1]; rounded to 12 digits, so a list typed on the command line (``0.3``) and
    the same count (``linspace``'s ``0.30000000000000004``) are one result."""
    import numpy as np
    given = np.linspace(0, 1, settings.freqs) if freqs is None else freqs
    return [round(float(f), 12) for f in given]


def robustness_identity(settings: RobustnessSettings,
                        freqs: Sequence[float] | None = None) -> dict[str, Any]:
    """The effective noise settings: the protocol, its frequencies, band width and base noise
    (the protocol's defaults where the settings leave them 0/""), and only the protocol's own
    amplitude (``eps`` for paper, ``noise_norm`` for radial)."""
    own = ROBUSTNESS_PROTOCOLS[settings.protocol]
    out: dict[str, Any] = {"protocol": settings.protocol,
                           "freqs": robustness_frequencies(settings, freqs),
                           "width": settings.width or own["width"],
                           "base": settings.base or own["base"]}
    if settings.protocol == "paper":
        out["eps"] = settings.eps
    else:
        out["noise_norm"] = settings.norm
    return out


def run_robustness(model: Any, data: Any, settings: RobustnessSettings, store: Any, *,
                   info: Any = None, seed: int = 0, batch_size: int = ImagesSettings.batch_size,
                   freqs: Sequence[float] | None = None, progress: bool = False,
                   stem: str | None = None, label: str = "") -> Run:
    """Accuracy under band-limited noise per frequency
    (:func:`landscape.features.robustness.noise_robustness`; the noise is seeded by ``seed``
    and drawn batch after batch, so ``batch_size`` is part of the result). ``freqs`` overrides
    ``settings.freqs`` (a count) with explicit frequencies."""
    from ..features.robustness import RobustnessResult, noise_robustness
    s = robustness_identity(settings, freqs)
    key = feature_key("robustness", data, seed, batch_size, info, model, s)
    return _run("robustness", "json", RobustnessResult.load, lambda: noise_robustness(
        model, data, freqs=s["freqs"], width=s["width"], norm=settings.norm, seed=seed,
        base=s["base"], batch_size=batch_size, progress=progress, label=label,
        protocol=s["protocol"], eps=settings.eps), key, store, info, seed, stem, label)


def run_cka(model: Any, data: Any, settings: CKASettings, store: Any, *, info: Any = None,
            seed: int = 0, progress: bool = False, stem: str | None = None,
            label: str = "") -> Run:
    """Mini-batch linear CKA between block outputs
    (:func:`landscape.features.similarity.cka_analysis`): the HSIC is averaged over mini-batches
    of ``settings.batch_size`` images, which is also the forward batch."""
    from ..features.similarity import CKAResult, cka_analysis
    key = feature_key("cka", data, seed, settings.batch_size, info, model,
                      {"estimator": settings.estimator})
    return _run("cka", "json", CKAResult.load, lambda: cka_analysis(
        model, data, batch_size=settings.batch_size, estimator=settings.estimator,
        progress=progress), key, store, info, seed, stem, label)


def run_lesion(model: Any, data: Any, settings: LesionSettings, store: Any, *,
               info: Any = None, seed: int = 0, batch_size: int = ImagesSettings.batch_size,
               progress: bool = False,
               stem: str | None = None, label: str = "") -> Run:
    """Accuracy with each residual branch removed in turn
    (:func:`landscape.features.lesion.lesion_study`) on ``data`` (the caller selects
    ``settings.samples`` images; the key records how many there are)."""
    from ..features.lesion import LesionResult, lesion_study
    del settings  # its one field, samples, is the size of ``data``
    key = feature_key("lesion", data, seed, batch_size, info, model, {})
    return _run("lesion", "json", LesionResult.load, lambda: lesion_study(
        model, data, batch_size=batch_size, progress=progress), key, store, info, seed, stem,
        label)


#: analysis -> (runner, settings class, file extension)
FEATURE_RUNNERS: dict[str, tuple[Callable[..., Run], type, str]] = {
    "fourier": (run_fourier, FourierSettings, "h5"),
    "variance": (run_variance, VarianceSettings, "json"),
    "robustness": (run_robustness, RobustnessSettings, "json"),
    "cka": (run_cka, CKASettings, "json"),
    "lesion": (run_lesion, LesionSettings, "json"),
}

__all__ = ["FEATURE_RUNNERS", "Run", "feature_key", "robustness_frequencies",
           "robustness_identity", "run_cka", "run_fourier", "run_lesion", "run_robustness",
           "run_variance"]
