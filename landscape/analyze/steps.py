"""The steps of ``landscape analyze``: one step per analysis (raw result, reused?, figures) and
the figures comparing models (the summary numbers are :mod:`landscape.analyze.summarize`'s).

Every analysis is computed by its runner (:mod:`landscape.runners`,
the ones the commands call) from settings objects built from the budget
(:func:`surface_settings`, :func:`feature_settings`, :func:`spectrum_settings`,
:func:`curvature_settings`, :func:`loss_settings`), through the analysis cache of
:mod:`landscape.analyze.run`.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import LandscapeError
from .config import AnalyzeConfig


def _say(progress: bool, text: str) -> None:
    """One progress line on stderr (so no phase of a run is silent)."""
    if progress:
        print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# one runner per analysis: (result, reused, {section: [figure files]})
# ---------------------------------------------------------------------------------------------
def spectrum_settings(cfg: AnalyzeConfig) -> Any:
    """The :class:`~landscape.settings.SpectrumSettings` of ``cfg`` (the loss's fields are the
    runner's, from :func:`loss_settings`)."""
    from ..settings import SpectrumSettings
    return SpectrumSettings(k=cfg.top_k, batch_size=cfg.spectrum_batch_size,
                            n_batches=cfg.spectrum_batches, seed=cfg.seed, tol=cfg.lanczos_tol,
                            max_iter=cfg.lanczos_max_iter, mode=cfg.hessian_mode)


def curvature_settings(cfg: AnalyzeConfig) -> Any:
    """The :class:`~landscape.settings.CurvatureSettings` of ``cfg`` (one operator averaged
    over ``curvature_samples`` images; its eigenvalues, tolerance, cap and product mode are the
    spectrum's ``top_k``, ``lanczos_tol``, ``lanczos_max_iter``, ``hessian_mode``)."""
    from ..settings import CurvatureSettings
    return CurvatureSettings(
        samples=cfg.curvature_samples, batch_size=cfg.curvature_batch_size, seed=cfg.seed,
        mode=cfg.hessian_mode, top_k=cfg.top_k, lanczos_tol=cfg.lanczos_tol,
        lanczos_max_iter=cfg.lanczos_max_iter, trace_products=cfg.trace_products,
        density_probes=cfg.density_probes, density_steps=cfg.density_steps)


def loss_settings(cfg: AnalyzeConfig) -> Any:
    """The :class:`~landscape.settings.LossSettings` of the Hessian step: the paper preset with
    ``hessian_wd`` (None: the training weight decay), ``hessian_augment`` and ``paper_loss``."""
    from ..settings import LossSettings
    return LossSettings(preset="paper", wd=cfg.hessian_wd, augment=cfg.hessian_augment,
                        paper_loss=cfg.paper_loss)


def _run_hessian(net, label, cfg, cache, key, sets, fig_dir, progress, info=None, tag=""):
    """Spectrum (mini-batches sharded over torchrun ranks) and curvature of the averaged loss
    (its batches sharded) through the Hessian runners (:func:`landscape.runners.run_spectrum`,
    :func:`~landscape.runners.run_curvature`, the ones ``landscape hessian`` calls); every rank
    calls this, the writer alone writes and plots."""
    from .. import distributed as D
    from ..reporting.plots.hessian import plot_slq_density
    from ..runners import resolve_loss, run_curvature, run_spectrum
    from ..settings import check_memory
    pool, loss, cs = sets["hessian"], loss_settings(cfg), curvature_settings(cfg)
    names = {k: f"setting {k}" for k in ("top_k", "trace_products", "density_probes")}
    check_memory(cs, sum(p.numel() for p in net.parameters()), names)  # before any work
    lo = resolve_loss(loss, info, pool, cfg.seed)  # once for both runners
    spec = run_spectrum(net, pool, spectrum_settings(cfg), cache, info=info, loss=loss,
                        resolved=lo, names={"k": "setting top_k"}, progress=progress)
    curv = run_curvature(net, pool, cs, cache, info=info, loss=loss, resolved=lo, names=names,
                         say=lambda what: _say(progress and D.is_writer(), f"{tag} {what}"))
    files = []
    if curv.extra["density"] is not None and D.is_writer():
        files = plot_slq_density(curv.extra["density"], fig_dir / "hessian" / label / "density",
                                 title=label)
    return {"spectrum": spec.result, "curvature": curv.result, "spectrum_file": spec.file,
            "wd": lo.wd, "augment": lo.transform, "recipe_source": lo.recipe_source}, \
        spec.reused and curv.reused, {"hessian": files}


def surface_plan(text: str) -> dict[str, Any]:
    """``surface_plan`` ("" = measured once per file, or ``KEY=VALUE,...`` over the plan keys
    of :data:`landscape.surface.plan.PLAN_KEYS`) as keyword arguments of ``compute_surface``.
    A pinned plan makes runs on other machines or rank counts compute bitwise the same."""
    from ..surface.plan import PLAN_KEYS
    out: dict[str, Any] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        k, sep, v = item.partition("=")
        k, v = k.strip(), v.strip().lower()
        if not sep or k not in PLAN_KEYS or k == "compile":
            raise LandscapeError(f"setting surface_plan: expected KEY=VALUE,... with KEY one of "
                                 f"{', '.join(x for x in PLAN_KEYS if x != 'compile')}; "
                                 f"got {item!r}")
        if v in ("true", "false"):
            out[k] = v == "true"
        else:
            try:
                out[k] = int(v)
            except ValueError:
                raise LandscapeError(f"setting surface_plan: {k} must be an integer or "
                                     f"true/false, got {v!r}") from None
    return out


def _run_surface(net, label, cfg, cache, key, sets, fig_dir, progress, info=None, tag=""):
    """``surface_planes`` random planes through the surface runner
    (:func:`landscape.runners.run_surface`; direction seeds ``seed + 2i``, ``seed + 2i + 1``);
    the first is plotted. The loss is the paper's NLL + wd * sum_p ||p||_2 when wd > 0."""
    from .. import distributed as dist
    from ..reporting.plots.surface import plot_surface
    from ..runners import random_plane, run_surface
    settings = surface_settings(cfg)
    plan = surface_plan(cfg.surface_plan)
    planes, runs = [], []
    for i in range(max(1, cfg.surface_planes)):
        dirs, ident = random_plane(net, settings.norm, cfg.seed + 2 * i, bool(settings.ygrid))
        name = "surface.h5" if i == 0 else f"surface_p{i}.h5"
        run = run_surface(net, sets["surface"], settings, cache, directions=dirs,
                          direction_identity=ident, info=info, seed=cfg.seed,
                          paper_loss=cfg.paper_loss, plan=plan, name=name,
                          directions_file=name.replace(".h5", "_directions.h5"),
                          progress=progress, split="train")
        planes.append(run.result)
        runs.append(run)
    extra = runs[0].extra
    files = (plot_surface(cache.folder / "surface.h5", fig_dir / "landscape" / label,
                          quantities=[extra["quantity"]], label=label)
             if dist.is_writer() else [])
    return {"planes": planes, "seeds": [cfg.seed + 2 * i for i in range(len(planes))],
            "quantity": extra["quantity"], "wd": extra["wd"], "augment": extra["augment"],
            "recipe_source": extra["recipe_source"]}, all(r.reused for r in runs), \
        {"landscape": files}


def surface_settings(cfg: AnalyzeConfig) -> Any:
    """The :class:`~landscape.settings.SurfaceSettings` of ``cfg``."""
    from ..settings import SurfaceSettings
    return SurfaceSettings(grid=cfg.surface_grid, ygrid=cfg.surface_ygrid, norm=cfg.surface_norm,
                           planes=max(1, cfg.surface_planes), radii=cfg.surface_radii,
                           augment=cfg.surface_augment, wd=cfg.surface_wd,
                           plan=cfg.surface_plan, samples=cfg.surface_samples)


def feature_settings(analysis: str, cfg: AnalyzeConfig) -> Any:
    """The settings object of feature analysis ``analysis`` from ``cfg``."""
    from ..settings import (
        CKASettings,
        FourierSettings,
        LesionSettings,
        RobustnessSettings,
        VarianceSettings,
    )
    if analysis == "fourier":
        return FourierSettings(readout=cfg.fourier_readout)
    if analysis == "variance":
        return VarianceSettings()
    if analysis == "robustness":
        return RobustnessSettings(protocol=cfg.robustness_protocol, freqs=cfg.robustness_freqs,
                                  eps=cfg.robustness_eps, norm=cfg.robustness_norm,
                                  width=cfg.robustness_width)
    if analysis == "cka":
        return CKASettings(batch_size=cfg.cka_batch_size)
    return LesionSettings(samples=cfg.lesion_samples)


def _feature_runner(analysis: str) -> Callable[..., Any]:
    def run(net, label, cfg, cache, key, sets, fig_dir, progress, info=None, tag=""):
        from ..reporting.plots import features as P
        from ..runners import FEATURE_RUNNERS
        runner = FEATURE_RUNNERS[analysis][0]
        data = sets["lesion"] if analysis == "lesion" else sets["feat"]
        own = {} if analysis == "cka" else {"batch_size": cfg.batch_size}
        r = runner(net, data, feature_settings(analysis, cfg), cache, info=info, seed=cfg.seed,
                   progress=progress, label=label, **own)
        files: dict[str, list[Path]] = {}
        if analysis == "fourier":
            files["fourier"] = P.plot_fourier_curves(r.result,
                                                     fig_dir / "fourier" / label / "dlogA",
                                                     title=label)
        elif analysis == "cka":
            files["cka"] = P.plot_cka(r.result, fig_dir / "cka" / label / "cka", title=label)
        return r.result, r.reused, files
    return run


RUNNERS: dict[str, Callable[..., Any]] = {
    "hessian": _run_hessian, "surface": _run_surface,
    **{a: _feature_runner(a) for a in ("fourier", "variance", "robustness", "cka", "lesion")},
}


def joint_figures(results: dict[str, dict[str, Any]], labels: list[str],
                   fig_dir: Path) -> dict[str, list[Path]]:
    from ..reporting.plots import features as P
    files: dict[str, list[Path]] = {}
    if results.get("surface"):
        from ..reporting.plots.surface import plot_surface_comparison
        planes = {lab: ((r["planes"][0], r["quantity"]) if isinstance(r, dict) else
                        (r, "train_loss")) for lab, r in results["surface"].items()}
        labs = [lab for lab, (r, _) in planes.items() if r.ycoordinates is not None]
        if labs:  # first plane of every model on shared contour levels
            files["landscape"] = plot_surface_comparison(
                [planes[lab][0].path for lab in labs], fig_dir / "landscape" / "comparison",
                labels=labs, quantity=[planes[lab][1] for lab in labs])
    if results.get("hessian"):
        from ..reporting.plots.hessian import plot_spectrum
        labs = list(results["hessian"])
        files["hessian"] = plot_spectrum([results["hessian"][lab]["spectrum_file"] for lab in labs],
                                         fig_dir / "hessian" / "spectra", labels=labs)
    joint = {"fourier": P.plot_high_frequency, "variance": P.plot_variance,
             "robustness": P.plot_robustness, "lesion": P.plot_lesion}
    for analysis, plot in joint.items():
        if results.get(analysis):
            labs = list(results[analysis])
            files.setdefault(analysis, []).extend(
                plot([results[analysis][lab] for lab in labs], fig_dir / analysis / analysis,
                     labels=labs))
    return files
