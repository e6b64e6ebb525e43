"""``landscape analyze --set KEY=0`` for every numeric key of :class:`AnalyzeConfig`: either the
run works (0 means "all images", "not computed", "no L2" or "the protocol's default", and the
summary/report say what was done) or it ends in one line ``landscape: error: ...``, exit 2,
before any work. :func:`test_every_numeric_key_is_classified` fails for a new numeric key that
is in neither list.

The runs use tiny IDX files (random images) and ``--only`` the analysis that reads the key.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from cases import fmnist_model, write_fmnist

from landscape.analyze.config import AnalyzeConfig, make_config
from landscape.cli import main as cli_main
from landscape.errors import LandscapeError
from landscape.loading import checkpoint

torch.set_num_threads(1)

TINY = """
[analyze]
eval_samples = 16
samples = 16
batch_size = 16
lesion_samples = 16
surface_samples = 16
surface_grid = "-1:1:3"
surface_ygrid = ""
surface_planes = 1
spectrum_batches = 1
spectrum_batch_size = 4
top_k = 1
lanczos_max_iter = 6
curvature_samples = 8
curvature_batch_size = 8
trace_products = 6
density_probes = 1
density_steps = 4
robustness_freqs = 2
cka_batch_size = 8
groups = 2
"""
N_TRAIN, N_TEST = 40, 48

#: 0 has no meaning: refused in one line.
ERROR_KEYS = ("batch_size", "cka_batch_size", "groups", "robustness_freqs", "surface_radius",
              "surface_planes", "spectrum_batch_size", "top_k", "lanczos_max_iter",
              "curvature_samples", "curvature_batch_size", "density_steps")

#: 0 works: key -> (--only analysis, check of the summary and the output folder).


def _raw(out: Path, name: str) -> dict:
    (f,) = (out / "raw").glob(f"*/{name}")
    return json.loads(f.read_text())


def _hessian(s: dict) -> dict:
    return s["hessian"]["resnet_tiny"]


def _robust(s: dict) -> dict:
    return s["robustness"]["resnet_tiny"]


def _no_noise(s, out):
    r = _robust(s)
    assert r["acc"] == [r["clean_acc"]] * len(r["acc"])  # zero amplitude: no noise at all
    raw = _raw(out, "robustness.json")
    assert raw["loss"] == pytest.approx([raw["clean_loss"]] * len(raw["loss"]), rel=1e-6)


def _trace_off(s, out):
    h = _hessian(s)
    assert h["trace"] is None and h["trace_note"] == "not computed (trace_products = 0)"
    assert "not computed (trace_products = 0)" in (out / "report.html").read_text()


def _density_off(s, out):
    h = _hessian(s)
    assert h["density"] == "not computed (density_probes = 0)"
    assert not any("density" in f for f in s["figures"].get("hessian", []))
    assert not list((out / "raw").glob("*/density.h5"))
    assert "not computed (density_probes = 0)" in (out / "report.html").read_text()


def _paper_width(s, out):
    from landscape.features.robustness import PAPER_WIDTH
    assert _robust(s)["width"] == pytest.approx(PAPER_WIDTH)


WORK_KEYS = {
    "seed": ("variance", lambda s, out: s["settings"]["seed"] == 0),
    "eval_samples": ("variance", lambda s, out: s["models"][0]["eval_samples"] == N_TEST),
    "samples": ("variance", lambda s, out: _raw(out, "variance.json")["n_images"] == N_TEST),
    "lesion_samples": ("lesion", lambda s, out: _raw(out, "lesion.json")["n_images"] == N_TEST),
    "robustness_eps": ("robustness", _no_noise),
    "robustness_norm": ("robustness", None),  # with the radial protocol, see _EXTRA
    "robustness_width": ("robustness", _paper_width),
    "surface_samples": ("surface", lambda s, out: json.loads(next(
        (out / "raw").glob("*/surface.h5.key.json")).read_text())["settings"]["samples"]
        == N_TRAIN),
    "surface_wd": ("surface", lambda s, out: s["surface"]["resnet_tiny"]["wd"] == 0
                   and s["surface"]["resnet_tiny"]["loss"] == "NLL"),
    "hessian_wd": ("hessian", lambda s, out: _hessian(s)["wd"] == 0
                   and _hessian(s)["loss"] == "NLL"),
    "spectrum_batches": ("hessian", lambda s, out: _hessian(s)["spectrum"]["count"] >= 1),
    "lanczos_tol": ("hessian", lambda s, out: len(_hessian(s)["top_eigenvalues"]) == 1),
    "trace_products": ("hessian", _trace_off),
    "density_probes": ("hessian", _density_off),
    # every read-out frequency counts: no Fourier comparison is dropped as low-frequency
    "fourier_min_freq": ("fourier", lambda s, out: s["settings"]["fourier_min_freq"] == 0
                         and not any("no high frequency" in str(d) for c in s["claims"]
                                     for d in c.get("dropped") or [])),
}
_EXTRA = {"robustness_norm": ["--set", "robustness_protocol=radial"]}
_SLOW = {"hessian", "surface"}


def _numeric_keys() -> list[str]:
    out = []
    for f in dataclasses.fields(AnalyzeConfig):
        t = str(f.type)
        if t.replace(" | None", "") in ("int", "float"):
            out.append(f.name)
    return out


def test_every_numeric_key_is_classified():
    keys = _numeric_keys()
    assert len(keys) >= 20
    assert set(keys) == set(ERROR_KEYS) | set(WORK_KEYS), \
        "classify the new numeric key of AnalyzeConfig in ERROR_KEYS or WORK_KEYS"
    assert not set(ERROR_KEYS) & set(WORK_KEYS)


@pytest.mark.parametrize("key", ERROR_KEYS)
def test_zero_is_refused_by_make_config(key):
    with pytest.raises(LandscapeError, match=key):
        make_config("quick", overrides={key: 0})


def test_the_other_robustness_protocols_amplitude_is_refused():
    with pytest.raises(LandscapeError, match="robustness_norm applies to the radial"):
        make_config("quick", overrides={"robustness_norm": 0})
    with pytest.raises(LandscapeError, match="robustness_eps applies to the paper"):
        make_config("quick", overrides={"robustness_eps": 0, "robustness_protocol": "radial"})
    assert make_config("quick", overrides={"robustness_norm": 0,
                                           "robustness_protocol": "radial"}).robustness_norm == 0


def test_too_few_trace_products_are_refused():
    with pytest.raises(LandscapeError, match="trace_products must be 0"):
        make_config("quick", overrides={"trace_products": 5})


@pytest.mark.parametrize("key", WORK_KEYS)
def test_zero_is_accepted_by_make_config(key):
    extra = {"robustness_protocol": "radial"} if key == "robustness_norm" else {}
    assert getattr(make_config("quick", overrides={key: 0, **extra}), key) == 0


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("setzero")
    root = d / "fm"
    write_fmnist(root, N_TRAIN, N_TEST, seed=0, shuffle_labels=False)
    torch.manual_seed(0)
    m = fmnist_model()
    ck = checkpoint.save(d / "resnet_tiny.pt", m, dataset="fashion-mnist", mean=[0.286],
                         std=[0.353], seed=0, epoch=0)
    (d / "tiny.toml").write_text(TINY)
    return d, root, ck


def _analyze(setup, out: Path, only: str, *extra: str) -> tuple[int, str]:
    d, root, ck = setup
    return cli_main(["analyze", str(ck), "--config", str(d / "tiny.toml"), "--data-root",
                     str(root), "--device", "cpu", "--out", str(out), "--only", only, "--quiet",
                     *extra])


@pytest.mark.parametrize("key", ERROR_KEYS)
def test_cli_zero_is_one_line_before_any_work(key, setup, tmp_path, capsys):
    out = tmp_path / "out"
    rc = _analyze(setup, out, "variance", "--set", f"{key}=0")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("landscape: error: "), err
    assert key in err[0] and "Traceback" not in err[0]
    assert not out.exists()  # refused before anything is written


def _work_params():
    for key, (only, _) in WORK_KEYS.items():
        marks = [pytest.mark.slow] if only in _SLOW else []
        yield pytest.param(key, marks=marks, id=key)


@pytest.mark.parametrize("key", list(_work_params()))
def test_cli_zero_works_and_says_what_it_did(key, setup, tmp_path, capsys):
    only, check = WORK_KEYS[key]
    out = tmp_path / "out"
    rc = _analyze(setup, out, only, "--set", f"{key}=0", *_EXTRA.get(key, []))
    err = capsys.readouterr().err
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"][key] == 0
    if key == "robustness_norm":
        assert _robust(summary)["protocol"] == "radial" and _robust(summary)["noise_norm"] == 0
        _no_noise(summary, out)
    else:
        result = check(summary, out)
        assert result is None or result is True
