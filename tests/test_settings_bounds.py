"""Settings refuse non-finite and absurd values in one place (issue #32): every float field of
every settings class and of ``AnalyzeConfig`` (found by introspection, not a hand-picked list)
refuses NaN and +-inf; counts refuse 1e12; thresholds refuse values outside their meaning; a
count that would not fit in memory for the model at hand is refused with the estimate."""
from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from landscape.analyze.config import FROM_SETTINGS, AnalyzeConfig, make_config
from landscape.cli import main
from landscape.errors import LandscapeError
from landscape.settings import (
    SETTINGS,
    CurvatureSettings,
    SpectrumSettings,
    check_memory,
    check_number,
    memory_needed,
)
from landscape.validate import available_memory


def _fields_of_type(cls: type, kind: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        h = hints[f.name]
        args = typing.get_args(h) or (h,)
        if kind in args and (kind is not int or bool not in args):
            out.append(f.name)
    return out


SETTINGS_FLOATS = [(q, n) for q, c in SETTINGS.items() for n in _fields_of_type(c, float)]
SETTINGS_INTS = [(q, n) for q, c in SETTINGS.items() for n in _fields_of_type(c, int)
                 if not c.__dataclass_fields__[n].metadata.get("choices") and n != "seed"]
ANALYZE_FLOATS = _fields_of_type(AnalyzeConfig, float)
#: The counts the issue ran at 1e12 (plus every other count of AnalyzeConfig below).
COUNTS = ["robustness_freqs", "top_k", "trace_products", "density_probes", "surface_planes",
          "density_steps"]


def test_introspection_finds_the_fields():
    assert len(SETTINGS_FLOATS) >= 11 and ("robustness", "width") in SETTINGS_FLOATS
    assert {"surface_wd", "hessian_wd", "surface_radius", "fourier_min_freq", "robustness_width",
            "lanczos_tol"} <= set(ANALYZE_FLOATS)


@pytest.mark.parametrize("quantity,name", SETTINGS_FLOATS, ids=lambda v: str(v))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_every_float_setting_refuses_non_finite(quantity, name, value):
    with pytest.raises(LandscapeError, match=rf"{name} must be a finite number"):
        SETTINGS[quantity](**{name: value})


@pytest.mark.parametrize("quantity,name", SETTINGS_INTS, ids=lambda v: str(v))
def test_every_count_setting_refuses_1e12(quantity, name):
    with pytest.raises(LandscapeError, match=rf"{name} must be <= "):
        SETTINGS[quantity](**{name: 10 ** 12})


@pytest.mark.parametrize("quantity", [q for q, c in SETTINGS.items() if "seed" in
                                      c.__dataclass_fields__])
def test_seeds_are_bounded_but_not_counts(quantity):
    assert SETTINGS[quantity](seed=10 ** 12).seed == 10 ** 12
    with pytest.raises(LandscapeError, match="seed must be <= "):
        SETTINGS[quantity](seed=2 ** 62)


@pytest.mark.parametrize("name", ANALYZE_FLOATS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_every_float_of_analyze_refuses_non_finite(name, value):
    over = {name: value}
    if name == "robustness_norm":
        over["robustness_protocol"] = "radial"
    with pytest.raises(LandscapeError, match=rf"setting {name} must be a finite number") as e:
        make_config("quick", overrides=over)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", COUNTS + [n for n in FROM_SETTINGS if n not in COUNTS and
                                           n in _fields_of_type(AnalyzeConfig, int)])
def test_counts_of_analyze_refuse_1e12(name):
    with pytest.raises(LandscapeError, match=rf"setting {name} must be <= "):
        make_config("quick", overrides={name: 10 ** 12})


@pytest.mark.parametrize("value", [-1.0, 1.5, 1e12])
def test_fourier_min_freq_is_a_fraction_of_pi(value):
    with pytest.raises(LandscapeError, match="fourier_min_freq"):
        make_config("quick", overrides={"fourier_min_freq": value})
    assert make_config("quick", overrides={"fourier_min_freq": 0.5}).fourier_min_freq == 0.5


@pytest.mark.parametrize("name,value", [("robustness_width", 1.5), ("surface_radius", 0.0),
                                        ("surface_wd", -1.0), ("lanczos_tol", -1e-3)])
def test_meaningless_ranges_are_refused(name, value):
    with pytest.raises(LandscapeError, match=name):
        make_config("quick", overrides={name: value})


def test_check_number_is_nan_proof():
    for bad in (math.nan, math.inf, -math.inf, "1", None, True):
        with pytest.raises(LandscapeError):
            check_number("x", bad, 0.0, 1.0)
    check_number("x", 0.0, 0.0, 1.0)
    check_number("x", 1, 0.0, 1.0)
    with pytest.raises(LandscapeError, match="x must be <= 1"):
        check_number("x", 1.0000001, 0.0, 1.0)


@pytest.mark.parametrize("argv", [
    ["analyze", "never-read.pt", "--set", "robustness_width=nan"],
    ["analyze", "never-read.pt", "--set", "hessian_wd=nan"],
    ["analyze", "never-read.pt", "--set", "surface_wd=inf"],
    ["analyze", "never-read.pt", "--set", "lanczos_tol=inf"],
    ["analyze", "never-read.pt", "--set", "fourier_min_freq=-1"],
    ["analyze", "never-read.pt", "--set", "robustness_freqs=1000000000000"],
    ["analyze", "never-read.pt", "--set", "top_k=1000000000000"],
], ids=lambda a: a[-1])
def test_cli_one_line_exit_2(argv, tmp_path, capsys):
    rc = main([*argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("landscape: error: setting "), err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ memory estimate
def test_memory_needed_exact_on_a_tiny_case():
    s = SpectrumSettings(k=5, confirm=3)
    assert memory_needed(s, 10) == {"k": (5 + 3 + 1) * 8 * 10}
    c = CurvatureSettings(top_k=2, lanczos_confirm=3, trace_products=9, density_probes=4,
                          density_steps=7)
    assert memory_needed(c, 10) == {"top_k": 6 * 80, "trace_products": 7 * 80,
                                    "density_probes": 8 * 4 * 80}
    assert memory_needed(CurvatureSettings(top_k=0, trace_products=0, density_probes=0),
                         10) == {"top_k": 0, "trace_products": 0, "density_probes": 0}


def test_check_memory_refuses_what_does_not_fit():
    gib = 2 ** 30
    check_memory(SpectrumSettings(k=5), 10 ** 6, available=gib)
    with pytest.raises(LandscapeError) as e:
        check_memory(SpectrumSettings(k=10_000), 10 ** 6, {"k": "--top-k"}, available=gib)
    msg = str(e.value)
    assert msg.startswith("--top-k = 10000 needs about 74.5 GiB") and "1.0 GiB is available" in msg
    with pytest.raises(LandscapeError, match="setting density_probes = 100 needs"):
        check_memory(CurvatureSettings(density_probes=100, density_steps=100), 10 ** 6,
                     {"density_probes": "setting density_probes"}, available=gib)


def test_available_memory_is_read():
    m = available_memory()
    assert m is None or m > 0
