"""One path per quantity (issue 31): ``landscape <quantity>`` and ``landscape analyze --only
<quantity>`` on the same checkpoint write equal numbers and the same result identity, because
both call the one runner of :mod:`landscape.runners`.

Both paths get the same run sizes (images, forward batch size, grid, frequencies: analyze's
budget sizes them, the command's options do); every setting of the quantity is left at its
default on both sides, except the surface's augmentation, which analyze's paper preset turns on
(``--augment`` for the command). The surface's plan is pinned on both sides (an automatic plan
is measured, and e.g. BN folding changes the rounding). Tiny random IDX data written here.
"""
from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import h5py
import landscape_models as models
import numpy as np
import pytest
import torch

from landscape import checkpoint
from landscape.cli import main as cli_main

QUANTITIES = ("fourier", "variance", "robustness", "cka", "lesion", "surface")
N = 16  # images
PLAN = {"batch_size": 8, "points_per_pass": 1, "channels_last": False, "fold_bn": False,
        "first_layer": False, "workers": 1}


def _idx(arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) \
        + arr.tobytes()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Fashion-MNIST-shaped IDX files of random images and a resnet_tiny checkpoint."""
    d = tmp_path_factory.mktemp("one_path")
    rng = np.random.default_rng(0)
    root = d / "fm"
    root.mkdir()
    for prefix, n in (("train", 40), ("t10k", 48)):
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(_idx(rng.integers(0, 256, size=(n, 28, 28)))))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(_idx(np.arange(n) % 10)))
    torch.manual_seed(0)
    m = models.create("resnet_tiny", num_classes=10, in_chans=1, img_size=28)
    ck = checkpoint.save(d / "resnet_tiny.pt", m, dataset="fashion-mnist", mean=[0.286],
                         std=[0.353], seed=0, epoch=0)
    return d, root, ck


def _command(q: str, ck: Path, root: Path, out: Path) -> Path:
    """Run ``landscape <q>``; returns its result file."""
    common = [str(ck), "--data-root", str(root), "--out", str(out), "--device", "cpu",
              "--quiet", "--samples", str(N)]
    if q == "surface":
        argv = ["surface", *common, "--split", "train", "--grid", "-1:1:3", "--ygrid",
                "-1:1:3", "--augment", "--no-plot", "--batch-size", "8", "--points-per-pass",
                "1", "--channels-last", "off", "--fold-bn", "off", "--first-layer", "off",
                "--workers", "1"]
    else:
        argv = [q, *common, *([] if q == "cka" else ["--batch-size", "8"])]
    assert cli_main(argv) == 0
    if q == "surface":
        return out / "surface.h5"
    from landscape.runners import FEATURE_RUNNERS
    return out / f"{q}_resnet_tiny.{FEATURE_RUNNERS[q][2]}"


def _analyze(q: str, ck: Path, root: Path, out: Path) -> Path:
    """Run ``landscape analyze --only <q>``; returns its raw result file."""
    plan = ",".join(f"{k}={str(v).lower()}" for k, v in PLAN.items())
    sets = [f"samples={N}", f"lesion_samples={N}", "batch_size=8", "robustness_freqs=11",
            f"surface_samples={N}", 'surface_grid="-1:1:3"', 'surface_ygrid="-1:1:3"',
            "surface_planes=1", f"surface_plan={plan}", "eval_samples=16"]
    argv = ["analyze", str(ck), "--data-root", str(root), "--out", str(out), "--only", q,
            "--device", "cpu", "--quiet", *[a for s in sets for a in ("--set", s)]]
    assert cli_main(argv) == 0
    (raw,) = (out / "raw").iterdir()
    if q == "surface":
        return raw / "surface.h5"
    from landscape.runners import FEATURE_RUNNERS
    return raw / f"{q}.{FEATURE_RUNNERS[q][2]}"


def _numbers(q: str, path: Path) -> dict[str, np.ndarray]:
    """The stored result arrays of ``path``."""
    if q == "surface":
        with h5py.File(path, "r") as f:
            return {k: np.asarray(f[k]) for k in ("train_loss", "train_acc", "xcoordinates",
                                                  "ycoordinates")}
    from landscape.workflows.features import result_loader
    r = result_loader(q)(path)
    keys = {"fourier": ("spectra", "high_frequency", "per_image"),
            "variance": ("variance", "per_image"),
            "robustness": ("freqs", "accuracy", "loss", "clean_accuracy", "correct"),
            "cka": ("cka", "hsic_batches"), "lesion": ("accuracy", "loss", "correct")}[q]
    return {k: _flat(getattr(r, k)) for k in keys}


def _flat(v) -> np.ndarray:
    """A value or a ragged list of arrays (per-block spectra) as one float vector."""
    if isinstance(v, (list, tuple)):
        return (np.concatenate([_flat(x) for x in v]) if len(v) else np.zeros(0))
    return np.asarray(v, dtype=float).ravel()


def _identity(q: str, path: Path) -> dict:
    if q == "surface":
        with h5py.File(path, "r") as f:
            return json.loads(f.attrs["key"])
    from landscape.workflows.features import result_loader
    return result_loader(q)(path).config["identity"]["settings"]


@pytest.mark.parametrize("q", QUANTITIES)
def test_command_and_analyze_write_equal_numbers(q, inputs, capsys):
    d, root, ck = inputs
    a = _command(q, ck, root, d / f"cmd_{q}")
    b = _analyze(q, ck, root, d / f"an_{q}")
    capsys.readouterr()
    na, nb = _numbers(q, a), _numbers(q, b)
    assert set(na) == set(nb)
    for k in na:
        assert na[k].size, (q, k)  # something was computed
        np.testing.assert_array_equal(na[k], nb[k], err_msg=f"{q}: {k}")
    assert _identity(q, a) == _identity(q, b)
    assert _identity(q, a)["samples"] == N


def test_the_quantities_are_every_runner():
    from landscape.runners import FEATURE_RUNNERS
    assert set(QUANTITIES) == {*FEATURE_RUNNERS, "surface"}


def test_analyze_verifies_a_stored_surface_as_the_command_does(inputs, capsys):
    """A surface.h5 whose values no longer match their chunk checksums is recomputed by
    ``analyze`` (it used to be reused as it was), to the numbers first written."""
    d, root, ck = inputs
    out = d / "an_torn"
    first = _numbers("surface", _analyze("surface", ck, root, out))
    path = _analyze("surface", ck, root, out)  # reused as it is
    with h5py.File(path, "r+") as f:
        f["train_loss"][0, 0] = 123.0  # a torn write: done, but the checksum no longer matches
    capsys.readouterr()
    again = _numbers("surface", _analyze("surface", ck, root, out))
    assert "does not match the checksum" in capsys.readouterr().err
    np.testing.assert_array_equal(again["train_loss"], first["train_loss"])
