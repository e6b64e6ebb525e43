"""HessianOperator and estimators against dense float64 references on tiny models
(an MLP with an unused layer, a CNN with BN and dropout, an attention model using SDPA)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cases import TinyAttention, TinyCNN, TinyMLP, fmnist_model, make  # noqa: F401 (tiny models)

from landscape.curvature import (
    DenseOperator,
    HessianOperator,
    dense_hessian,
    hutchinson_trace,
    hutchpp_trace,
    lanczos_quadrature,
    pyhessian_density,
    slq_density,
    top_eigenvalues,
)
from landscape.errors import LandscapeError

torch.set_num_threads(1)

MODELS = ["mlp", "cnn", "attn"]


@pytest.fixture(scope="module")
def cases():
    out = {}
    for name in MODELS:
        m, x, y = make(name)
        H = dense_hessian(m, x, y)
        out[name] = (m, x, y, H, torch.linalg.eigvalsh(H).numpy())
    return out


def _ref(ev, k, which):
    if which == "LA":
        return ev[::-1][:k]
    if which == "SA":
        return ev[:k]
    return ev[np.argsort(-np.abs(ev), kind="stable")[:k]]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("mode", ["double_backward", "forward_over_reverse"])
def test_operator_columns_equal_dense(cases, name, mode):
    m, x, y, H, _ = cases[name]
    op = HessianOperator(m, (x, y), mode=mode)
    n = op.shape[0]
    assert op.shape == H.shape and op.dtype == torch.float64
    cols = [0, n // 3, n // 2, n - 1]
    for i in cols:  # matvec
        e = torch.zeros(n, dtype=torch.float64)
        e[i] = 1
        torch.testing.assert_close(op.matvec(e), H[:, i], rtol=1e-10, atol=1e-12)
    E = torch.eye(n, dtype=torch.float64)[:, cols]  # batched matmat
    torch.testing.assert_close(op.matmat(E), H[:, cols], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op @ E, H[:, cols], rtol=1e-10, atol=1e-12)
    A = op.to_scipy()
    v = np.random.default_rng(0).standard_normal(n)
    np.testing.assert_allclose(A.matvec(v), H.numpy() @ v, rtol=1e-9, atol=1e-12)


def test_operator_detects_wrong_reference(cases):
    """The column test can fail: the operator of other images (one left out, as a batching bug
    would) misses the dense column at the test's tolerance, and a weight decay of 1e-6 ("half":
    + wd I) moves exactly the diagonal entry by 1e-6."""
    m, x, y, H, _ = cases["mlp"]
    e = torch.zeros(H.shape[0], dtype=torch.float64)
    e[3] = 1
    short = HessianOperator(m, (x[:-1], y[:-1])).matvec(e)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(short, H[:, 3], rtol=1e-10, atol=1e-12)
    shifted = HessianOperator(m, (x, y), wd=1e-6, l2="half").matvec(e) - H[:, 3]
    torch.testing.assert_close(shifted, 1e-6 * e, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_top_and_bottom_k(cases, name, which):
    m, x, y, _, ev = cases[name]
    op = HessianOperator(m, (x, y))
    r = top_eigenvalues(op, 4, which, tol=1e-8, seed=1)
    ref = _ref(ev, 4, which)
    assert r.converged
    np.testing.assert_allclose(r.eigenvalues, ref, rtol=1e-6)
    assert r.n_products == op.n_products and r.n_products < op.shape[0]
    # eigenvectors and residuals are real: ||H y - lambda y|| small
    HV = op.matmat(r.eigenvectors)
    true_res = (HV - r.eigenvectors * torch.as_tensor(r.eigenvalues)).norm(dim=0).numpy()
    assert np.all(true_res <= 1e-6 * np.abs(r.eigenvalues))
    assert np.all(r.residuals <= 1e-8 * np.abs(r.eigenvalues) + 1e-14)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("mode", ["double_backward", "forward_over_reverse"])
def test_gradient_equals_autograd(cases, name, mode):
    m, x, y, _, _ = cases[name]
    params = [p for p in m.parameters() if p.requires_grad]
    m.eval()
    gs = torch.autograd.grad(F.cross_entropy(m(x), y), params, allow_unused=True)
    ref = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                     for g, p in zip(gs, params, strict=True)])
    op = HessianOperator(m, (x, y), mode=mode)
    torch.testing.assert_close(op.gradient(), ref, rtol=1e-10, atol=1e-12)
    # several batches: the sample-weighted mean
    op2 = HessianOperator(m, [(x[:3], y[:3]), (x[3:], y[3:])], mode=mode)
    torch.testing.assert_close(op2.gradient(), ref, rtol=1e-10, atol=1e-12)
    assert not any(p.grad is not None for p in params)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_start_vectors_agree_with_dense(cases, name, which):
    m, x, y, _, ev = cases[name]
    ref = _ref(ev, 4, which)
    for start in ("gradient", "random", torch.ones(HessianOperator(m, (x, y)).shape[0])):
        r = top_eigenvalues(HessianOperator(m, (x, y)), 4, which, tol=1e-8, seed=1, start=start)
        np.testing.assert_allclose(r.eigenvalues, ref, rtol=1e-6)
        assert r.start == (start if isinstance(start, str) else "given")
    auto = top_eigenvalues(HessianOperator(m, (x, y)), 4, which, tol=1e-8, seed=1)
    assert auto.start == ("random" if which == "SA" else "gradient")
    several = top_eigenvalues(HessianOperator(m, [(x[:3], y[:3]), (x[3:], y[3:])]), 4, which,
                              tol=1e-8, seed=1)
    assert several.start == "random"  # the gradient would cost a pass over every batch
    np.testing.assert_allclose(several.eigenvalues, ref, rtol=1e-6)


def test_bad_start_refused(cases):
    m, x, y, _, _ = cases["mlp"]
    with pytest.raises(LandscapeError, match="start must be"):
        top_eigenvalues(HessianOperator(m, (x, y)), 2, start="ones")
    with pytest.raises(LandscapeError, match="shape"):
        top_eigenvalues(HessianOperator(m, (x, y)), 2, start=torch.ones(3))
    with pytest.raises(LandscapeError, match="needs a curvature operator"):
        top_eigenvalues(torch.eye(5, dtype=torch.float64), 2, start="gradient")


def test_eigsh_method(cases):
    m, x, y, _, ev = cases["cnn"]
    r = top_eigenvalues(HessianOperator(m, (x, y)), 3, "LA", tol=1e-10, method="eigsh")
    np.testing.assert_allclose(r.eigenvalues, _ref(ev, 3, "LA"), rtol=1e-6)


def test_negative_eigenvalues_found_on_relu_net(cases):
    m, x, y, _, ev = cases["mlp"]  # ReLU + cross-entropy: non-convex
    assert ev[0] < -1e-3  # the dense reference has negative eigenvalues
    r = top_eigenvalues(HessianOperator(m, (x, y)), 3, "SA", tol=1e-8)
    assert np.all(r.eigenvalues < 0)
    np.testing.assert_allclose(r.eigenvalues, ev[:3], rtol=1e-6)


def test_dense_operator_and_generic():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((40, 40))
    A = A + A.T
    ev = np.linalg.eigvalsh(A)
    r = top_eigenvalues(DenseOperator(torch.as_tensor(A)), 3, "LM", tol=1e-10)
    np.testing.assert_allclose(r.eigenvalues, _ref(ev, 3, "LM"), rtol=1e-8)
    from scipy.sparse.linalg import aslinearoperator
    r2 = top_eigenvalues(aslinearoperator(A), 2, "SA", tol=1e-10)
    np.testing.assert_allclose(r2.eigenvalues, ev[:2], rtol=1e-8)


@pytest.mark.parametrize("name", ["cnn", "attn"])
def test_trace_estimators_within_three_stderr(cases, name):
    m, x, y, H, ev = cases[name]
    exact = float(ev.sum())
    op = HessianOperator(m, (x, y))
    for est in (hutchinson_trace(op, 60, seed=2), hutchpp_trace(op, 90, seed=2)):
        assert est.stderr > 0
        assert abs(est.trace - exact) <= 3 * est.stderr, (est.method, est.trace, exact, est.stderr)
        wrong = exact + 0.5 * abs(exact) + 10 * est.stderr  # a wrong answer is rejected
        assert abs(est.trace - wrong) > 3 * est.stderr
    assert hutchpp_trace(op, 90, seed=2).stderr < hutchinson_trace(op, 90, seed=2).stderr


def test_slq_quadrature_and_moments(cases):
    m, x, y, H, ev = cases["cnn"]
    op = HessianOperator(m, (x, y))
    n = op.shape[0]
    Hn = H.numpy()
    v = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    nodes, w = lanczos_quadrature(op, v, 10)
    vn = v.numpy() / np.linalg.norm(v.numpy())
    for p in range(0, 19):  # Gauss quadrature with 10 nodes is exact to degree 19
        exact = vn @ np.linalg.matrix_power(Hn, p) @ vn
        assert abs(np.sum(w * nodes ** p) - exact) <= 1e-8 * max(1.0, abs(exact))
    d = slq_density(op, n_probes=6, steps=30, seed=0)
    assert d.nodes.shape == (6, 30) and np.allclose(d.weights.sum(1), 1.0)
    assert abs(np.trapezoid(d.density, d.grid) - 1.0) < 1e-9
    for p in (1, 2):
        exact = float(np.mean(ev ** p))
        samples = np.sum(d.weights * d.nodes ** p, axis=1)
        se = samples.std(ddof=1) / math.sqrt(len(samples))
        assert abs(d.moment(p) - exact) <= 4 * se + 1e-12
    # extreme Ritz values approach the extreme eigenvalues
    assert abs(d.nodes.max() - ev.max()) < 1e-6 * abs(ev.max())


def test_slq_save_load(tmp_path, cases):
    m, x, y, _, _ = cases["mlp"]
    d = slq_density(HessianOperator(m, (x, y)), n_probes=2, steps=8, seed=1)
    d.save(tmp_path / "d.h5", config={"a": 1})
    e = type(d).load(tmp_path / "d.h5")
    np.testing.assert_array_equal(d.density, e.density)
    assert e.sigma == d.sigma and e.seed == 1


def test_unused_parameters_give_zero_rows(cases):
    m, x, y, H, _ = cases["mlp"]
    op = HessianOperator(m, (x, y))
    assert "unused.weight" in op.names
    V = torch.randn(op.shape[0], 3, dtype=torch.float64)
    for mode in ("double_backward", "forward_over_reverse"):
        HV = HessianOperator(m, (x, y), mode=mode).matmat(V)
        np.testing.assert_allclose(HV.numpy(), (H @ V).numpy(), rtol=1e-10, atol=1e-12)
    off = sum(op.numels[:op.names.index("unused.weight")])
    assert torch.all(HV[off:off + 6] == 0)


def test_parameter_subset(cases):
    m, x, y, H, _ = cases["cnn"]
    op = HessianOperator(m, (x, y), params="fc")
    assert op.names == ["fc.weight", "fc.bias"]
    full = HessianOperator(m, (x, y))
    off = sum(full.numels[:full.names.index("fc.weight")])
    sub = H[off:, off:]
    torch.testing.assert_close(op.dense(), sub, rtol=1e-10, atol=1e-12)
    with pytest.raises(LandscapeError):
        HessianOperator(m, (x, y), params="nope")


def test_bn_stats_modes_and_grads_untouched(cases):
    m, x, y, H, _ = cases["cnn"]
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    op = HessianOperator(m, (x, y))
    top_eigenvalues(op, 2, "LA", tol=1e-6)
    ones = torch.ones(op.shape[0], dtype=torch.float64)
    HessianOperator(m, (x, y), mode="forward_over_reverse").matvec(ones)
    hutchinson_trace(op, 4)
    top_eigenvalues(op, 1, "LM", backend="pyhessian", tol=1e-2)
    assert m.training and m.bn.training and m.drop.training  # modes restored
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in m.parameters())
    # the eval-mode Hessian is the one computed (train mode would use batch statistics)
    e = torch.zeros(op.shape[0], dtype=torch.float64)
    e[0] = 1
    torch.testing.assert_close(op.matvec(e), H[:, 0], rtol=1e-10, atol=1e-12)
    m.eval()


@pytest.mark.parametrize("l2", ["half", "paper"])
def test_weight_decay(cases, l2):
    m, x, y, H, ev = cases["mlp"]
    wd = 0.05
    op = HessianOperator(m, (x, y), wd=wd, l2=l2, params=["fc1", "fc2"])
    if l2 == "half":
        sub = HessianOperator(m, (x, y), params=["fc1", "fc2"]).dense()
        ev_sub = torch.linalg.eigvalsh(sub).numpy()
        for which in ("LA", "SA"):
            r = top_eigenvalues(op, 3, which, tol=1e-9)
            np.testing.assert_allclose(r.eigenvalues, _ref(ev_sub, 3, which) + wd, rtol=1e-6)
    else:
        names = op.names

        def loss(ps):
            params = dict(zip(names, ps, strict=True))
            out = torch.func.functional_call(m, params, (x,), strict=False)
            return F.cross_entropy(out, y) + wd * sum(p.norm() for p in ps)

        prim = tuple(dict(m.named_parameters())[k].detach() for k in names)
        blocks = torch.autograd.functional.hessian(lambda *ps: loss(ps), prim)
        ref = torch.cat([torch.cat([blocks[i][j].reshape(prim[i].numel(), prim[j].numel())
                                    for j in range(len(prim))], 1) for i in range(len(prim))], 0)
        torch.testing.assert_close(op.dense(), ref, rtol=1e-9, atol=1e-12)


def test_augmentation_fixed_seed(cases):
    m, x, y, _, _ = cases["cnn"]

    def aug(xb, g):
        shift = int(torch.randint(-2, 3, (1,), generator=g))
        flip = bool(torch.rand(1, generator=g) < 0.5)
        xb = torch.roll(xb, shift, dims=-1)
        return xb.flip(-1) if flip else xb

    v = torch.randn(HessianOperator(m, (x, y)).shape[0], dtype=torch.float64)
    # one mode pinned: an "auto" operator's first products alternate two modes (equal to rounding)
    kw = dict(mode="double_backward")
    a = HessianOperator(m, (x, y), augment=aug, augment_seed=3, **kw)
    b = HessianOperator(m, (x, y), augment=aug, augment_seed=3, **kw)
    c = HessianOperator(m, (x, y), augment=aug, augment_seed=4, **kw)
    plain = HessianOperator(m, (x, y), **kw).matvec(v)
    av = a.matvec(v)
    torch.testing.assert_close(av, a.matvec(v), rtol=0, atol=0)  # one operator, one function
    torch.testing.assert_close(av, b.matvec(v), rtol=0, atol=0)
    assert not torch.allclose(av, plain)
    # each seed's operator is the Hessian of the batch augmented by a generator of that seed
    for seed, op in ((3, a), (4, c)):
        xa = aug(x, torch.Generator().manual_seed(seed))
        torch.testing.assert_close(op.matvec(v), HessianOperator(m, (xa, y)).matvec(v),
                                   rtol=1e-10, atol=1e-12)


def test_loader_average_equals_full_batch(cases):
    m, x, y, H, _ = cases["cnn"]
    batches = [(x[:5], y[:5]), (x[5:9], y[5:9]), (x[9:], y[9:])]
    v = torch.randn(H.shape[0], 2, dtype=torch.float64)
    for rg in (False, True):
        op = HessianOperator(m, batches, retain_graph=rg)
        torch.testing.assert_close(op.matmat(v), H @ v, rtol=1e-10, atol=1e-12)


def test_float32_and_layernorm_attention():
    """nn.LayerNorm + SDPA: batched and single products agree with autograd's dense Hessian."""
    torch.manual_seed(0)
    m = TinyAttention()
    m.norm = torch.nn.LayerNorm(8)
    x, y = torch.randn(6, 1, 6, 6), torch.randint(0, 3, (6,))
    ref = dense_hessian(m.double(), x.double(), y, method="autograd")
    op = HessianOperator(m, (x.double(), y))
    V = torch.randn(op.shape[0], 3, dtype=torch.float64)
    torch.testing.assert_close(op.matmat(V), ref @ V, rtol=1e-9, atol=1e-11)
    m.float()
    op32 = HessianOperator(m, (x, y))
    assert op32.dtype == torch.float32
    r = top_eigenvalues(op32, 2, "LA", tol=1e-3)
    ev = torch.linalg.eigvalsh(ref).numpy()
    np.testing.assert_allclose(r.eigenvalues, ev[::-1][:2], rtol=1e-3)


def test_pyhessian_backend_agrees(cases):
    m, x, y, H, ev = cases["cnn"]
    op = HessianOperator(m, (x, y))
    ours = top_eigenvalues(op, 1, "LM", tol=1e-8)
    ph = top_eigenvalues(op, 1, "LM", backend="pyhessian", tol=1e-6, max_iter=500, seed=0)
    assert ph.method == "pyhessian-power" and ph.n_products > 0
    np.testing.assert_allclose(ph.eigenvalues[0], ours.eigenvalues[0], rtol=1e-4)
    t = hutchinson_trace(op, 50, backend="pyhessian", tol=1e-9, seed=0)
    assert abs(t.trace - ev.sum()) <= 4 * t.stderr
    assert all(p.grad is None for p in m.parameters())
    with pytest.raises(LandscapeError, match="torch.eig"):
        pyhessian_density()
    with pytest.raises(LandscapeError):
        top_eigenvalues(op, 1, "SA", backend="pyhessian")


def test_bad_input():
    A = DenseOperator(torch.eye(4, dtype=torch.float64))
    with pytest.raises(LandscapeError):
        top_eigenvalues(A, 1, "XX")
    with pytest.raises(LandscapeError):
        top_eigenvalues(A, 5)
    r = top_eigenvalues(A, 2, "LA")  # degenerate: invariant subspace after one step
    np.testing.assert_allclose(r.eigenvalues, [1, 1])


def test_registry_model_smoke():
    torch.manual_seed(0)
    m = fmnist_model()
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    op = HessianOperator(m, (x, y))
    g = torch.Generator().manual_seed(0)
    u, v = (torch.randn(op.shape[0], generator=g) for _ in range(2))
    a, b = float(u @ op.matvec(v)), float(v @ op.matvec(u))
    assert abs(a - b) <= 1e-3 * (abs(a) + abs(b)) + 1e-5  # symmetric
    assert all(p.grad is None for p in m.parameters())


def test_auto_mode_on_the_cpu_follows_the_measured_rule(cases):
    m, x, y, H, _ = cases["mlp"]
    op = HessianOperator(m, (x, y))
    e = torch.zeros(op.shape[0], dtype=torch.float64)
    e[2] = 1
    torch.testing.assert_close(op.matvec(e), H[:, 2], rtol=1e-10, atol=1e-12)
    assert op.mode == "double_backward" and op.mode_choice.source == "rule"
    assert op.n_products == 1 and op.mode_choice.probe_products == 0


def test_auto_mode_measures_and_survives_a_failing_mode(cases, monkeypatch):
    from landscape.curvature import LossHessian, modes
    monkeypatch.setattr(modes, "RULES", {})  # measure, as on an accelerator
    m, x, y, H, _ = cases["mlp"]
    op = HessianOperator(m, (x, y))
    assert op.mode == "auto" and op.resolved_mode() in ("double_backward", "forward_over_reverse")
    assert set(op.mode_timings) == {"double_backward", "forward_over_reverse"}
    assert op.mode_choice.measure_s > 0 and op.mode_choice.source == "probe"
    assert op.n_products == op.mode_choice.probe_products == 4  # discarded here, but counted
    # the choice lives on the operator; a new operator of the same setting takes it from the
    # persistent cache (each test has its own, see _private_mode_cache)
    again = HessianOperator(m, (x, y))
    assert again.mode == "auto" and again.resolved_mode() == op.mode
    assert again.mode_choice.source == "cache" and again.n_products == 0

    def boom(self, *a):
        raise RuntimeError("cannot trace this model")

    monkeypatch.setenv("LANDSCAPE_CACHE", "off")
    monkeypatch.setattr(LossHessian, "_hvp_forward_over_reverse", boom)
    op = HessianOperator(m, (x, y))
    cols = []
    with pytest.warns(UserWarning, match="unavailable"):
        for j in range(3):  # the probe's second product would be forward-over-reverse
            e = torch.zeros(op.shape[0], dtype=torch.float64)
            e[j] = 1
            cols.append(op.matvec(e))
    assert op.mode == "double_backward" and op.n_products == 3
    torch.testing.assert_close(torch.stack(cols, 1), H[:, :3], rtol=1e-10, atol=1e-12)


def test_lanczos_confirming_steps_find_an_eigenvalue_the_first_converged_step_misses():
    """A start vector nearly orthogonal to the second-largest eigenvector: the first step at which
    five Ritz pairs meet the residual rule holds [10, 9, 8, 7, 6] and misses 9.5; three
    confirming steps (the default) find the exact top-5."""
    from landscape.curvature.lanczos import lanczos_eigenpairs
    from landscape.curvature.operators import as_operator
    from landscape.settings import CONFIRM_STEPS
    n = 400
    ev = np.concatenate([[10, 9, 8, 7, 6, 9.5], np.linspace(0, 1, n - 6)])
    A = as_operator(torch.diag(torch.tensor(ev, dtype=torch.float64)))
    v0 = torch.ones(n, dtype=torch.float64)
    v0[5] = 1e-5
    plain = lanczos_eigenpairs(A, {"LM": 5}, v0, tol=1e-3, confirm=0)["LM"]
    np.testing.assert_allclose(np.sort(plain.eigenvalues)[::-1], [10, 9, 8, 7, 6], rtol=1e-3)
    assert CONFIRM_STEPS == 3
    r = lanczos_eigenpairs(A, {"LM": 5}, v0, tol=1e-3)["LM"]
    np.testing.assert_allclose(np.sort(r.eigenvalues)[::-1], [10, 9.5, 9, 8, 7], rtol=1e-3)
    assert r.converged and r.n_products >= plain.n_products + CONFIRM_STEPS
