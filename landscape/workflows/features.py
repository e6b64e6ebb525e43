"""``landscape fourier|variance|robustness|cka|lesion``: one raw result per checkpoint in the
output folder (``<analysis>_<label>.h5|json``), reused through the result store when the same
settings ran before, a ``config_<analysis>.json`` and the figures drawn from the raw files.

Each result is computed by its runner (:mod:`landscape.runners`), the one ``landscape analyze``
calls, from the settings object the command built.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..settings import ImagesSettings, Settings
from .inputs import InputOptions


@dataclass(frozen=True)
class FeatureJob:
    """One feature command: its checkpoints, output folder, inputs, the quantity's settings and
    how it runs (forward ``batch_size``, explicit robustness ``freqs``, ``force``, ``quiet``)."""

    analysis: str
    checkpoints: list[str]
    out: str
    settings: Settings
    inputs: InputOptions = field(default_factory=InputOptions)
    batch_size: int = ImagesSettings.batch_size
    freqs: list[float] | None = None
    force: bool = False
    quiet: bool = False


def _plotter(analysis: str) -> Callable[[list[Any], Path, list[str]], Any]:
    """The command's figures of ``analysis`` from the results of every checkpoint."""
    from ..reporting.plots import features as P

    def fourier(rs: list[Any], out: Path, labels: list[str]) -> None:
        for r, lab in zip(rs, labels, strict=True):
            P.plot_fourier_curves(r, out / f"fourier_curves_{lab}",
                                  title=f"{lab}: ΔlogA ({r.n_images} images)")
        P.plot_high_frequency(rs, out / "fourier_high_frequency", labels)

    def cka(rs: list[Any], out: Path, labels: list[str]) -> None:
        for r, lab in zip(rs, labels, strict=True):
            P.plot_cka(r, out / f"cka_{lab}",
                       title=f"{lab}: CKA ({r.estimator}, {r.n_images} images)")

    joint = {"variance": P.plot_variance, "robustness": P.plot_robustness,
             "lesion": P.plot_lesion}
    if analysis in joint:
        return lambda rs, out, labs: joint[analysis](rs, out / analysis, labs)
    return {"fourier": fourier, "cka": cka}[analysis]


def _labels(paths: list[str], shas: list[str], existing: list[Path],
            loader: Callable[[Path], Any]) -> list[str]:
    """Unique names (:func:`landscape.loading.checkpoint_info.checkpoint_labels`: the run folder for
    ``model.pt``); a name whose result file in ``--out`` belongs to another checkpoint is not
    reused, so no earlier result is overwritten."""
    from ..loading.checkpoint_info import checkpoint_labels
    taken: dict[str, set[str]] = {}
    for f in existing:
        try:
            cfg = loader(f).config
        except Exception:  # noqa: BLE001 - an unreadable result names no owner
            continue
        label, ident = cfg.get("label"), cfg.get("identity") or {}
        if label and ident.get("checkpoint_sha256"):
            taken.setdefault(label, set()).add(str(ident["checkpoint_sha256"])[:10])
    return checkpoint_labels(paths, shas, taken=taken)


def feature_run(job: FeatureJob) -> list[tuple[str, Path, bool]]:
    """Run ``job.analysis`` on every checkpoint into ``job.out``; returns (label, result file,
    reused?) per checkpoint. A stored result with other settings is refused (one line naming
    them) unless ``job.force``."""
    from ..runners import FEATURE_RUNNERS
    from ..store.provenance import output_dir, run_metadata, write_json
    from ..store.resume import ResultFolder
    from .inputs import load_model_and_data, read_checkpoints

    runner, _, ext = FEATURE_RUNNERS[job.analysis]
    load = result_loader(job.analysis)
    files = read_checkpoints(job.inputs, list(job.checkpoints))
    out = output_dir(job.out)
    labels = _labels([f.path for f in files], [f.sha256 for f in files],
                     sorted(out.glob(f"{job.analysis}_*.{ext}")), load)
    own = {"batch_size": job.batch_size, **({"freqs": job.freqs} if job.freqs else {})}
    if job.analysis == "cka":
        own = {}  # the HSIC batch is the settings' batch_size
    done, idents = [], []
    for file, label in zip(files, labels, strict=True):
        store = ResultFolder(out, file.sha256, force=job.force)
        model, info, data = load_model_and_data(job.inputs, file)
        run = runner(model, data, job.settings, store, info=info, seed=job.inputs.seed,
                     progress=not job.quiet, stem=f"{job.analysis}_{label}", label=label, **own)
        done.append((label, run.file, run.reused))
        idents.append({**run.result.config["identity"], "checkpoint": str(file.path),
                       "label": label, "settings_object": job.settings.to_dict()})
    write_json(out / f"config_{job.analysis}.json", run_metadata(runs=idents))
    _plotter(job.analysis)([load(f) for _, f, _ in done], out, labels)
    return done


def result_loader(analysis: str) -> Callable[[Path], Any]:
    """How a stored result of ``analysis`` is read."""
    from ..features import fourier, lesion, robustness, similarity, variance
    return {"fourier": fourier.FourierResult.load, "variance": variance.VarianceResult.load,
            "robustness": robustness.RobustnessResult.load, "cka": similarity.CKAResult.load,
            "lesion": lesion.LesionResult.load}[analysis]
