"""Max-eigenvalue spectrum: per-batch top-k, HDF5 raw results, resume, summaries, plot, CLI."""
from __future__ import annotations

import json
import os
import sys

import h5py
import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from test_hessian import TinyCNN  # noqa: E402

from landscape import spectrum as S  # noqa: E402
from landscape.errors import LandscapeError  # noqa: E402
from landscape.hessian import HessianOperator, dense_hessian, top_eigenvalues  # noqa: E402

torch.set_num_threads(1)


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    m = TinyCNN().double()
    x = torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return m, x, y


def _aug(x, g):
    return torch.roll(x, int(torch.randint(-1, 2, (1,), generator=g)), dims=-1)


CFG = dict(k=3, batch_size=4, n_batches=6, seed=1, tol=1e-9, wd=0.01, augment=True)


def test_batches_and_summary():
    idx = S.spectrum_batches(1000, 16, None, 0.1, seed=0)
    assert idx.shape == (6, 16) and len(np.unique(idx)) == 96  # 10% of 1000 -> 6 batches of 16
    assert np.array_equal(idx, S.spectrum_batches(1000, 16, None, 0.1, seed=0))
    with pytest.raises(LandscapeError):
        S.spectrum_batches(10, 16, 2)
    s = S.spectrum_summary(np.array([-1.0, 2.0, 4.0, np.nan]))
    assert s["negative_share"] == pytest.approx(1 / 3) and s["mean_positive"] == 3.0


def test_spectrum_matches_direct_and_dense(tmp_path):
    m, x, y = _data()
    cfg = S.SpectrumConfig(**CFG)
    r = S.max_eigenvalue_spectrum(m, x, y, cfg, out=tmp_path / "s.h5", augment=_aug, progress=False)
    assert r.eigenvalues.shape == (6, 3) and r.finished.all()
    # batch 2 recomputed directly: same augmentation seed, same operator
    i = 2
    ii = torch.as_tensor(r.sample_indices[i])
    op = HessianOperator(m, (x[ii], y[ii]), wd=0.01, augment=_aug, augment_seed=S._augment_seed(1, i))
    direct = top_eigenvalues(op, 3, "LM", tol=1e-9, seed=1 + i)
    np.testing.assert_allclose(r.eigenvalues[i], direct.eigenvalues, rtol=1e-12)
    # and against the dense Hessian of the augmented batch (+ wd on every eigenvalue)
    xa = _aug(x[ii], torch.Generator().manual_seed(S._augment_seed(1, i)))
    ev = torch.linalg.eigvalsh(dense_hessian(m, xa, y[ii])).numpy() + 0.01
    ref = ev[np.argsort(-np.abs(ev))[:3]]
    np.testing.assert_allclose(r.eigenvalues[i], ref, rtol=1e-6)
    # raw file: datasets and attrs
    with h5py.File(tmp_path / "s.h5") as f:
        assert f["eigenvalues"].shape == (6, 3) and f["sample_indices"].shape == (6, 4)
        assert json.loads(f.attrs["config"])["k"] == 3 and int(f.attrs["seed"]) == 1
        assert "torch" in json.loads(f.attrs["versions"])
        summ = json.loads(f.attrs["summary"])
    assert summ["negative_share"] == pytest.approx(float((r.values() < 0).mean()))
    loaded = S.SpectrumResult.load(tmp_path / "s.h5")
    np.testing.assert_array_equal(loaded.eigenvalues, r.eigenvalues)
    from landscape.plots.hessian import plot_spectrum
    paths = plot_spectrum([tmp_path / "s.h5"], tmp_path / "fig", labels=["cnn"])
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)


def test_resume_computes_only_unfinished(tmp_path, monkeypatch):
    m, x, y = _data()
    cfg = S.SpectrumConfig(**CFG)
    path = tmp_path / "s.h5"
    full = S.max_eigenvalue_spectrum(m, x, y, cfg, out=path, augment=_aug, progress=False)
    with h5py.File(path, "a") as f:  # as if interrupted after 4 batches
        ev = f["eigenvalues"][()]
        ev[[1, 4]] = np.nan
        f["eigenvalues"][...] = ev
    calls = []
    orig = S._batch_eigen

    def spy(*a, **k):
        calls.append(a[4])
        return orig(*a, **k)

    monkeypatch.setattr(S, "_batch_eigen", spy)
    again = S.max_eigenvalue_spectrum(m, x, y, cfg, out=path, augment=_aug, progress=False)
    assert sorted(calls) == [1, 4]
    np.testing.assert_array_equal(again.eigenvalues, full.eigenvalues)
    calls.clear()
    S.max_eigenvalue_spectrum(m, x, y, cfg, out=path, augment=_aug, progress=False)
    assert calls == []  # finished: nothing recomputed
    with pytest.raises(LandscapeError, match="different settings"):
        S.max_eigenvalue_spectrum(m, x, y, S.SpectrumConfig(**(CFG | {"k": 2})), out=path,
                                  augment=_aug, progress=False)


def test_cli_hessian(tmp_path):
    import models
    if "resnet_tiny" not in models.names():
        pytest.skip("resnet_tiny not built yet")
    try:
        from landscape.checkpoint import save
        from landscape.data import dataset_spec
        from landscape.commands import common  # noqa: F401
    except ImportError as e:
        pytest.skip(f"lead's modules not ready: {e}")
    if not os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") \
            and not os.environ.get("LANDSCAPE_DATA"):
        pytest.skip("Fashion-MNIST not installed")
    torch.manual_seed(0)
    spec = dataset_spec("fashion-mnist")
    model = models.create("resnet_tiny", num_classes=10, in_chans=1, img_size=28)
    ckpt = save(tmp_path / "m.pt", model, dataset="fashion-mnist", mean=list(spec.mean),
                std=list(spec.std), seed=0)
    from landscape.cli import main
    out = tmp_path / "out"
    argv = [str(ckpt), "--samples", "200", "--batch-size", "8", "--batches", "2", "--top-k", "2",
            "--tol", "1e-3", "--trace", "--probes", "6", "--density", "--slq-probes", "1",
            "--slq-steps", "6", "--curvature-samples", "16", "--curvature-batch-size", "8",
            "--wd", "5e-4", "--augment", "--device", "cpu", "--out", str(out), "--quiet"]
    assert main(["hessian", *argv]) == 0
    for name in ("config.json", "summary.json", "spectrum.h5", "spectrum.png", "spectrum.pdf",
                 "density.h5", "density.png"):
        assert (out / name).exists(), name
    summ = json.loads((out / "summary.json").read_text())
    assert summ["spectrum"]["n_batches_finished"] == 2 and "trace" in summ
    assert main(["hessian", *argv]) == 0  # resumed: nothing left to do
    assert main(["hessian", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
