"""Surface files: a resume after SIGKILL with an automatic plan is bitwise identical, a torn
final write is detected and only its chunk recomputed, plan choices are recorded and pinned,
coordinates stay out of attributes and a large grid prints its estimate first."""
import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn

from landscape import surface as S
from landscape.errors import LandscapeError
from landscape.surface import directions as D

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, sys, time, numpy as np, torch, torch.nn as nn
    torch.set_num_threads(1)
    from landscape import surface as S
    from landscape.surface import directions as D
    path, plan, hang_after = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    if hang_after:  # this run stops for good before its chunk number hang_after + 1
        put, calls = S.SurfaceFile.put, []
        def slow_put(self, *a, **k):
            calls.append(1)
            if len(calls) > hang_after:
                time.sleep(3600)
            return put(self, *a, **k)
        S.SurfaceFile.put = slow_put
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 3)).double()
    m[1].running_mean.uniform_(-0.5, 0.5); m[1].running_var.uniform_(0.5, 1.5)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(48, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (48,), generator=g)
    dirs = [D.random_direction(m, 1), D.random_direction(m, 2)]
    S.compute_surface(m, dirs, x, y, np.linspace(-1, 1, 5), np.linspace(-1, 1, 5), path,
                      progress=False, identity={"checkpoint_sha256": "x"}, wd=1e-3, **plan)
""")


def _datasets(path):
    with h5py.File(path, "r", locking=False) as f:
        return {k: np.asarray(f[k]) for k in f}, dict(f["test_loss"].attrs)


def test_resume_after_sigkill_with_automatic_plan_is_bitwise_identical(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    part, full = tmp_path / "part.h5", tmp_path / "full.h5"
    proc = subprocess.Popen([sys.executable, str(script), str(part), "{}", "3"], env=env)
    try:  # wait on the file's contents: three chunks checksummed and done, then kill
        deadline = time.time() + 300  # a hung test fails instead of waiting forever
        while time.time() < deadline and proc.poll() is None:
            try:
                with h5py.File(part, "r", locking=False) as f:
                    if int((np.asarray(f["test_chunk_crc"]) != 0).sum()) >= 3 and \
                            int(np.asarray(f["test_done"]).sum()) >= 3:
                        break
            except (OSError, KeyError):
                pass
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    ds, attrs = _datasets(part)
    done = ds["test_done"].astype(bool)
    assert 3 <= done.sum() < 25 and np.isnan(ds["test_loss"][~done]).all()
    recorded = S.SurfaceFile.read(part).stored_plan("test")
    assert recorded.measured["seconds_per_point"] > 0
    # the uninterrupted run, with the plan the automatic one recorded
    pinned = {k: v for k, v in recorded.key().items()}
    pinned["points_per_flush"] = int(attrs["points_per_flush"])
    subprocess.run([sys.executable, str(script), str(full), json.dumps(pinned), "0"], check=True,
                   env=env, timeout=300)
    subprocess.run([sys.executable, str(script), str(part), "{}", "0"], check=True, env=env,
                   timeout=300)
    a, a_attrs = _datasets(full)
    b, b_attrs = _datasets(part)
    assert sorted(a) == sorted(b)
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True), k
    assert b["test_done"].all()
    assert a_attrs["plan"] == b_attrs["plan"]
    assert b_attrs["plan_measurements"] == attrs["plan_measurements"]  # not measured again


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(x)


def tiny(n=12):
    torch.manual_seed(0)
    m = Tiny().double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 6, generator=g, dtype=torch.float64)
    return m, x, torch.randint(0, 3, (n,), generator=g)


PINNED = dict(batch_size=4, points_per_pass=1, channels_last=False, fold_bn=False, workers=1,
              first_layer=False)


def _run(m, x, y, path, xs, ys, **kw):
    dirs = [D.random_direction(m, 1, biasbn=True), D.random_direction(m, 2, biasbn=True)]
    return S.compute_surface(m, dirs, x, y, xs, ys, path, progress=False, wd=0.01,
                             **{**PINNED, **kw})


def _tear(path, how):
    """Damage the last chunk (points 12..14 of a 3x5 grid written in chunks of 4)."""
    with h5py.File(path, "r", locking=False) as f:
        ds = f["test_loss"]  # the last dataset in the file
        off = ds.id.get_offset()
        end = off + ds.id.get_storage_size()
    size = os.path.getsize(path)
    if how == "truncate":
        assert end == size  # values are the file's tail: cut the last point's value in half
        os.truncate(path, size - 4)
    elif how == "corrupt":
        with open(path, "r+b") as f:
            f.seek(off + 8 * 13)
            f.write(b"\x00\x01\x02\x03")
    else:  # done flags on disk, values lost
        with h5py.File(path, "r+", locking=False) as f:
            f["test_loss"][2, 2:] = np.nan


@pytest.mark.parametrize("how", ["truncate", "corrupt", "values_lost"])
def test_torn_final_write_recomputes_only_that_chunk(tmp_path, how, capsys, monkeypatch):
    m, x, y = tiny()
    xs, ys = np.linspace(-1, 1, 5), np.linspace(-1, 1, 3)
    p = tmp_path / "s.h5"
    ref = _run(m, x, y, p, xs, ys, points_per_flush=4)
    _tear(p, how)
    seen = []
    orig = S.SurfaceEvaluator.evaluate

    def spy(self, pts):
        seen.append(np.array(pts))
        return orig(self, pts)
    monkeypatch.setattr(S.SurfaceEvaluator, "evaluate", spy)
    again = _run(m, x, y, p, xs, ys)
    assert "checksum" in capsys.readouterr().err
    assert len(seen) == 1 and np.array_equal(seen[0], S.grid_points(xs, ys)[12:15])
    for k, v in ref.arrays.items():
        assert np.array_equal(v, again.arrays[k], equal_nan=True), k


def test_plan_choices_recorded_and_pinned(tmp_path):
    m, x, y = tiny()
    xs = np.linspace(-1, 1, 3)
    p = tmp_path / "s.h5"
    _run(m, x, y, p, xs, None, fold_bn=None, first_layer=True)
    plan = S.SurfaceFile.read(p).stored_plan("test")
    assert plan.key() == {**PINNED, "compile": False, "first_layer": True}  # fold_bn: no pairs
    with pytest.raises(LandscapeError, match=r"\(first_layer: True -> False\)"):
        _run(m, x, y, p, xs, None, first_layer=False)
    with h5py.File(p) as f:  # settings in small attributes, coordinates in datasets
        sizes = [len(str(v)) for v in f.attrs.values()] + \
            [len(str(v)) for v in f["test_loss"].attrs.values()]
        assert max(sizes) < 2000 and "xcoordinates" in f


def test_large_grid_prints_estimate_and_small_attributes(tmp_path, capsys):
    m, x, y = tiny(4)
    xs = np.linspace(-1, 1, S.ESTIMATE_ABOVE + 1)
    p = tmp_path / "big.h5"
    r = S.compute_surface(m, [D.random_direction(m, 1)], x, y, xs, None, p, progress=False,
                          batch_size=4, points_per_pass=1, workers=1, points_per_flush=500)
    err = capsys.readouterr().err
    assert f"{len(xs):,} points" in err and "MiB on disk" in err and "about" in err
    assert r.arrays["test_done"].all()
    with h5py.File(p) as f:
        assert max(len(str(v)) for v in f.attrs.values()) < 2000


def test_first_layer_reuse_equals_direct_evaluation():
    """W0 x + a D1 x + b D2 x for the first layer (conv, with bias moving) equals evaluating the
    perturbed model directly, float64, within 1e-10."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 4, 3),
                      nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).double()
    x = torch.randn(30, 2, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    dirs = [D.random_direction(m, 1, biasbn=True), D.random_direction(m, 2)]
    pts = np.array([[0.0, 0.0], [0.4, -0.7], [-1.0, 1.0], [1.0, 0.3]])
    ev = S.SurfaceEvaluator(m, dirs, x, y)
    ev.prepare(S.Plan(batch_size=8, first_layer=True))
    assert not isinstance(m[0], nn.Conv2d)  # the first layer is stood in for
    reused = ev.evaluate(pts)
    ev.apply(S.Plan(batch_size=8))
    plain = ev.evaluate(pts)
    ev.restore()
    assert isinstance(m[0], nn.Conv2d)
    assert np.abs(reused - plain).max() < 1e-10
    with torch.no_grad():
        for i, (a, b) in enumerate(pts):
            sd = {k: v + a * dirs[0].get(k, 0) + b * dirs[1].get(k, 0)
                  for k, v in m.state_dict().items()}
            m2 = copy.deepcopy(m)
            m2.load_state_dict(sd)
            loss = nn.functional.cross_entropy(m2(x), y).item()
            assert abs(reused[i, 0] - loss) < 1e-10


def test_paper_l2_loss_by_hand(tmp_path):
    """wd > 0: <split>_loss_l2_paper = NLL + wd * sum_p ||p||_2 over every parameter (moving or
    not), as the paper's ops/norm.py l2; checked by hand on a one-layer model."""
    torch.manual_seed(0)
    m = nn.Linear(2, 2).double()
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
        m.bias.copy_(torch.tensor([0.5, -0.5]))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    d = {"weight": torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)}  # bias fixed
    wd, a = 0.1, 0.5
    r = S.compute_surface(m, [d], x, y, np.array([a]), None, tmp_path / "l2.h5", wd=wd,
                          batch_size=2, points_per_pass=1, workers=1, progress=False)
    W = np.array([[1.5, 2.0], [0.0, -0.5]])
    logits = np.array([W @ [1.0, 0.0] + [0.5, -0.5], W @ [0.0, 1.0] + [0.5, -0.5]])
    nll = np.mean([np.log(np.exp(z).sum()) - z[t] for z, t in zip(logits, [0, 1], strict=True)])
    l2 = np.sqrt((W ** 2).sum()) + np.sqrt(0.5)
    assert abs(r.arrays["test_loss"][0] - nll) < 1e-12
    assert abs(r.arrays["test_loss_l2_paper"][0] - (nll + wd * l2)) < 1e-12
    half = 0.5 * ((W ** 2).sum() + 0.5)
    assert abs(r.arrays["test_loss_l2_half"][0] - (nll + wd * half)) < 1e-12
