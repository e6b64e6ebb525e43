"""One path per quantity (issue 31): ``landscape <command>`` and ``landscape analyze --only
<analysis>`` on the same checkpoint, both with their DEFAULT settings, write equal numbers and
the same result identity, because both call the one runner of :mod:`landscape.runners` with
settings whose defaults live in one class each.

Nothing is passed to either side but the inputs (checkpoint, data folder, device, output) and
the flags that select what the command computes (``landscape hessian --trace --density``: the
estimates analyze's Hessian step takes). Two overrides are unavoidable and given to both sides
alike (:data:`HESSIAN_SIZES`, :data:`PLAN`): the Hessian's run sizes (the default 16 Lanczos
runs of up to 100 products, 5 + 5 extreme eigenvalues of the 128-image operator and a 30-step
SLQ take minutes on 2 shared cores even for this model; every other Hessian setting, the loss
preset and the image pool stay at their defaults), and the surface's evaluation plan (an
automatic plan is measured on the machine as it is loaded, and e.g. BN folding changes the
rounding). ``analyze``'s quick budget is taken as it is: its shrinking for models whose timed
probe predicts more than 3 minutes (``analyze.cost.adapt_quick``, a property of the machine as
loaded, not a setting; reported in ``summary.json``) is turned off here with ``--no-adapt``.
The checkpoint records a training weight decay and augmentation, so the paper loss preset (the
default of both) is exercised with wd > 0. A resnet_tiny of 1,406 parameters; tiny random
Fashion-MNIST from ``cases.write_fmnist``: 64 training and 64 test images.
"""
from __future__ import annotations

import json
from pathlib import Path

import cases
import h5py
import numpy as np
import pytest

from landscape.cli import main as cli_main
from landscape.loading import checkpoint

QUANTITIES = ("spectrum", "curvature", "surface", "fourier", "variance", "robustness", "cka",
              "lesion")
#: The analysis of ``landscape analyze --only`` that computes each quantity.
ANALYSIS = {"spectrum": "hessian", "curvature": "hessian"}
PLAN = {"batch_size": 64, "points_per_pass": 9, "channels_last": False, "fold_bn": False,
        "first_layer": False, "workers": 1}
RECIPE = {"weight_decay": 0.05, "augment": {"pad": 2, "flip": True}}
#: The Hessian's run sizes, the same on both sides (see module doc): (command option, analyze
#: key, value).
HESSIAN_SIZES = [("--batches", "spectrum_batches", 2), ("--top-k", "top_k", 2),
                 ("--curvature-top-k", None, 2), ("--max-iter", "lanczos_max_iter", 12),
                 ("--curvature-samples", "curvature_samples", 16),
                 ("--probes", "trace_products", 6), ("--slq-steps", "density_steps", 6)]
TINY_RESNET = {"num_blocks": (1, 1), "widths": (4, 8), "strides": (2, 2)}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A fake Fashion-MNIST folder and a resnet_tiny checkpoint that records its recipe."""
    d = tmp_path_factory.mktemp("one_path")
    root = d / "fm"
    cases.write_fmnist(root, n_train=64, n_test=64)
    ck = checkpoint.save(d / "resnet_tiny.pt", cases.fmnist_model(**TINY_RESNET),
                         dataset="fashion-mnist",
                         mean=[0.286], std=[0.353], seed=0, epoch=0, extra=RECIPE)
    return d, root, ck


def _common(root: Path, out: Path) -> list[str]:
    return ["--data-root", str(root), "--out", str(out), "--device", "cpu", "--quiet"]


def _command(q: str, ck: Path, root: Path, out: Path) -> Path:
    """``landscape <q>`` with its defaults; returns its output folder."""
    if q in ("spectrum", "curvature"):
        argv = ["hessian", str(ck), *_common(root, out), "--trace", "--density",
                *[a for opt, _, v in HESSIAN_SIZES for a in (opt, str(v))]]
    elif q == "surface":  # the plan pinned as in _analyze (see module doc)
        argv = ["surface", str(ck), *_common(root, out), "--no-plot",
                "--batch-size", str(PLAN["batch_size"]), "--points-per-pass", "9",
                "--channels-last", "off", "--fold-bn", "off", "--first-layer", "off",
                "--workers", "1"]
    else:
        argv = [q, str(ck), *_common(root, out)]
    assert cli_main(argv) == 0
    return out


def _analyze(q: str, ck: Path, root: Path, out: Path) -> Path:
    """``landscape analyze --only <analysis>`` with its defaults; returns its raw folder."""
    argv = ["analyze", str(ck), *_common(root, out), "--only", ANALYSIS.get(q, q), "--no-adapt"]
    if q == "surface":
        plan = ",".join(f"{k}={str(v).lower()}" for k, v in PLAN.items())
        argv += ["--set", f"surface_plan={plan}"]
    if ANALYSIS.get(q) == "hessian":  # top_k is the spectrum's and the operator's
        argv += [a for _, key, v in HESSIAN_SIZES if key for a in ("--set", f"{key}={v}")]
    assert cli_main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "adapted" not in summary["settings"]  # the quick budget as it is
    (raw,) = (out / "raw").iterdir()
    return raw


def _files(q: str, folder: Path, by: str) -> dict[str, Path]:
    from landscape.runners import FEATURE_RUNNERS
    if q == "spectrum":
        return {"spectrum": folder / "spectrum.h5"}
    if q == "curvature":
        return {"curvature": folder / "curvature.json", "density": folder / "density.h5"}
    if q == "surface":  # analyze's 3 planes, as the command's
        return {f"surface{s}": folder / f"surface{s}.h5" for s in ("", "_p1", "_p2")}
    ext = FEATURE_RUNNERS[q][2]
    return {q: folder / (f"{q}_resnet_tiny.{ext}" if by == "command" else f"{q}.{ext}")}


def _flat(v) -> np.ndarray:
    """A value or a ragged list of arrays (per-block spectra) as one float vector."""
    if isinstance(v, (list, tuple)):
        return (np.concatenate([_flat(x) for x in v]) if len(v) else np.zeros(0))
    return np.asarray(v, dtype=float).ravel()


def _numbers(q: str, files: dict[str, Path]) -> dict[str, np.ndarray]:
    """The stored result arrays, read from the written files."""
    if q == "spectrum":
        with h5py.File(files["spectrum"], "r") as f:
            return {k: np.asarray(f[k], dtype=float) for k in (
                "eigenvalues", "residuals", "n_products", "min_eigenvalue", "min_residual",
                "converged", "sample_indices")}
    if q == "curvature":
        c = json.loads(files["curvature"].read_text())
        out = {k: _flat(c[k]["eigenvalues"]) for k in ("top", "bottom")}
        out.update(trace=_flat([c["trace"]["trace"], c["trace"]["stderr"]]),
                   n=_flat([c["n_samples"], c["n_params"], c["wd"]]))
        with h5py.File(files["density"], "r") as f:
            out.update({k: np.asarray(f[k], dtype=float) for k in ("grid", "density", "nodes",
                                                                    "weights")})
        return out
    if q == "surface":
        out = {}
        for plane, path in files.items():
            with h5py.File(path, "r") as f:
                out.update({f"{plane}:{k}": np.asarray(f[k]) for k in (
                    "train_loss", "train_acc", "train_loss_l2_paper", "xcoordinates",
                    "ycoordinates")})
        return out
    from landscape.workflows.features import result_loader
    r = result_loader(q)(files[q])
    keys = {"fourier": ("spectra", "high_frequency", "per_image"),
            "variance": ("variance", "per_image"),
            "robustness": ("freqs", "accuracy", "loss", "clean_accuracy", "correct"),
            "cka": ("cka", "hsic_batches"), "lesion": ("accuracy", "loss", "correct")}[q]
    return {k: _flat(getattr(r, k)) for k in keys}


def _identity(q: str, files: dict[str, Path]) -> dict:
    """The settings that identify the result, as its file records them."""
    if q == "spectrum":
        with h5py.File(files["spectrum"], "r") as f:
            return json.loads(f.attrs["identity"])
    if q == "curvature":
        return json.loads(files["curvature"].read_text())["config"]["identity"]["settings"]
    if q == "surface":
        keys = {}
        for plane, path in files.items():
            with h5py.File(path, "r") as f:
                keys[plane] = json.loads(f.attrs["key"])
        return keys
    from landscape.workflows.features import result_loader
    return result_loader(q)(files[q]).config["identity"]["settings"]


@pytest.fixture(scope="module")
def runs(inputs):
    """{(quantity, path): output folder}, each run once (the spectrum and the curvature come
    from one `landscape hessian --trace --density` and one `analyze --only hessian`)."""
    d, root, ck = inputs
    done: dict[tuple[str, str], Path] = {}

    def get(q: str, by: str) -> Path:
        key = (ANALYSIS.get(q, q), by)
        if key not in done:
            out = d / f"{by}_{key[0]}"
            done[key] = (_command if by == "command" else _analyze)(q, ck, root, out)
        return done[key]
    return get


@pytest.mark.parametrize("q", QUANTITIES)
def test_command_and_analyze_write_equal_numbers_by_default(q, runs, capsys):
    a, b = _files(q, runs(q, "command"), "command"), _files(q, runs(q, "analyze"), "analyze")
    capsys.readouterr()
    na, nb = _numbers(q, a), _numbers(q, b)
    assert set(na) == set(nb)
    for k in na:
        assert na[k].size, (q, k)  # something was computed
        np.testing.assert_array_equal(na[k], nb[k], err_msg=f"{q}: {k}")
    assert _identity(q, a) == _identity(q, b)


def test_the_defaults_are_the_paper_loss_and_the_quick_budget(runs):
    """What the defaults computed: the checkpoint's training weight decay on augmented images
    (the paper preset), mini-batches of 16 from the pool analyze draws, Hutch++ alone, three
    9 x 9 planes."""
    spec = _identity("spectrum", _files("spectrum", runs("spectrum", "command"), "command"))
    cfg = spec["settings"]
    assert (cfg["wd"], cfg["l2"], cfg["augment"]) == (0.05, "paper", True)
    assert (cfg["n_batches"], cfg["batch_size"], cfg["k"]) == (2, 16, 2)
    curv = json.loads((runs("curvature", "command") / "curvature.json").read_text())
    assert curv["n_samples"] == 16 and curv["wd"] == 0.05 and "pad=2" in curv["augment"]
    assert len(curv["top"]["eigenvalues"]) == 2 and "hutchinson" not in curv
    meta = json.loads((runs("spectrum", "command") / "hessian_summary.json").read_text())
    assert meta["n_data"] == 32  # max(curvature samples, 2 batches of 16) images
    surf = _numbers("surface", _files("surface", runs("surface", "command"), "command"))
    assert surf["surface_p2:train_loss"].shape == (9, 9)  # 3 planes of 9 x 9
    assert (surf["surface:train_loss_l2_paper"] > surf["surface:train_loss"]).all()  # wd 0.05
    assert not np.array_equal(surf["surface:train_loss"], surf["surface_p1:train_loss"])


def test_the_quantities_are_every_runner():
    from landscape.runners import FEATURE_RUNNERS
    assert set(QUANTITIES) == {*FEATURE_RUNNERS, "surface", "spectrum", "curvature"}


def test_analyze_verifies_a_stored_surface_as_the_command_does(runs, inputs, capsys):
    """A surface.h5 whose values no longer match their chunk checksums is recomputed by
    ``analyze`` (it used to be reused as it was), to the numbers first written."""
    d, root, ck = inputs
    raw = runs("surface", "analyze")
    first = _numbers("surface", {"surface": raw / "surface.h5"})["surface:train_loss"]
    with h5py.File(raw / "surface.h5", "r+") as f:
        f["train_loss"][0, 0] = 123.0  # a torn write: done, but the checksum no longer matches
    capsys.readouterr()
    again = _analyze("surface", ck, root, raw.parent.parent)
    assert "does not match the checksum" in capsys.readouterr().err
    np.testing.assert_array_equal(_numbers("surface", {"surface": again / "surface.h5"})[
        "surface:train_loss"], first)
