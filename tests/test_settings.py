"""One typed settings object per quantity (issue #24): every default lives in
``landscape.settings`` once; the command parsers and ``AnalyzeConfig`` take theirs from there."""
import argparse
import dataclasses

import pytest

from landscape import settings as S
from landscape.analyze.config import FROM_SETTINGS, AnalyzeConfig, make_config
from landscape.cli import build_parser
from landscape.errors import LandscapeError

# command -> {option dest: (settings class, field)}
IMAGES = {"samples": (S.ImagesSettings, "samples"),
          "batch_size": (S.ImagesSettings, "batch_size")}
PARSER_DEFAULTS = {
    "hessian": {
        "top_k": (S.SpectrumSettings, "k"), "which": (S.SpectrumSettings, "which"),
        "batch_size": (S.SpectrumSettings, "batch_size"),
        "batches": (S.SpectrumSettings, "n_batches"), "subset": (S.SpectrumSettings, "subset"),
        "tol": (S.SpectrumSettings, "tol"), "max_iter": (S.SpectrumSettings, "max_iter"),
        "backend": (S.SpectrumSettings, "backend"), "start": (S.SpectrumSettings, "start"),
        "warm_start": (S.SpectrumSettings, "warm_start"), "mode": (S.SpectrumSettings, "mode"),
        "curvature_samples": (S.CurvatureSettings, "samples"),
        "curvature_batch_size": (S.CurvatureSettings, "batch_size"),
        "probes": (S.CurvatureSettings, "trace_products"),
        "slq_probes": (S.CurvatureSettings, "density_probes"),
        "slq_steps": (S.CurvatureSettings, "density_steps"),
        "sigma": (S.CurvatureSettings, "sigma"),
        "curvature_top_k": (S.CurvatureSettings, "top_k"),
        "hutchinson_probes": (S.CurvatureSettings, "hutchinson_probes"),
        "preset": (S.LossSettings, "preset"), "wd": (S.LossSettings, "wd"),
        "augment": (S.LossSettings, "augment"), "paper_loss": (S.LossSettings, "paper_loss")},
    "surface": {"grid": (S.SurfaceSettings, "grid"), "planes": (S.SurfaceSettings, "planes"),
                "norm": (S.SurfaceSettings, "norm"), "wd": (S.SurfaceSettings, "wd"),
                "augment": (S.SurfaceSettings, "augment"),
                "samples": (S.SurfaceSettings, "samples")},
    "fourier": {"eps": (S.FourierSettings, "eps"), **IMAGES},
    "variance": {"ddof": (S.VarianceSettings, "ddof"), **IMAGES},
    "robustness": {"protocol": (S.RobustnessSettings, "protocol"), **IMAGES},
    "cka": {"estimator": (S.CKASettings, "estimator"),
            "batch_size": (S.CKASettings, "batch_size"),
            "samples": (S.ImagesSettings, "samples")},
    "lesion": {"samples": (S.LesionSettings, "samples"),
               "batch_size": (S.ImagesSettings, "batch_size")},
}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(PARSER_DEFAULTS))
def test_command_defaults_come_from_the_settings(command):
    p = _subparsers()[command]
    defaults = {a.dest: a.default for a in p._actions}
    for dest, (cls, name) in PARSER_DEFAULTS[command].items():
        assert dest in defaults, (command, dest)
        assert defaults[dest] == S.default_of(cls, name), (command, dest)
    if command == "surface":  # analyze's (None: the settings' ygrid, '' with --target)
        assert defaults["ygrid"] is None and defaults["split"] == "train"
        assert S.default_of(S.SurfaceSettings, "ygrid") == "-1:1:9"
    if command == "robustness":
        n = S.default_of(S.RobustnessSettings, "freqs")
        assert len(defaults["freqs"]) == n and defaults["freqs"][0] == 0.0
        assert defaults["freqs"][-1] == 1.0


def test_analyze_defaults_come_from_the_settings():
    cfg = AnalyzeConfig()
    for key, (cls, name) in FROM_SETTINGS.items():
        assert getattr(cfg, key) == S.default_of(cls, name), key
    # the loss is the paper preset in analyze and in the commands alike
    assert (cfg.hessian_wd, cfg.hessian_augment) == (S.LOSS_PRESETS["paper"]["wd"],
                                                     S.LOSS_PRESETS["paper"]["augment"])
    assert S.default_of(S.LossSettings, "preset") == "paper"
    assert _subparsers()["hessian"].get_default("preset") == "paper"
    assert (cfg.surface_wd, cfg.surface_augment) == (None, True)
    assert S.default_of(S.SpectrumSettings, "augment") is False  # resolved from the loss
    # the quick budget (analyze's default) is the settings' defaults: the commands' defaults
    from landscape.analyze.config import BUDGETS
    assert BUDGETS["quick"] == {} and make_config("quick") == AnalyzeConfig()
    assert (cfg.samples, cfg.batch_size, cfg.spectrum_batches) == (500, 250, 16)


@pytest.mark.parametrize("cls", list(S.SETTINGS.values()), ids=list(S.SETTINGS))
def test_settings_are_frozen_documented_and_validated(cls):
    s = cls()
    assert s.to_dict().items() <= dataclasses.asdict(s).items()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(s, dataclasses.fields(cls)[0].name, None)
    docs = cls.docs()
    assert all(docs.values()), [k for k, v in docs.items() if not v]
    for f in dataclasses.fields(cls):
        if f.metadata.get("choices"):
            with pytest.raises(LandscapeError, match=f"{cls.QUANTITY} setting {f.name} must be"):
                cls(**{f.name: "no-such-choice"})
        elif f.metadata.get("minimum") is not None:
            with pytest.raises(LandscapeError, match=f"{f.name} must be >= "):
                cls(**{f.name: f.metadata["minimum"] - 1})


def test_analyze_keys_are_checked_by_their_settings_field():
    with pytest.raises(LandscapeError, match="setting top_k must be >= 1"):
        make_config("quick", overrides={"top_k": 0})
    with pytest.raises(LandscapeError, match="setting surface_norm must be one of"):
        make_config("quick", overrides={"surface_norm": "x"})
    with pytest.raises(LandscapeError, match="setting hessian_mode must be one of"):
        make_config("quick", overrides={"hessian_mode": "fast"})
    with pytest.raises(LandscapeError, match="setting lanczos_tol must be float"):
        make_config("quick", overrides={"lanczos_tol": "small"})


def test_the_spectrum_and_curvature_objects_are_the_settings_classes():
    from landscape.curvature.estimates import CurvatureSettings
    from landscape.curvature.spectrum import SpectrumConfig
    assert SpectrumConfig is S.SpectrumSettings and CurvatureSettings is S.CurvatureSettings
