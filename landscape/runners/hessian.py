"""The Hessian runners: the per-mini-batch spectrum (:func:`run_spectrum`) and the curvature of
the loss averaged over a set of images (:func:`run_curvature`: extreme eigenvalues, Hutch++ and
Hutchinson trace, SLQ density), called by ``landscape hessian`` and ``landscape analyze`` alike
(see :mod:`landscape.runners`).

Both take the training images chosen by :func:`hessian_pool` (the same rule on both paths), the
quantity's settings and a :class:`~landscape.settings.LossSettings` (resolved for the checkpoint
by :func:`landscape.runners.loss.resolve_loss`). The loss fixes the settings' ``wd``, ``l2``
and ``augment``; a settings object that sets them itself is refused (pass them in the loss). A
result is identified by :func:`hessian_key`: the dataset, the seed, the resolved settings'
``to_dict()``, the augmentation and, for the spectrum, the size of the pool.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import LandscapeError
from ..settings import CurvatureSettings, LossSettings, SpectrumSettings, check_memory
from .features import Run
from .loss import Loss, resolve_loss

#: The fields a loss sets in the spectrum's and the curvature's settings.
LOSS_FIELDS = {"spectrum": ("wd", "l2", "augment"), "curvature": ("wd", "l2")}


def hessian_pool(train: Any, spectrum: SpectrumSettings, curvature: CurvatureSettings,
                 seed: int) -> Any:
    """The training images (an ImageData) both Hessian runners draw from: a seeded,
    class-stratified subset (seed ``seed + 2``) of ``max(curvature.samples, n_batches *
    batch_size)`` images, or all of ``train`` when ``spectrum.n_batches`` is 0/None (the
    spectrum then covers ``spectrum.subset`` of it)."""
    from ..data import stratified_subset
    n = (max(curvature.samples, spectrum.n_batches * spectrum.batch_size)
         if spectrum.n_batches else len(train))
    return stratified_subset(train, n, seed + 2)


def hessian_key(what: str, data: Any, seed: int, settings: Mapping[str, Any], transform: str,
                **extra: Any) -> dict[str, Any]:
    """The settings that identify a spectrum or curvature result (see module doc)."""
    return {"data": data.name, "seed": int(seed), "subset": "stratified", what: dict(settings),
            **extra, "augment": transform}


def _with_loss(what: str, settings: Any, lo: Loss) -> Any:
    """``settings`` with the resolved loss's fields; refuses settings that set them."""
    cls = type(settings)
    fields = LOSS_FIELDS[what]
    own = [f for f in fields if getattr(settings, f) != getattr(cls(), f)]
    if own:
        raise LandscapeError(f"{what} setting {', '.join(own)} is set by the loss: pass it in "
                             "LossSettings (wd, l2, augment) instead")
    values = {"wd": lo.wd, "l2": lo.l2, "augment": lo.augment is not None}
    return dataclasses.replace(settings, **{f: values[f] for f in fields})


def _meta(info: Any, store: Any, data: Any, loss: LossSettings) -> dict[str, Any]:
    sha = getattr(store, "checkpoint_sha256", None) or getattr(info, "sha256", None)
    meta: dict[str, Any] = {"checkpoint_sha256": sha, "dataset": data.name, "split": data.split,
                            "n_data": len(data), "data_indices_seed": data.seed,
                            "loss": loss.to_dict()}
    if info is not None:
        meta.update(checkpoint=str(info.path), model=info.model)
    return meta


def _params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def run_spectrum(model: Any, data: Any, settings: SpectrumSettings, store: Any, *,
                 info: Any = None, loss: LossSettings | None = None,
                 resolved: Loss | None = None, names: Mapping[str, str] | None = None,
                 progress: bool = False, name: str = "spectrum.h5") -> Run:
    """Top-k eigenvalues (and the most negative one) of the curvature of each mini-batch
    (:func:`landscape.curvature.spectrum.max_eigenvalue_spectrum`) drawn from ``data`` (the pool of
    :func:`hessian_pool`), of the loss ``loss`` (default ``LossSettings()``: the paper preset;
    ``resolved``: already resolved by the caller), through ``store`` as ``name`` (resumable: an
    interrupted file is continued). ``names``: how the caller calls the settings in a refusal
    (``{"k": "--top-k"}``). ``extra`` of the run: ``wd``, ``l2``, ``augment`` (the transform)
    and ``recipe_source``. Call from every rank under torchrun."""
    from ..curvature import check_curvature_options
    from ..curvature.spectrum import SpectrumResult, max_eigenvalue_spectrum
    check_curvature_options(settings.curvature, backend=settings.backend, mode=settings.mode)
    loss = loss or LossSettings()
    lo = resolved or resolve_loss(loss, info, data, settings.seed)
    cfg = _with_loss("spectrum", settings, lo)
    cfg = dataclasses.replace(cfg, n_batches=cfg.n_batches or None)  # 0 and None: the subset
    check_memory(cfg, _params(model), dict(names or {}))
    key = hessian_key("spectrum", data, settings.seed, cfg.to_dict(), lo.transform,
                      n_pool=len(data))
    meta = _meta(info, store, data, loss)
    res, reused = store.get(name, key, lambda p: max_eigenvalue_spectrum(
        model, lo.images, lo.labels, cfg, out=p, augment=lo.augment, progress=progress,
        meta=meta), SpectrumResult.load, collective=True, resumable=True)
    return Run(res, Path(store.folder) / name, bool(reused),
               {"wd": lo.wd, "l2": lo.l2, "augment": lo.transform,
                "recipe_source": lo.recipe_source})


def run_curvature(model: Any, data: Any, settings: CurvatureSettings, store: Any, *,
                  info: Any = None, loss: LossSettings | None = None,
                  resolved: Loss | None = None, kind: str = "hessian",
                  names: Mapping[str, str] | None = None,
                  say: Callable[[str], None] | None = None, name: str = "curvature.json",
                  density_name: str = "density.h5") -> Run:
    """Extreme eigenvalues, Hutch++/Hutchinson trace and SLQ density of the curvature (``kind``:
    hessian, ggn or ef) of the loss ``loss`` averaged over ``settings.samples`` images of
    ``data`` (:func:`landscape.curvature.estimates.curvature_estimates`), through ``store`` as
    ``name`` (a JSON dict) with the density as its companion ``density_name`` (when
    ``settings.density_probes``; it is checked whenever the result is reused). ``extra``: as
    :func:`run_spectrum`'s, plus ``density`` (the density file or None). Call from every rank
    under torchrun."""
    from .. import distributed as D
    from ..curvature import check_curvature_options
    from ..curvature.estimates import curvature_estimates
    from ..curvature.results import DensityResult
    from ..store.provenance import read_json, write_json
    check_curvature_options(kind, mode=settings.mode)
    loss = loss or LossSettings()
    lo = resolved or resolve_loss(loss, info, data, settings.seed)
    cs = _with_loss("curvature", settings, lo)
    check_memory(cs, _params(model), dict(names or {}))
    extra = {"kind": kind} if kind != "hessian" else {}  # the Hessian's keys as they always were
    key = hessian_key("curvature", data, settings.seed, dataclasses.asdict(cs), lo.transform,
                      **extra)
    with_density = cs.density_probes > 0
    meta = _meta(info, store, data, loss)

    def compute(p: Path) -> dict[str, Any]:
        res, dens, op_config = curvature_estimates(model, lo.images, lo.labels, cs,
                                                   augment=lo.augment, distributed=True, say=say,
                                                   curvature=kind)
        res.update(wd=lo.wd, l2=cs.l2, augment=lo.transform, density=dens is not None,
                   config={"identity": store.identity(key), "meta": meta})
        if D.is_writer():
            dens_file = p.with_name(density_name)
            if dens is not None:
                dens.save(dens_file, config=json.dumps(op_config, default=str), meta=meta)
            else:  # density_probes = 0: none of an earlier run left to be drawn
                dens_file.unlink(missing_ok=True)
            write_json(p, res)
        return res

    def load(p: Path) -> dict[str, Any]:
        if with_density:
            DensityResult.load(p.with_name(density_name))  # a torn file fails here, named
        return read_json(p)

    res, reused = store.get(name, key, compute, load,
                            companions=(density_name,) if with_density else (), collective=True)
    folder = Path(store.folder)
    return Run(res, folder / name, bool(reused),
               {"wd": lo.wd, "l2": lo.l2, "augment": lo.transform,
                "recipe_source": lo.recipe_source,
                "density": folder / density_name if with_density else None})


__all__ = ["LOSS_FIELDS", "hessian_key", "hessian_pool", "run_curvature", "run_spectrum"]
