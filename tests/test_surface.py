"""Surface engine: exact agreement with direct evaluation, vmap == loop,
NaN points, refusal of mismatched files, buffers mode, L2 conventions, plots."""
import copy
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from cases import fmnist_model, needs_fashion_mnist

from landscape import surface as S
from landscape.errors import LandscapeError
from landscape.surface import directions as D

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(x.flatten(1))


def make(seed=0, dtype=torch.float64, n=40):
    torch.manual_seed(seed)
    m = SmallCNN().to(dtype)
    m.bn.running_mean.uniform_(-0.5, 0.5)
    m.bn.running_var.uniform_(0.5, 1.5)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, 1, 8, 8, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (n,), generator=g)
    return m, x, y


def direct(m, dirs, x, y, a, b, states=False):
    """Reference: deepcopy, perturb by hand, plain forward."""
    m2 = copy.deepcopy(m).eval()
    tensors = dict(m2.named_parameters())
    tensors.update(dict(m2.named_buffers()))
    with torch.no_grad():
        for n in set(dirs[0]) | set(dirs[1]):
            t = tensors[n]
            z = torch.zeros_like(t)
            t.copy_(torch.add(t, dirs[0].get(n, z), alpha=a).add_(dirs[1].get(n, z), alpha=b))
        out = m2(x)
    return F.cross_entropy(out, y).item(), (out.argmax(1) == y).double().mean().item(), m2


def test_point_equals_direct_evaluation_and_centre(tmp_path):
    m, x, y = make()
    dirs = [D.random_direction(m, 1), D.random_direction(m, 2)]
    xs, ys = np.linspace(-1, 1, 3), np.linspace(-0.5, 0.5, 3)
    before = {n: t.clone() for n, t in m.state_dict().items()}
    r = S.compute_surface(m, dirs, x, y, xs, ys, tmp_path / "s.h5", split="test",
                          batch_size=16, points_per_pass=1, progress=False)
    assert all(torch.equal(before[n], t) for n, t in m.state_dict().items())  # theta0 restored
    assert r.arrays["test_loss"].shape == (3, 3)
    for iy, b in enumerate(ys):
        for ix, a in enumerate(xs):
            loss, acc, _ = direct(m, dirs, x, y, a, b)
            assert abs(r.arrays["test_loss"][iy, ix] - loss) < 1e-12
            assert abs(r.arrays["test_acc"][iy, ix] - acc) < 1e-12
    with torch.no_grad():
        centre = F.cross_entropy(m.eval()(x), y).item()
    assert abs(r.arrays["test_loss"][1, 1] - centre) < 1e-12
    assert r.arrays["test_done"].all()
    with h5py.File(tmp_path / "s.h5") as f:  # reference dataset names
        assert {"xcoordinates", "ycoordinates", "test_loss", "test_acc"} <= set(f)


def test_vmap_equals_loop_and_l2(tmp_path):
    m, x, y = make()
    dirs = [D.random_direction(m, 1), D.random_direction(m, 2)]
    pts = np.array([[0.0, 0.0], [0.5, -0.3], [-1.0, 1.0], [0.2, 0.1], [1.0, 1.0]])
    ev = S.SurfaceEvaluator(m, dirs, x, y)
    ev.prepare(S.Plan(batch_size=16, points_per_pass=1))
    loop = ev.evaluate(pts)
    ev.apply(S.Plan(batch_size=16, points_per_pass=3))
    vm = ev.evaluate(pts)
    ev.restore()
    assert np.allclose(loop, vm, rtol=1e-12, atol=1e-12)
    # L2 conventions at a point, by hand
    a, b = pts[1]
    _, _, m2 = direct(m, dirs, x, y, a, b)
    norms = [p.detach().norm().item() for p in m2.parameters()]
    assert abs(loop[1, 2] - sum(norms)) < 1e-9
    assert abs(loop[1, 3] - 0.5 * sum(v * v for v in norms)) < 1e-9
    r = S.compute_surface(m, dirs, x, y, np.array([a]), np.array([b]), tmp_path / "w.h5",
                          wd=5e-4, batch_size=16, points_per_pass=1, progress=False)
    nll = r.arrays["test_loss"][0, 0]
    assert abs(r.arrays["test_loss_l2_paper"][0, 0] - (nll + 5e-4 * sum(norms))) < 1e-12
    half = nll + 5e-4 * 0.5 * sum(v * v for v in norms)
    assert abs(r.arrays["test_loss_l2_half"][0, 0] - half) < 1e-12


def test_the_plan_is_the_fastest_measured():
    """A clock under which every timed pass takes one tick: a plan then costs one tick per pass
    over the images, so the plan with the most points per pass is the fastest per point; the
    planner must return the minimum of what it measured, with the estimate 64 x its time."""
    import itertools
    m, x, y = make(dtype=torch.float32, n=64)
    ev = S.SurfaceEvaluator(m, [D.random_direction(m, 1)], x, y)
    ticks = itertools.count()
    plan = ev.prepare(None, clock=lambda: float(next(ticks)))
    ev.restore()
    per = {k: v for k, v in plan.measured.items() if "=" in k and not k.endswith(":error")}
    assert len(per) >= 2  # several plans were measured
    assert plan.measured[plan.label()] == min(per.values())
    most = max(int(k.split("points_per_pass=")[1].split(",")[0]) for k in per)
    assert most > 1 and plan.points_per_pass == most
    assert plan.measured["seconds_per_point"] == plan.measured[plan.label()] * 64


def test_automatic_plan_runs(tmp_path):
    m, x, y = make(dtype=torch.float32, n=64)
    dirs = [D.random_direction(m, 1)]
    r = S.compute_surface(m, dirs, x, y, np.linspace(-1, 1, 4), None, tmp_path / "a.h5",
                          progress=False)
    assert r.arrays["test_loss"].shape == (4,)
    plan = S.SurfaceFile.read(tmp_path / "a.h5").stored_plan("test")
    # the stored plan is one that was measured: its own timing (per point per image) times the
    # 64 images is the estimate (which plan wins: test_the_plan_is_the_fastest_measured)
    assert plan.label() in plan.measured
    assert plan.measured["seconds_per_point"] == pytest.approx(plan.measured[plan.label()] * 64)
    with torch.no_grad():
        centre = F.cross_entropy(m.eval()(x), y).item()
    ev = S.SurfaceEvaluator(m, dirs, x, y)
    ev.prepare(plan)
    v = ev.evaluate(np.array([[-1 / 3, 0]]))
    ev.restore()
    assert abs(v[0, 0] - r.arrays["test_loss"][1]) < 1e-6
    assert abs(centre - S.SurfaceEvaluator(m, dirs, x, y).evaluate(np.zeros((1, 2)))[0, 0]) < 1e-5


def test_buffers_mode_moves_bn_stats():
    m, x, y = make()
    dw = [D.random_direction(m, 1, mode="weights"), D.random_direction(m, 2, mode="weights")]
    ds = [D.random_direction(m, 1, mode="states"), D.random_direction(m, 2, mode="states")]
    assert "bn.running_var" in ds[0] and "bn.running_var" not in dw[0]
    m2_before = m.bn.running_mean.clone()
    ev = S.SurfaceEvaluator(m, ds, x, y, batch_size=40, points_per_pass=1)
    ev.prepare(S.Plan(40, 1))
    got = ev.evaluate(np.array([[0.3, -0.2]]))[0]
    # the stats are moved during evaluation ...
    ev.set_point(0.3, -0.2)
    assert not torch.equal(m.bn.running_mean, m2_before)
    ev.restore()
    loss, _, m2 = direct(m, ds, x, y, 0.3, -0.2)
    assert abs(got[0] - loss) < 1e-12
    assert not torch.equal(m2.bn.running_mean, m.bn.running_mean)
    # ... and weights mode leaves them alone (different numbers)
    ev = S.SurfaceEvaluator(m, dw, x, y)
    ev.prepare(S.Plan(40, 1))
    gw = ev.evaluate(np.array([[0.3, -0.2]]))[0]
    ev.restore()
    assert gw[0] != got[0]


class Diverging(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.gain = nn.Parameter(torch.zeros(1, 1))

    def forward(self, x):
        return self.fc(x) * torch.exp(800.0 * self.gain.sum())


def test_nan_points_do_not_crash(tmp_path):
    torch.manual_seed(0)
    m = Diverging()
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    d = {"gain": torch.ones(1, 1), "fc.weight": torch.zeros(3, 4)}
    r = S.compute_surface(m, [d], x, y, np.linspace(-1, 1, 5), None, tmp_path / "n.h5",
                          batch_size=10, points_per_pass=1, progress=False)
    loss = r.arrays["test_loss"]
    assert np.isfinite(loss[2]) and np.isfinite(loss[0]) and not np.isfinite(loss[4])
    assert r.arrays["test_done"].all()
    from landscape.reporting.plots import surface as P
    files = P.plot_surface(tmp_path / "n.h5", tmp_path / "fig")
    assert files and all(Path(f).exists() for f in files)


def test_mismatched_files_refused(tmp_path, monkeypatch):
    m, x, y = make()
    dirs = [D.random_direction(m, 1), D.random_direction(m, 2)]
    kw = dict(batch_size=20, points_per_pass=1, progress=False)
    p = tmp_path / "s.h5"
    S.compute_surface(m, dirs, x, y, np.linspace(-1, 1, 2), np.linspace(-1, 1, 2), p,
                      identity={"checkpoint_sha256": "aa"}, **kw)
    with pytest.raises(LandscapeError, match="xcoordinates"):
        S.compute_surface(m, dirs, x, y, np.linspace(-1, 1, 3), np.linspace(-1, 1, 2), p,
                          identity={"checkpoint_sha256": "aa"}, **kw)
    with pytest.raises(LandscapeError, match="checkpoint_sha256"):
        S.compute_surface(m, dirs, x, y, np.linspace(-1, 1, 2), np.linspace(-1, 1, 2), p,
                          identity={"checkpoint_sha256": "bb"}, **kw)
    with pytest.raises(LandscapeError, match="wd"):
        S.compute_surface(m, dirs, x, y, np.linspace(-1, 1, 2), np.linspace(-1, 1, 2), p,
                          identity={"checkpoint_sha256": "aa"}, wd=0.1, **kw)
    with pytest.raises(LandscapeError, match="batch_size"):
        S.compute_surface(m, dirs, x, y, np.linspace(-1, 1, 2), np.linspace(-1, 1, 2), p,
                          identity={"checkpoint_sha256": "aa"}, batch_size=8, points_per_pass=1,
                          progress=False)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(LandscapeError):
        S.compute_surface(m, dirs, x, y, np.linspace(-1, 1, 2), np.linspace(-1, 1, 2),
                          tmp_path / "junk.h5", **kw)
    # same settings: reused, nothing recomputed (an evaluation would raise); another split is
    # added beside
    first = S.load_surface(p).arrays["test_loss"].copy()

    def no_evaluation(*_a, **_k):
        raise AssertionError("a finished surface was evaluated again")

    with monkeypatch.context() as mp:
        mp.setattr(S.SurfaceEvaluator, "evaluate", no_evaluation)
        again = S.compute_surface(m, dirs, x, y, np.linspace(-1, 1, 2), np.linspace(-1, 1, 2),
                                  p, identity={"checkpoint_sha256": "aa"}, **kw)
    np.testing.assert_array_equal(again.arrays["test_loss"], first)
    r = S.compute_surface(m, dirs, x, y, np.linspace(-1, 1, 2), np.linspace(-1, 1, 2), p,
                          split="train", identity={"checkpoint_sha256": "aa"}, **kw)
    assert "train_loss" in r.arrays and "test_loss" in r.arrays


@needs_fashion_mnist
def test_cli_smoke_resume_and_refusal(tmp_path, capsys):
    from landscape.cli import main
    from landscape.loading import checkpoint
    torch.manual_seed(0)
    m = fmnist_model()
    ck = checkpoint.save(tmp_path / "m.pt", m, dataset="fashion-mnist")
    out = tmp_path / "out"
    argv = ["surface", str(ck), "--samples", "40", "--grid", "-1:1:3", "--ygrid", "-1:1:2",
            "--split", "test", "--out", str(out), "--quiet", "--batch-size", "20",
            "--points-per-pass", "1", "--channels-last", "off"]
    assert main(argv) == 0
    for f in ("surface.h5", "directions.h5", "config.json", "test_loss_2dcontour.png",
              "test_loss_3dsurface.pdf", "test_acc_2dcontourf.png"):
        assert (out / f).exists(), f
    r = S.load_surface(out / "surface.h5")
    assert r.arrays["test_loss"].shape == (2, 3) and r.arrays["test_done"].all()
    assert main(argv) == 0  # finished file reused
    again = S.load_surface(out / "surface.h5")
    assert np.array_equal(again.arrays["test_loss"], r.arrays["test_loss"])
    bad = list(argv)
    bad[bad.index("-1:1:3")] = "-1:1:5"
    assert main(bad) == 2
    assert "other settings" in capsys.readouterr().err
    bad = list(argv) + ["--norm", "layer"]
    assert main(bad) == 2
    assert main(["surface", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2


def test_fold_bn_equals_plain():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=True), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.Sequential(nn.Conv2d(4, 4, 3, bias=False), nn.BatchNorm2d(4)),
                      nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).double()
    for bn in (m[1], m[3][1]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2)
        bn.bias.data.uniform_(-1, 1)
    x = torch.randn(20, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 3, (20,))
    dirs = [D.random_direction(m, 1, biasbn=True), D.random_direction(m, 2, mode="states")]
    pts = np.array([[0.0, 0.0], [0.4, -0.7], [1.0, 1.0]])
    ev = S.SurfaceEvaluator(m, dirs, x, y)
    ev.prepare(S.Plan(batch_size=8, fold_bn=False))
    plain = ev.evaluate(pts)
    ev.apply(S.Plan(batch_size=8, fold_bn=True))
    assert isinstance(m[1], nn.Identity) and isinstance(m[3][1], nn.Identity)
    folded = ev.evaluate(pts)
    ev.restore()
    assert isinstance(m[1], nn.BatchNorm2d) and isinstance(m[3][1], nn.BatchNorm2d)
    assert np.allclose(plain, folded, rtol=1e-12, atol=1e-12)
    loss, _, _ = direct(m, dirs, x, y, 0.4, -0.7, states=True)
    assert abs(folded[1, 0] - loss) < 1e-12


def test_workers_equal_loop_and_restore(tmp_path):
    m, x, y = make()
    dirs = [D.random_direction(m, 1), D.random_direction(m, 2)]
    pts = np.array([[0.0, 0.0], [0.5, -0.3], [-1.0, 1.0], [0.2, 0.1], [1.0, 1.0]])
    before = {n: t.clone() for n, t in m.state_dict().items()}
    threads = torch.get_num_threads()
    ev = S.SurfaceEvaluator(m, dirs, x, y)
    ev.prepare(S.Plan(batch_size=16))
    one = ev.evaluate(pts)
    ev.apply(S.Plan(batch_size=16, workers=3))
    assert len(ev.replicas) == 2 and all(c.model is not m for c in ev.replicas)
    assert ev.pool.submit(torch.get_num_threads).result() == 1
    many = ev.evaluate(pts)
    alone = ev.evaluate(pts[1:2])
    ev.restore()
    assert ev.replicas == [] and ev.pool is None
    assert torch.get_num_threads() == threads
    assert all(torch.equal(before[n], t) for n, t in m.state_dict().items())
    assert np.array_equal(one, many) and np.array_equal(alone[0], many[1])
    for i, (a, b) in enumerate(pts):
        loss, acc, _ = direct(m, dirs, x, y, a, b)
        assert abs(many[i, 0] - loss) < 1e-12 and abs(many[i, 1] - acc) < 1e-12
    # through compute_surface: the plan (with its workers) is stored and a clash is refused
    xs = np.linspace(-1, 1, 3)
    r = S.compute_surface(m, dirs, x, y, xs, None, tmp_path / "w.h5", batch_size=16,
                          points_per_pass=1, workers=2, progress=False)
    assert S.SurfaceFile.read(tmp_path / "w.h5").stored_plan("test").workers == 2
    for ix, a in enumerate(xs):
        assert abs(r.arrays["test_loss"][ix] - direct(m, dirs, x, y, a, 0.0)[0]) < 1e-12
    with pytest.raises(LandscapeError, match="workers: 2 -> 1"):
        S.compute_surface(m, dirs, x, y, xs, None, tmp_path / "w.h5", workers=1, progress=False)
    with pytest.raises(LandscapeError, match="workers must be"):
        S.SurfaceEvaluator(m, dirs, x, y, workers=0)


def test_automatic_plan_measures_workers(tmp_path):
    m, x, y = make(dtype=torch.float32, n=300)
    dirs = [D.random_direction(m, 1)]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ev = S.SurfaceEvaluator(m, dirs, x, y)
        plan = ev.prepare()
        got = ev.evaluate(np.array([[0.5, 0.0], [-0.5, 0.0]]))
        ev.restore()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert any("workers=2" in k for k in plan.measured)  # the candidate was timed
    # the choice follows the rule on the recorded times: 2 workers kept iff >= 5 % faster than
    # one at the same other settings (the first 2-worker candidate: the largest batch size)
    many = max((k for k in plan.measured if k.endswith("workers=2")),
               key=lambda k: int(k.split(",")[0].split("=")[1]))
    one = many.replace("workers=2", "workers=1")
    assert one in plan.measured
    assert (plan.workers == 2) == (plan.measured[many] < 0.95 * plan.measured[one])
    for i, a in enumerate((0.5, -0.5)):
        assert abs(got[i, 0] - direct(m.double(), [{n: t.double() for n, t in dirs[0].items()}, {}],
                                      x.double(), y, a, 0.0)[0]) < 1e-4
