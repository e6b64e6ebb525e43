"""``landscape hessian``: the max-eigenvalue spectrum of a checkpoint (resumable, sharded under
torchrun) and, optionally, the trace and SLQ density of the loss averaged over a set of images,
computed by :func:`landscape.curvature.estimates.curvature_estimates` like ``landscape
analyze`` does."""
from __future__ import annotations

from typing import Any

HESSIAN_SUMMARY_VERSION = 1  # hessian_summary.json's layout


def loss_preset(a: Any, info: Any, data: Any) -> tuple[float, str, Any]:
    """(wd, l2, Augment or None) of ``--preset`` (:data:`landscape.settings.SPECTRUM_PRESETS`)
    with ``--wd``/``--l2``/``--augment`` overriding it. ``paper``: the checkpoint's training
    weight decay and augmentation (as ``landscape analyze``)."""
    from ..checkpoint_info import training_recipe
    from ..data import Augment
    from ..settings import SPECTRUM_PRESETS, SpectrumSettings, default_of
    preset = SPECTRUM_PRESETS[a.preset]
    # plain: Augment's own pad and flip (the one default); paper: the checkpoint's recipe
    recipe = training_recipe(info) if a.preset == "paper" else {"wd": None}
    wd = a.wd if a.wd is not None else float(recipe["wd"] or default_of(SpectrumSettings, "wd"))
    l2 = a.l2 or preset.get("l2", default_of(SpectrumSettings, "l2"))
    on = a.augment if a.augment is not None else preset.get(
        "augment", default_of(SpectrumSettings, "augment"))
    augment = Augment(**{k: recipe[k] for k in ("pad", "flip") if k in recipe},
                      mean=data.mean, std=data.std) if on else None
    return wd, l2, augment


def hessian_run(options: Any) -> dict[str, Any]:
    """Run ``landscape hessian`` with ``options`` (its argparse namespace); writes
    ``spectrum.h5``, ``config.json``, ``hessian_summary.json`` (versioned; not analyze's
    ``summary.json``), the figures and, with ``density``,
    ``density.h5`` into ``options.out``. Returns the summary (every rank does)."""
    from .. import distributed as D
    from ..curvature.estimates import CurvatureSettings, curvature_estimates
    from ..provenance import output_dir, run_metadata, write_json
    from ..spectrum import SpectrumConfig, max_eigenvalue_spectrum
    from .inputs import load_checkpoint_and_data

    a = options
    from ..curvature import check_curvature_options
    check_curvature_options(a.curvature, backend=a.backend, mode=a.mode)  # before any work
    D.init_from_env()
    model, info, data = load_checkpoint_and_data(a, a.checkpoint)
    model.eval()
    out = output_dir(a.out) if D.is_writer() else None
    wd, l2, augment = loss_preset(a, info, data)
    cfg = SpectrumConfig(k=a.top_k, which=a.which, batch_size=a.batch_size, n_batches=a.batches,
                         subset=a.subset, seed=a.seed, wd=wd, l2=l2, augment=augment is not None,
                         tol=a.tol, max_iter=a.max_iter, backend=a.backend, mode=a.mode,
                         start=a.start, warm_start=a.warm_start,
                         curvature=a.curvature)
    cs = CurvatureSettings(
        samples=a.curvature_samples, batch_size=a.curvature_batch_size, seed=a.seed, wd=wd,
        l2=l2, mode=a.mode, trace_products=a.probes if a.trace else 0,
        hutchinson_probes=a.probes if a.trace else 0,
        density_probes=a.slq_probes if a.density else 0, density_steps=a.slq_steps,
        sigma=a.sigma)
    from ..settings import check_memory  # before any work: a count that cannot fit, one line
    n_params = sum(p.numel() for p in model.parameters())
    check_memory(cfg, n_params, {"k": "--top-k"})
    check_memory(cs, n_params, {"top_k": "--top-k", "trace_products": "--probes",
                                "density_probes": "--slq-probes"})
    meta = {"checkpoint": info.path, "checkpoint_sha256": info.sha256, "model": info.model,
            "dataset": data.name, "split": data.split, "n_data": len(data),
            "data_indices_seed": data.seed}
    res = max_eigenvalue_spectrum(model, data.images, data.labels, cfg,
                                  out=(out / "spectrum.h5") if out else None, augment=augment,
                                  progress=not a.quiet, meta=meta)
    if D.is_writer():  # after the spectrum: a refused or unreadable spectrum.h5 changes nothing
        write_json(out / "config.json", run_metadata(command="hessian", config=cfg.to_dict(),
                                                      args=vars(a) | {"func": None}, **meta))
    summary: dict[str, Any] = {"spectrum": res.summary()}
    if a.trace or a.density:
        curv, dens, op_config = curvature_estimates(model, data.images, data.labels, cs,
                                                    augment=augment, distributed=True,
                                                    curvature=a.curvature)
        if a.trace:
            summary["trace"] = {"hutchinson": curv["hutchinson"], "hutch++": curv["trace"],
                                "n_samples": curv["n_samples"], "batch_size": cs.batch_size}
        if dens is not None:
            if D.is_writer():
                dens.save(out / "density.h5", config=op_config, meta=meta)
                from ..reporting.plots.hessian import plot_slq_density
                plot_slq_density(out / "density.h5", out / "density")
            summary["density"] = {"sigma": dens.sigma, "n_products": dens.n_products,
                                  "steps": dens.steps, "n_probes": a.slq_probes,
                                  "file": "density.h5"}
    if D.is_writer():
        write_json(out / "hessian_summary.json",
                   run_metadata(kind="landscape-hessian", schema_version=HESSIAN_SUMMARY_VERSION,
                                **summary, **meta))
        from ..reporting.plots.hessian import plot_spectrum
        plot_spectrum([out / "spectrum.h5"], out / "spectrum", labels=[info.model])
    D.barrier()
    return {**summary, "model": info.model, "out": str(out) if out else None}


def summary_line(summary: dict[str, Any]) -> str:
    """The one line ``landscape hessian`` prints."""
    s, nan = summary["spectrum"], float("nan")
    trace = summary.get("trace", {}).get("hutch++")
    return (f"{summary['model']}: {s['n_batches_finished']}/{s['n_batches']} batches, "
            f"negative share {s['negative_share']:.4f}, mean positive {s['mean_positive']:.4g}, "
            f"lambda_min < 0 in {s.get('lambda_min_negative_share', nan):.3f} of batches, "
            f"median |lambda_min|/lambda_max {s.get('median_abs_min_over_max', nan):.3g}"
            + (f", trace {trace['trace']:.4g} +- {trace['stderr']:.2g}" if trace else "")
            + f" -> {summary['out']}")
