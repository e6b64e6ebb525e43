"""``landscape fourier|variance|robustness|cka|lesion``: one raw result per checkpoint in the
output folder (``<analysis>_<label>.h5|json``), reused through the result store when the same
settings ran before, a ``config_<analysis>.json`` and the figures drawn from the raw files.

Each analysis is computed by the same library function ``landscape analyze`` calls.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..resume import check, identity
from ..settings import CKASettings, FourierSettings, VarianceSettings


@dataclass(frozen=True)
class FeatureAnalysis:
    """How one analysis is computed, stored and drawn from the command's options."""

    settings: Callable[[Any], dict[str, Any]]
    compute: Callable[[Any, Any, Any, bool], Any]   # (options, model, data, progress)
    load: Callable[[Path], Any]
    ext: str
    plot: Callable[[list[Any], Path, list[str]], Any]


def _fourier() -> FeatureAnalysis:
    from ..features.fourier import FourierResult, fourier_analysis
    from ..reporting.plots.features import plot_fourier_curves, plot_high_frequency

    def plot(rs: list[Any], out: Path, labels: list[str]) -> None:
        for r, lab in zip(rs, labels, strict=True):
            plot_fourier_curves(r, out / f"fourier_curves_{lab}",
                                title=f"{lab}: ΔlogA ({r.n_images} images)")
        plot_high_frequency(rs, out / "fourier_high_frequency", labels)

    def settings(a: Any) -> dict[str, Any]:
        return FourierSettings(eps=a.eps, include_input=not a.no_input).to_dict()

    return FeatureAnalysis(
        settings,
        lambda a, m, d, pg: fourier_analysis(m, d, batch_size=a.batch_size, progress=pg,
                                             **settings(a)),
        FourierResult.load, "h5", plot)


def _variance() -> FeatureAnalysis:
    from ..features.variance import VarianceResult, variance_analysis
    from ..reporting.plots.features import plot_variance
    def settings(a: Any) -> dict[str, Any]:
        return VarianceSettings(ddof=a.ddof, include_input=not a.no_input).to_dict()

    return FeatureAnalysis(
        settings,
        lambda a, m, d, pg: variance_analysis(m, d, batch_size=a.batch_size, progress=pg,
                                              **settings(a)),
        VarianceResult.load, "json", lambda rs, out, labs: plot_variance(rs, out / "variance",
                                                                         labs))


def robustness_settings(a: Any) -> dict[str, Any]:
    """The effective noise settings of the command's options: the protocol, its band width and
    base noise (the protocol's defaults where not given), and only the protocol's own amplitude
    (``eps`` for paper, ``noise_norm`` for radial)."""
    from ..settings import ROBUSTNESS_PROTOCOLS, RobustnessSettings
    given = {k: v for k, v in (("eps", a.eps), ("norm", a.noise_norm), ("width", a.width),
                               ("base", a.base)) if v is not None}
    s = RobustnessSettings(protocol=a.protocol, freqs=len(a.freqs), **given)  # validated
    own = ROBUSTNESS_PROTOCOLS[s.protocol]
    out: dict[str, Any] = {"protocol": s.protocol, "freqs": list(a.freqs),
                           "width": s.width or own["width"], "base": s.base or own["base"]}
    if s.protocol == "paper":
        out["eps"] = s.eps
    else:
        out["noise_norm"] = s.norm
    return out


def _robustness() -> FeatureAnalysis:
    from ..features.robustness import (
        PAPER_EPS,
        RADIAL_NORM,
        RobustnessResult,
        noise_robustness,
    )
    from ..reporting.plots.features import plot_robustness

    def compute(a: Any, m: Any, d: Any, pg: bool) -> Any:
        s = robustness_settings(a)
        return noise_robustness(m, d, freqs=s["freqs"], width=s["width"],
                                norm=s.get("noise_norm", RADIAL_NORM), seed=a.seed,
                                base=s["base"], batch_size=a.batch_size, progress=pg,
                                protocol=s["protocol"], eps=s.get("eps", PAPER_EPS))

    return FeatureAnalysis(
        robustness_settings, compute, RobustnessResult.load, "json",
        lambda rs, out, labs: plot_robustness(rs, out / "robustness", labs))


def _cka() -> FeatureAnalysis:
    from ..features.similarity import CKAResult, cka_analysis
    from ..reporting.plots.features import plot_cka

    def plot(rs: list[Any], out: Path, labels: list[str]) -> None:
        for r, lab in zip(rs, labels, strict=True):
            plot_cka(r, out / f"cka_{lab}",
                     title=f"{lab}: CKA ({r.estimator}, {r.n_images} images)")

    def settings(a: Any) -> dict[str, Any]:
        return {"estimator": CKASettings(batch_size=a.batch_size,
                                         estimator=a.estimator).estimator}

    return FeatureAnalysis(
        settings,
        lambda a, m, d, pg: cka_analysis(m, d, batch_size=a.batch_size, progress=pg,
                                         **settings(a)),
        CKAResult.load, "json", plot)


def _lesion() -> FeatureAnalysis:
    from ..features.lesion import LesionResult, lesion_study
    from ..reporting.plots.features import plot_lesion
    return FeatureAnalysis(
        lambda a: {}, lambda a, m, d, pg: lesion_study(
            m, d, batch_size=a.batch_size, progress=pg),
        LesionResult.load, "json", lambda rs, out, labs: plot_lesion(rs, out / "lesion", labs))


SPECS: dict[str, Callable[[], FeatureAnalysis]] = {
    "fourier": _fourier, "variance": _variance, "robustness": _robustness, "cka": _cka,
    "lesion": _lesion}


def _labels(paths: list[str], shas: list[str], existing: list[Path],
            loader: Callable[[Path], Any]) -> list[str]:
    """Unique names (:func:`landscape.analyze.checkpoint_labels`: the run folder for
    ``model.pt``); a name whose result file in ``--out`` belongs to another checkpoint is not
    reused, so no earlier result is overwritten."""
    from ..analyze import checkpoint_labels
    taken: dict[str, set[str]] = {}
    for f in existing:
        try:
            ident = loader(f).config.get("identity") or {}
        except Exception:  # noqa: BLE001 - an unreadable result names no owner
            continue
        label = (ident.get("settings") or {}).get("label")
        if label and ident.get("checkpoint_sha256"):
            taken.setdefault(label, set()).add(str(ident["checkpoint_sha256"])[:10])
    return checkpoint_labels(paths, shas, taken=taken)


def feature_run(analysis: str, options: Any) -> list[tuple[str, Path, bool]]:
    """Run ``analysis`` on every checkpoint of ``options.checkpoints`` into ``options.out``;
    returns (label, result file, reused?) per checkpoint. A stored result with other settings
    is refused (one line naming them) unless ``options.force``."""
    from ..provenance import file_sha256, output_dir, resume_guard, run_metadata, write_json
    from .inputs import check_checkpoints, load_checkpoint_and_data

    spec = SPECS[analysis]()
    paths = check_checkpoints(options, list(options.checkpoints))
    out = output_dir(options.out)
    shas = [file_sha256(p) for p in paths]
    labels = _labels(paths, shas, sorted(out.glob(f"{analysis}_*.{spec.ext}")), spec.load)
    base = {"analysis": analysis, "data": options.data, "split": options.split,
            "samples": options.samples, "batch_size": options.batch_size, "seed": options.seed,
            "model": options.model, **spec.settings(options)}
    done, idents = [], []
    for path, sha, label in zip(paths, shas, labels, strict=True):
        ident = identity({**base, "label": label}, sha)
        file = out / f"{analysis}_{label}.{spec.ext}"
        res = None
        if file.exists() and not options.force:
            remedy = "delete it, use another --out or pass --force to recompute it"
            with resume_guard(file, f"{analysis} result", remedy):
                old = spec.load(file).config.get("identity")
            check(file, f"a {analysis} result", old, ident, remedy)
            done.append((label, file, True))
        else:
            model, info, data = load_checkpoint_and_data(options, path)
            res = spec.compute(options, model, data, not options.quiet)
            res.config.update(identity=ident, label=label, checkpoint={
                "path": str(path), "sha256": info.sha256, "model": info.model,
                "model_kwargs": info.model_kwargs})
            if getattr(res, "seed", None) is None:
                res.seed = options.seed
            res.save(file)
            done.append((label, file, False))
        idents.append({**ident, "checkpoint": str(path)})
    write_json(out / f"config_{analysis}.json", run_metadata(runs=idents))
    spec.plot([spec.load(f) for _, f, _ in done], out, labels)
    return done
