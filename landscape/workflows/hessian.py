"""``landscape hessian``: the max-eigenvalue spectrum of a checkpoint (resumable, sharded under
torchrun) and, optionally, the trace, extreme eigenvalues and SLQ density of the loss averaged
over a set of images, computed by the Hessian runners (:func:`landscape.runners.run_spectrum`,
:func:`landscape.runners.run_curvature`), the ones ``landscape analyze`` calls, on the images
:func:`landscape.runners.hessian_pool` chooses for both."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..settings import CurvatureSettings, LossSettings, SpectrumSettings
from .inputs import InputOptions

HESSIAN_SUMMARY_VERSION = 2  # hessian_summary.json's layout (2: curvature from run_curvature)


@dataclass(frozen=True)
class HessianJob:
    """One ``landscape hessian`` run: the checkpoint, output folder and inputs
    (``inputs.samples`` 0: the images of :func:`~landscape.runners.hessian_pool`, else a
    stratified subset of that many), whether the curvature of the averaged loss is computed
    (``curvature``: --trace or --density) and ``quiet``."""

    checkpoint: str
    out: str
    inputs: InputOptions = field(default_factory=InputOptions)
    curvature: bool = False
    quiet: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def hessian_run(spectrum: SpectrumSettings, curvature: CurvatureSettings, loss: LossSettings,
                job: HessianJob) -> dict[str, Any]:
    """Run ``landscape hessian``: writes ``spectrum.h5``, ``config.json`` (the settings'
    ``to_dict()``), ``hessian_summary.json`` (versioned; not analyze's ``summary.json``), the
    figures and, with ``job.curvature``, ``curvature.json`` (and ``density.h5`` when
    ``curvature.density_probes``) into ``job.out``. Returns the summary (every rank does)."""
    from .. import distributed as D
    from ..curvature import check_curvature_options
    from ..runners import hessian_pool, resolve_loss, run_curvature, run_spectrum
    from ..settings import check_memory
    from ..store.provenance import output_dir, run_metadata, write_json
    from ..store.resume import ResultFolder
    from .inputs import load_model_and_data

    check_curvature_options(spectrum.curvature, backend=spectrum.backend,
                            mode=spectrum.mode)  # before any work
    D.init_from_env()
    model, info, data = load_model_and_data(job.inputs, job.checkpoint)
    model.eval()
    pool = data if job.inputs.samples else hessian_pool(data, spectrum, curvature,
                                                        job.inputs.seed)
    names = {"top_k": "--curvature-top-k", "trace_products": "--probes",
             "density_probes": "--slq-probes"}
    if job.curvature:  # before any work: a count that cannot fit, one line
        check_memory(curvature, sum(p.numel() for p in model.parameters()), names)
    out = output_dir(job.out) if D.is_writer() else Path(job.out)
    store = ResultFolder(out, info.sha256, remedy="delete it or use another --out")
    lo = resolve_loss(loss, info, pool, spectrum.seed)
    spec = run_spectrum(model, pool, spectrum, store, info=info, loss=loss, resolved=lo,
                        names={"k": "--top-k"}, progress=not job.quiet)
    meta = {"checkpoint": info.path, "checkpoint_sha256": info.sha256, "model": info.model,
            "dataset": pool.name, "split": pool.split, "n_data": len(pool),
            "data_indices_seed": pool.seed}
    resolved = {"wd": lo.wd, "l2": lo.l2, "augment": lo.transform,
                "recipe_source": lo.recipe_source}
    if D.is_writer():  # after the spectrum: a refused or unreadable spectrum.h5 changes nothing
        write_json(out / "config.json", run_metadata(
            command="hessian", spectrum=spectrum.to_dict(), loss=loss.to_dict(),
            curvature=curvature.to_dict() if job.curvature else None, resolved_loss=resolved,
            spectrum_config=spec.result.config, job=job.to_dict(), **meta))
    summary: dict[str, Any] = {"spectrum": spec.result.summary(), "loss": resolved}
    if job.curvature:
        curv = run_curvature(model, pool, curvature, store, info=info, loss=loss, resolved=lo,
                             kind=spectrum.curvature, names=names)
        c = curv.result or {}
        if "trace" in c or "hutchinson" in c:
            summary["trace"] = {"hutchinson": c.get("hutchinson"), "hutch++": c.get("trace"),
                                "n_samples": c["n_samples"], "batch_size": c["batch_size"]}
        if "top" in c:
            summary["extreme"] = {"top": c["top"]["eigenvalues"],
                                  "bottom": c["bottom"]["eigenvalues"]}
        if curv.extra["density"] is not None and D.is_writer():
            from ..curvature.results import DensityResult
            from ..reporting.plots.hessian import plot_slq_density
            dens = DensityResult.load(curv.extra["density"])
            plot_slq_density(curv.extra["density"], out / "density")
            summary["density"] = {"sigma": dens.sigma, "n_products": dens.n_products,
                                  "steps": dens.steps, "n_probes": curvature.density_probes,
                                  "file": curv.extra["density"].name}
        summary["curvature_file"] = curv.file.name
    if D.is_writer():
        write_json(out / "hessian_summary.json",
                   run_metadata(kind="landscape-hessian", schema_version=HESSIAN_SUMMARY_VERSION,
                                **summary, **meta))
        from ..reporting.plots.hessian import plot_spectrum
        plot_spectrum([out / "spectrum.h5"], out / "spectrum", labels=[info.model])
    D.barrier()
    return {**summary, "model": info.model, "out": str(out) if D.is_writer() else None}


def summary_line(summary: dict[str, Any]) -> str:
    """The one line ``landscape hessian`` prints."""
    s, nan = summary["spectrum"], float("nan")
    trace = (summary.get("trace") or {}).get("hutch++")
    return (f"{summary['model']}: {s['n_batches_finished']}/{s['n_batches']} batches, "
            f"negative share {s['negative_share']:.4f}, mean positive {s['mean_positive']:.4g}, "
            f"lambda_min < 0 in {s.get('lambda_min_negative_share', nan):.3f} of batches, "
            f"median |lambda_min|/lambda_max {s.get('median_abs_min_over_max', nan):.3g}"
            + (f", trace {trace['trace']:.4g} +- {trace['stderr']:.2g}" if trace else "")
            + f" -> {summary['out']}")
