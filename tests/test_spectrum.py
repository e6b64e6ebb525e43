"""Max-eigenvalue spectrum: per-batch top-k, HDF5 raw results, resume, summaries, plot, CLI."""
from __future__ import annotations

import json
import os
import sys
import time

import h5py
import numpy as np
import pytest
import torch
from cases import TinyCNN, dense_ef, dense_ggn, fashion_mnist_available, fmnist_model, write_fmnist
from cases import tiny_cnn_data as _data

from landscape.curvature import HessianOperator, dense_hessian, top_eigenvalues  # noqa: E402
from landscape.curvature import spectrum as S  # noqa: E402
from landscape.errors import LandscapeError  # noqa: E402

torch.set_num_threads(1)



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
    op = HessianOperator(m, (x[ii], y[ii]), wd=0.01, augment=_aug,
                         augment_seed=S._augment_seed(1, i))
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
    from landscape.reporting.plots.hessian import plot_spectrum
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
    with pytest.raises(LandscapeError, match=r"other settings \(k: 3 -> 2"):
        S.max_eigenvalue_spectrum(m, x, y, S.SpectrumConfig(**(CFG | {"k": 2})), out=path,
                                  augment=_aug, progress=False)


def test_cli_hessian(tmp_path):
    """On the installed Fashion-MNIST, or on IDX files written here when it is absent."""

    from landscape.data import dataset_spec
    from landscape.loading.checkpoint import save
    root = []
    if not fashion_mnist_available():
        write_fmnist(tmp_path / "fm", n_train=256, n_test=10)
        root = ["--data-root", str(tmp_path / "fm")]
    torch.manual_seed(0)
    spec = dataset_spec("fashion-mnist")
    model = fmnist_model()
    ckpt = save(tmp_path / "m.pt", model, dataset="fashion-mnist", mean=list(spec.mean),
                std=list(spec.std), seed=0)
    from landscape.cli import main
    out = tmp_path / "out"
    argv = [str(ckpt), "--samples", "200", "--batch-size", "8", "--batches", "2", "--top-k", "2",
            "--tol", "1e-3", "--trace", "--probes", "6", "--density", "--slq-probes", "1",
            "--slq-steps", "6", "--curvature-samples", "16", "--curvature-batch-size", "8",
            "--wd", "5e-4", "--augment", "--device", "cpu", "--out", str(out), "--quiet", *root]
    assert main(["hessian", *argv]) == 0
    for name in ("config.json", "hessian_summary.json", "spectrum.h5", "spectrum.png",
                 "spectrum.pdf", "density.h5", "density.png"):
        assert (out / name).exists(), name
    summ = json.loads((out / "hessian_summary.json").read_text())
    assert summ["schema_version"] == 2 and summ["kind"] == "landscape-hessian"
    assert summ["spectrum"]["n_batches_finished"] == 2 and "trace" in summ
    assert main(["hessian", *argv]) == 0  # resumed: nothing left to do
    assert main(["hessian", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2


@pytest.mark.parametrize("kind", ["ggn", "ef"])
def test_spectrum_of_the_ggn_and_ef_against_dense(tmp_path, kind):
    m, x, y = _data()
    cfg = S.SpectrumConfig(**(CFG | {"curvature": kind, "augment": False, "negative": False,
                                     "which": "LA"}))
    r = S.max_eigenvalue_spectrum(m, x, y, cfg, out=tmp_path / "s.h5", progress=False)
    assert r.converged.all() and r.config["curvature"] == kind
    for i in range(cfg.n_batches):
        ii = torch.as_tensor(r.sample_indices[i])
        ref = (dense_ggn if kind == "ggn" else dense_ef)(m, x[ii], y[ii])
        ev = np.linalg.eigvalsh(ref.numpy())[::-1][:3] + 0.01  # + the L2 term (wd I)
        np.testing.assert_allclose(r.eigenvalues[i], ev, rtol=1e-7)
    # the Hessian's settings omit the key (older files keep their identity)
    assert "curvature" not in S.SpectrumConfig().to_dict()


def test_cli_hessian_curvature_option(tmp_path, capsys):
    from landscape.cli import main
    with pytest.raises(SystemExit):
        main(["hessian", "--help"])
    out = capsys.readouterr().out
    assert "--curvature {hessian,ggn,ef}" in out and "Gauss-Newton" in out


def test_lambda_min_recorded_against_dense(tmp_path):
    m, x, y = _data()
    cfg = S.SpectrumConfig(**(CFG | {"l2": "paper"}))
    r = S.max_eigenvalue_spectrum(m, x, y, cfg, out=tmp_path / "s.h5", augment=_aug, progress=False)
    assert r.converged.all()
    params = list(m.parameters())
    from landscape.curvature import l2_hessian
    L2 = l2_hessian(params, 0.01, "paper").dense()
    lmax = []
    for i in range(6):
        ii = torch.as_tensor(r.sample_indices[i])
        xa = _aug(x[ii], torch.Generator().manual_seed(S._augment_seed(1, i)))
        ev = torch.linalg.eigvalsh(dense_hessian(m, xa, y[ii]) + L2).numpy()
        np.testing.assert_allclose(r.min_eigenvalue[i], ev[0], rtol=1e-6)
        np.testing.assert_allclose(r.eigenvalues[i], ev[np.argsort(-np.abs(ev))[:3]], rtol=1e-6)
        lmax.append(ev[np.argsort(-np.abs(ev))[:3]].max())
    s = r.summary()
    assert s["wd"] == 0.01 and s["l2"] == "paper" and s["converged_share"] == 1.0
    assert s["lambda_min_negative_share"] == float((r.min_eigenvalue < 0).mean())
    ratio = np.abs(r.min_eigenvalue) / np.array(lmax)
    assert s["median_abs_min_over_max"] == pytest.approx(float(np.median(ratio)), rel=1e-6)
    loaded = S.SpectrumResult.load(tmp_path / "s.h5")
    np.testing.assert_array_equal(loaded.min_eigenvalue, r.min_eigenvalue)


def test_warm_start_gives_cold_values():
    """Five values per batch on 5 consecutive batches: warm-started chain == cold starts (1e-3)."""
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    m = TinyCNN().double()
    x = torch.randn(60, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (60,), generator=g)
    base = dict(k=5, batch_size=8, n_batches=5, seed=0, tol=1e-3, mode="double_backward")
    cold = S.max_eigenvalue_spectrum(m, x, y, S.SpectrumConfig(**base), progress=False)
    warm = S.max_eigenvalue_spectrum(m, x, y, S.SpectrumConfig(**base, warm_start=True, segment=5),
                                     progress=False)
    assert cold.finished.all() and warm.finished.all() and warm.converged.all()
    np.testing.assert_allclose(warm.eigenvalues, cold.eigenvalues, rtol=1e-3)
    np.testing.assert_allclose(warm.min_eigenvalue, cold.min_eigenvalue, rtol=1e-3)


def test_auto_mode_recorded_and_reused(tmp_path, monkeypatch):
    from landscape.curvature import modes
    monkeypatch.setattr(modes, "RULES", {})  # measure, as on an accelerator
    m, x, y = _data()
    cfg = S.SpectrumConfig(**(CFG | {"mode": "auto"}))
    path = tmp_path / "s.h5"
    full = S.max_eigenvalue_spectrum(m, x, y, cfg, out=path, augment=_aug, progress=False)
    with h5py.File(path, "r") as f:
        rec = json.loads(f.attrs["mode_chosen"])
    # both modes were timed and the faster one per product was kept
    per = rec["seconds_per_product"]
    assert set(per) == {"double_backward", "forward_over_reverse"} and rec["measure_s"] > 0
    assert rec["mode"] == min(per, key=per.get)
    # measured inside the first batch's own Lanczos products (no separate probe)
    assert rec["source"] == "probe" and rec["probe_products"] == 4
    assert full.n_products[0] >= rec["probe_products"]
    with h5py.File(path, "a") as f:  # as if interrupted
        ev = f["eigenvalues"][()]
        ev[3:] = np.nan
        f["eigenvalues"][...] = ev
    from landscape.curvature import modes

    def no_timing(*a, **k):
        raise AssertionError("the product mode was re-timed")

    monkeypatch.setattr(modes.ModeProbe, "__init__", no_timing)
    again = S.max_eigenvalue_spectrum(m, x, y, cfg, out=path, augment=_aug, progress=False)
    assert again.extra["mode_chosen"] == rec["mode"]
    np.testing.assert_array_equal(again.eigenvalues, full.eigenvalues)
    with h5py.File(path, "r") as f:
        assert json.loads(f.attrs["mode_chosen"]) == rec
    # a new spectrum of the same setting takes the persistent cache's choice: nothing measured
    other = S.max_eigenvalue_spectrum(m, x, y, cfg, out=tmp_path / "t.h5", augment=_aug,
                                      progress=False)
    assert other.extra["mode_choice"]["source"] == "cache"
    assert other.extra["mode_chosen"] == rec["mode"]
    # on the CPU with its rule: nothing measured, recorded as the rule's
    monkeypatch.setattr(modes, "RULES", {"cpu": "double_backward"})
    monkeypatch.setenv("LANDSCAPE_CACHE", "off")
    ruled = S.max_eigenvalue_spectrum(m, x, y, cfg, out=tmp_path / "u.h5", augment=_aug,
                                      progress=False)
    assert ruled.extra["mode_choice"]["source"] == "rule"
    assert ruled.extra["mode_chosen"] == "double_backward"


KILL_CHILD = """
import sys, time, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
import cases as T
from landscape.curvature import spectrum as S
m, x, y = T.tiny_cnn_data(n=80)
seen = set()

def loss(out, yb):
    seen.add(int(yb.sum()) * 1000 + len(yb))
    while {hang} and len(seen) > 6:  # hang inside the 6th distinct batch: killed there
        time.sleep(0.05)
    return torch.nn.functional.cross_entropy(out, yb)

cfg = S.SpectrumConfig(k=2, batch_size=4, n_batches=12, seed=1, tol=1e-9, mode={mode!r},
                       warm_start={warm}, segment=3)
S.max_eigenvalue_spectrum(m, x, y, cfg, out=sys.argv[1], loss_fn=loss, progress=False, chunk=1)
"""


@pytest.mark.parametrize("warm", [False, True])
def test_sigkill_resume_with_auto_mode_is_bitwise_identical(tmp_path, warm):
    """Killed mid-run (the child hangs inside a batch once some rows are on disk; the test waits
    on the file's contents, then SIGKILLs), resumed with mode auto: bitwise equal to an
    uninterrupted run in the recorded mode, which the resume reused (not re-timed), except the
    rows whose products included the measurement (the first batch, and with warm starts its
    chain): the measuring products alternate the two modes, equal to rounding."""
    import signal
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, OMP_NUM_THREADS="1", HDF5_USE_FILE_LOCKING="FALSE",
               PYTHONPATH=os.path.dirname(here))
    paths = {"killed": tmp_path / "killed.h5", "full": tmp_path / "full.h5"}
    for name in ("killed",):
        script = tmp_path / f"{name}.py"
        script.write_text(KILL_CHILD.format(tests=here, hang=True, warm=warm, mode="auto"))
        proc = subprocess.Popen([sys.executable, str(script), str(paths[name])], env=env)
        for _ in range(12000):  # wait on contents: at least two finished rows on disk
            if proc.poll() is not None:
                break
            try:
                with h5py.File(paths[name], "r") as f:
                    if (f["n_products"][()] >= 0).sum() >= 2:
                        break
            except (OSError, KeyError):
                pass
            time.sleep(0.05)
        assert proc.poll() is None, "the child finished or died before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with h5py.File(paths["killed"], "r") as f:
        partial = (f["n_products"][()] >= 0).sum()
        assert 2 <= partial < 12
        mode = json.loads(f.attrs["mode_chosen"])["mode"]
    for name, m_ in (("killed", "auto"), ("full", mode)):  # resume; uninterrupted, same mode
        script = tmp_path / f"{name}_run.py"
        script.write_text(KILL_CHILD.format(tests=here, hang=False, warm=warm, mode=m_))
        assert subprocess.run([sys.executable, str(script), str(paths[name])], env=env,
                              timeout=600).returncode == 0
    a, b = S.SpectrumResult.load(paths["killed"]), S.SpectrumResult.load(paths["full"])
    assert a.finished.all() and b.finished.all()
    with h5py.File(paths["killed"], "r") as f:
        assert json.loads(f.attrs["mode_chosen"])["mode"] == mode  # not re-timed
    probed = 3 if warm else 1
    for k in ("eigenvalues", "min_eigenvalue"):
        np.testing.assert_allclose(getattr(a, k)[:probed], getattr(b, k)[:probed], rtol=1e-9,
                                   err_msg=k)
    for k in ("eigenvalues", "residuals", "n_products", "min_eigenvalue", "min_residual"):
        np.testing.assert_array_equal(getattr(a, k)[probed:], getattr(b, k)[probed:], err_msg=k)


def test_per_batch_evidence_for_claims():
    ev = np.array([[3.0, -1.0], [np.nan, np.nan], [5.0, 2.0]])
    r = S.SpectrumResult(ev, ev * 0, np.array([4, -1, 6]), np.zeros((3, 2), int), {},
                         min_eigenvalue=np.array([-1.5, np.nan, -0.5]))
    assert r.per_batch() == {"lambda_max": [3.0, 5.0], "lambda_min": [-1.5, -0.5],
                             "negative_top_k": [1, 0], "top_k": 2}
    s = r.summary()
    assert s["lambda_min_negative_share"] == 1.0
    assert s["median_abs_min_over_max"] == pytest.approx(np.median([1.5 / 3, 0.5 / 5]))
