"""GGN and empirical-Fisher operators against dense float64 matrices built by hand (Jacobians by
torch.autograd.functional.jacobian) on tiny models; the same estimators and operator algebra as
the Hessian; probe blocks give the same estimates as single probes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from cases import dense_ef, dense_ggn, make

from landscape.curvature import (  # noqa: E402
    EmpiricalFisherOperator,
    GGNOperator,
    HessianOperator,
    ScaledOperator,
    dense_hessian,
    hutchinson_trace,
    hutchpp_trace,
    l2_hessian,
    probe_block_size,
    slq_density,
    top_eigenvalues,
)
from landscape.errors import LandscapeError  # noqa: E402

torch.set_num_threads(1)
MODELS = ["mlp", "cnn", "attn"]


# every test: no CPU rule, so "auto" measures as on an accelerator (the empty private mode
# cache is conftest's, for every test)
pytestmark = pytest.mark.usefixtures("no_cpu_rule")


@pytest.fixture(scope="module")
def cases():
    out = {}
    for name in MODELS:
        m, x, y = make(name)
        out[name] = (m, x, y, dense_ggn(m, x, y), dense_ef(m, x, y))
    return out


@pytest.mark.parametrize("name", MODELS)
def test_ggn_and_ef_equal_dense(cases, name):
    m, x, y, G, Fm = cases[name]
    for op, ref in ((GGNOperator(m, (x, y)), G), (EmpiricalFisherOperator(m, (x, y)), Fm)):
        n = op.shape[0]
        assert ref.shape == (n, n)
        torch.testing.assert_close(op.dense(), ref, rtol=1e-10, atol=1e-12)  # batched products
        e = torch.zeros(n, dtype=torch.float64)
        e[3] = 1
        torch.testing.assert_close(op.matvec(e), ref[:, 3], rtol=1e-10, atol=1e-12)
        assert op.n_products == n + 1
        assert all(p.grad is None for p in m.parameters())
    ev = torch.linalg.eigvalsh(G)
    assert float(ev.min()) > -1e-10 * float(ev.max())  # cross-entropy: G is PSD
    assert int(torch.linalg.matrix_rank(Fm)) <= x.shape[0]  # EF: rank <= N


@pytest.mark.parametrize("cls,ref_index", [(GGNOperator, 3), (EmpiricalFisherOperator, 4)])
def test_several_batches_are_the_sample_weighted_mean(cases, cls, ref_index):
    m, x, y = cases["cnn"][:3]
    ref = cases["cnn"][ref_index]
    op = cls(m, [(x[:5], y[:5]), (x[5:], y[5:])])
    torch.testing.assert_close(op.dense(), ref, rtol=1e-10, atol=1e-12)


def test_ggn_is_the_hessian_minus_its_residual_term(cases):
    m, x, y, G, _ = cases["mlp"]
    H = dense_hessian(m, x, y)
    R = HessianOperator(m, (x, y), mode="double_backward") - GGNOperator(m, (x, y))
    torch.testing.assert_close(R.dense(), H - G, rtol=1e-9, atol=1e-12)
    assert R.n_products == 2 * G.shape[0]  # both terms' products are counted


def test_operator_algebra_scalar_multiplication(cases):
    m, x, y, G, Fm = cases["cnn"]
    g = GGNOperator(m, (x, y))
    n = g.shape[0]
    eye = torch.eye(n, dtype=torch.float64)
    for op, ref in ((2 * g, 2 * G), (g * 2, 2 * G), (g / 4, G / 4), (-g, -G),
                    (0.5 * g + l2_hessian(g.params, 0.1), 0.5 * G + 0.1 * eye),
                    (3 * (2 * g), 6 * G),
                    (g + EmpiricalFisherOperator(m, (x, y)) * 2.0, G + 2 * Fm)):
        torch.testing.assert_close(op.dense(), ref, rtol=1e-10, atol=1e-12)
    s = 3 * (2 * g)
    assert isinstance(s, ScaledOperator) and s.c == 6.0 and s.op is g  # flattened
    assert s.model is m  # attributes of the scaled operator are exposed
    with pytest.raises(TypeError):
        g * g  # noqa: B018 - operator times operator is not defined
    with pytest.raises(TypeError):
        True * g  # noqa: B018 - a bool is not a scale
    comp = HessianOperator(m, (x, y), curvature="ggn", wd=0.1)
    torch.testing.assert_close(comp.dense(), G + 0.1 * eye, rtol=1e-10, atol=1e-12)
    assert comp.config()["curvature"] == "ggn"
    with pytest.raises(LandscapeError, match="curvature must be one of"):
        HessianOperator(m, (x, y), curvature="kfac")


@pytest.mark.parametrize("kind", ["ggn", "ef"])
def test_estimators_take_ggn_and_ef(cases, kind):
    m, x, y, G, Fm = cases["mlp"]
    ref = G if kind == "ggn" else Fm
    ev = np.linalg.eigvalsh(ref.numpy())
    n = len(ev)
    op = HessianOperator(m, (x, y), curvature=kind)
    r = top_eigenvalues(op, 3, "LA", tol=1e-8, seed=0)
    assert r.converged
    np.testing.assert_allclose(r.eigenvalues, ev[::-1][:3], rtol=1e-7)
    # Hutch++ with a sketch spanning the space is exact; Hutchinson is unbiased
    t = hutchpp_trace(op, 3 * n + 3, seed=0)
    assert t.n_products == 2 * (n + 1) + n  # the sketch's basis Q has only n columns
    np.testing.assert_allclose(t.trace, float(ref.trace()), rtol=1e-9)
    h = hutchinson_trace(op, 60, seed=1)
    assert abs(h.trace - float(ref.trace())) <= 5 * h.stderr + 1e-12
    # SLQ run to the dimension: a probe's largest nodes are the largest eigenvalues
    d = slq_density(op, 2, n, seed=0)
    np.testing.assert_allclose(np.sort(d.nodes[0])[::-1][:3], ev[::-1][:3], rtol=1e-7)
    assert d.n_products == 2 * n


def test_probe_blocks_give_the_same_estimates(cases):
    m, x, y, G, _ = cases["cnn"]
    op = GGNOperator(m, (x, y))
    assert probe_block_size(op) == 1  # the CPU rule: a loop of single products
    a, b = hutchinson_trace(op, 8, seed=2, block=1), hutchinson_trace(op, 8, seed=2, block=3)
    assert (a.block, b.block, a.n_products, b.n_products) == (1, 3, 8, 8)
    np.testing.assert_allclose(a.samples, b.samples, rtol=1e-10)
    p1, p4 = hutchpp_trace(op, 30, seed=2, block=1), hutchpp_trace(op, 30, seed=2, block=4)
    np.testing.assert_allclose(p1.trace, p4.trace, rtol=1e-10)
    s1, s3 = slq_density(op, 3, 12, seed=4, block=1), slq_density(op, 3, 12, seed=4, block=3)
    assert (s1.n_products, s3.n_products, s1.block, s3.block) == (36, 36, 1, 3)
    np.testing.assert_allclose(s1.nodes, s3.nodes, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(s1.weights, s3.weights, rtol=1e-6, atol=1e-10)
    with pytest.raises(LandscapeError):
        probe_block_size(op, 0)


def test_block_slq_restarts_like_the_single_probe_on_an_invariant_subspace():
    """A diagonal matrix with repeated eigenvalues: Lanczos breaks down and restarts from a seeded
    Gaussian; blocks of probes restart from the same vectors as single probes."""
    from landscape.curvature import DenseOperator
    A = DenseOperator(torch.diag(torch.tensor([3.0, 3.0, 3.0, 1.0, 1.0, 2.0],
                                              dtype=torch.float64)))
    s1, s2 = slq_density(A, 2, 6, seed=0, block=1), slq_density(A, 2, 6, seed=0, block=2)
    np.testing.assert_allclose(s1.nodes, s2.nodes, atol=1e-10)
    # the weight of a repeated node may sit on either copy: compare the measures and densities
    for p in range(2):
        for lam in (1.0, 2.0, 3.0):
            w1 = s1.weights[p][np.isclose(s1.nodes[p], lam)].sum()
            w2 = s2.weights[p][np.isclose(s2.nodes[p], lam)].sum()
            assert abs(w1 - w2) < 1e-10
    np.testing.assert_allclose(s1.density, s2.density, atol=1e-8)
