"""Curvature package: L2 terms composed with the loss Hessian, repeated products, the
warm-startable subspace solver and pyhessian's product count, against float64 references."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from cases import make

from landscape.curvature import (  # noqa: E402
    DenseOperator,
    HessianOperator,
    LossHessian,
    check_repeated_products,
    dense_hessian,
    l2_hessian,
    l2_penalty,
    subspace_eigenpairs,
    top_eigenvalues,
)
from landscape.errors import LandscapeError  # noqa: E402

torch.set_num_threads(1)



def _dense_l2(params, wd, kind):
    """The L2 term's Hessian by autograd on the penalty itself (independent of l2_hessian)."""
    prim = tuple(p.detach() for p in params)
    blocks = torch.autograd.functional.hessian(lambda *ps: l2_penalty(ps, wd, kind), prim)
    return torch.cat([torch.cat([blocks[i][j].reshape(prim[i].numel(), prim[j].numel())
                                 for j in range(len(prim))], 1) for i in range(len(prim))], 0)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("kind", ["half", "paper"])
def test_l2_composed_equals_dense_sum(name, kind):
    m, x, y = make(name)
    with torch.no_grad():  # BN's bias starts at zero, where ||p|| has no Hessian
        for p in m.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1),
                                     dtype=p.dtype))
    params = [p for n, p in m.named_parameters() if not n.startswith("unused")]
    sel = [n for n, _ in m.named_parameters() if not n.startswith("unused")]
    wd = 0.05
    H = dense_hessian(m, x, y, params=sel)
    L2 = _dense_l2(params, wd, kind)
    composed = LossHessian(m, (x, y), params=sel) + l2_hessian(params, wd, kind)
    torch.testing.assert_close(composed.dense(), H + L2, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(HessianOperator(m, (x, y), params=sel, wd=wd, l2=kind).dense(),
                               H + L2, rtol=1e-10, atol=1e-12)
    if kind == "half":
        torch.testing.assert_close(L2, wd * torch.eye(len(L2), dtype=L2.dtype))
    # the hand computation of the paper's term: wd * sum_p ||p||_2
    hand = wd * sum(float(torch.sqrt((p.detach() ** 2).sum())) for p in params)
    if kind == "paper":
        assert float(l2_penalty(params, wd, "paper").detach()) == pytest.approx(hand, rel=1e-14)


def test_repeated_products_agree_and_a_drifting_operator_is_caught():
    m, x, y = make("cnn")
    assert check_repeated_products(HessianOperator(m, (x, y), wd=0.01)) == 0.0

    class Drifting(DenseOperator):
        def matvec(self, v):
            self.A = self.A * 1.001  # changes between products
            return super().matvec(v)

    with pytest.raises(LandscapeError, match="repeated products differ"):
        check_repeated_products(Drifting(torch.eye(5, dtype=torch.float64)))


@pytest.mark.parametrize("name", ["mlp", "cnn", "attn"])
def test_subspace_solver_matches_dense(name):
    m, x, y = make(name)
    H = dense_hessian(m, x, y)
    ev = torch.linalg.eigvalsh(H).numpy()
    op = HessianOperator(m, (x, y))
    basis = torch.randn(op.shape[0], 3, generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)
    r = subspace_eigenpairs(op, {"LM": 4, "SA": 1}, basis, tol=1e-8)
    lm = ev[np.argsort(-np.abs(ev))[:4]]
    np.testing.assert_allclose(r["LM"].eigenvalues, lm, rtol=1e-6)
    np.testing.assert_allclose(r["SA"].eigenvalues, ev[:1], rtol=1e-6)
    assert r["LM"].converged and r["SA"].converged
    Y = r["LM"].eigenvectors
    res = (H @ Y - Y * torch.as_tensor(r["LM"].eigenvalues)).norm(dim=0).numpy()
    np.testing.assert_allclose(res, r["LM"].residuals, rtol=1e-4, atol=1e-12)
    # warm start from the exact eigenvectors: converged after the first block
    w = subspace_eigenpairs(op, {"LM": 4}, Y, tol=1e-6)
    assert w["LM"].n_products == 4 and w["LM"].converged


def test_pyhessian_products_counted_and_convergence_real():
    m, x, y = make("cnn")
    op = HessianOperator(m, (x, y))
    r = top_eigenvalues(op, 2, "LM", backend="pyhessian", tol=1e-2, max_iter=3, seed=0)
    assert r.n_products == 6 and op.n_products == 6  # 2 eigenvalues x maxIter 3, no extras
    loose = r.residuals > 1e-3 * np.abs(r.eigenvalues)
    assert r.converged == (not loose.any())
    batches = [(x[:6], y[:6]), (x[6:], y[6:])]
    r2 = top_eigenvalues(HessianOperator(m, batches), 1, "LM", backend="pyhessian", tol=1e-2,
                         max_iter=4, seed=0)
    assert r2.n_products <= 4 and r2.n_products >= 2


def test_eigen_result_repr_omits_eigenvectors():
    import numpy as np

    from landscape.curvature.results import EigenResult
    r = EigenResult(np.ones(2), np.zeros(2), 3, True, 0, "LM", 1e-3, "lanczos",
                    torch.ones(1000, 2))
    assert "eigenvalues" in repr(r) and "tensor" not in repr(r)
