"""One typed settings object per quantity (issue #24): every default lives in
``landscape.settings`` once; the command parsers and ``AnalyzeConfig`` take theirs from there."""
import argparse
import dataclasses

import pytest

from landscape import settings as S
from landscape.analyze_config import FROM_SETTINGS, AnalyzeConfig, make_config
from landscape.cli import build_parser
from landscape.errors import LandscapeError

# command -> {option dest: (settings class, field)}
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
        "sigma": (S.CurvatureSettings, "sigma")},
    "surface": {"grid": (S.SurfaceSettings, "grid"), "norm": (S.SurfaceSettings, "norm"),
                "wd": (S.SurfaceSettings, "wd"), "augment": (S.SurfaceSettings, "augment")},
    "fourier": {"eps": (S.FourierSettings, "eps")},
    "variance": {"ddof": (S.VarianceSettings, "ddof")},
    "robustness": {"protocol": (S.RobustnessSettings, "protocol")},
    "cka": {"estimator": (S.CKASettings, "estimator")},
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
    if command == "surface":  # '' in the settings is argparse's None: a 1-D curve
        assert defaults["ygrid"] is None and S.default_of(S.SurfaceSettings, "ygrid") == ""
    if command == "robustness":
        n = S.default_of(S.RobustnessSettings, "freqs")
        assert len(defaults["freqs"]) == n and defaults["freqs"][0] == 0.0
        assert defaults["freqs"][-1] == 1.0


def test_analyze_defaults_come_from_the_settings():
    cfg = AnalyzeConfig()
    for key, (cls, name) in FROM_SETTINGS.items():
        assert getattr(cfg, key) == S.default_of(cls, name), key
    # the loss is the paper preset in analyze, the plain one in the commands
    assert (cfg.hessian_wd, cfg.hessian_augment) == (S.LOSS_PRESETS["paper"]["wd"],
                                                     S.LOSS_PRESETS["paper"]["augment"])
    assert S.default_of(S.SpectrumSettings, "augment") is False
    assert "paper" in _subparsers()["hessian"].format_help()  # the preset is in --help


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
    from landscape.spectrum import SpectrumConfig
    assert SpectrumConfig is S.SpectrumSettings and CurvatureSettings is S.CurvatureSettings
