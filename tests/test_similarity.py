"""Mini-batch linear CKA: properties, full-batch equality, U-statistic reference, known values."""
import itertools
import math

import landscape_models as models
import numpy as np
import pytest
import torch
import torch.nn as nn

from landscape.features.similarity import (
    CKAResult,
    MinibatchCKA,
    cka_analysis,
    gram_linear,
    hsic,
    hsic_matrix,
    linear_cka,
)

torch.set_num_threads(1)


def _rand(n, d, seed):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _cka(xs, estimator):
    acc = MinibatchCKA(len(xs[0]), estimator)
    for batch in xs:
        acc.update(batch)
    return acc.value()


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_self_similarity_orthogonal_and_scaling_invariance(estimator):
    x, y = _rand(12, 5, 0), _rand(12, 7, 1)
    q, _ = torch.linalg.qr(_rand(5, 5, 2))
    m = _cka([[x, y, x @ q, 3.7 * x]], estimator)
    assert m[0, 0] == pytest.approx(1.0) and m[1, 1] == pytest.approx(1.0)
    assert m[0, 2] == pytest.approx(1.0) and m[0, 3] == pytest.approx(1.0)
    assert m[1, 2] == pytest.approx(m[1, 0]) and m[1, 3] == pytest.approx(m[1, 0])
    assert 0 < abs(m[0, 1]) < 1
    np.testing.assert_allclose(m, m.T)


def test_biased_one_batch_equals_full_batch_linear_cka():
    x, y = _rand(15, 6, 3), _rand(15, 4, 4)
    y = y + x[:, :4]  # correlated
    m = _cka([[x, y]], "biased")
    assert m[0, 1] == pytest.approx(linear_cka(x, y), rel=1e-12)


def _hsic_u_statistic(K, L):
    """Unbiased HSIC from its U-statistic definition (sums over distinct indices)."""
    n = K.shape[0]
    t1 = sum(K[i, j] * L[i, j] for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    t2 = sum(K[i, j] * L[q, r] for i, j, q, r in itertools.permutations(range(n), 4)) / (
        n * (n - 1) * (n - 2) * (n - 3))
    t3 = sum(K[i, j] * L[i, q] for i, j, q in itertools.permutations(range(n), 3)) / (
        n * (n - 1) * (n - 2))
    return t1 + t2 - 2 * t3


def test_unbiased_hsic_equals_u_statistic_and_one_batch_cka():
    x, y = _rand(6, 3, 5), _rand(6, 2, 6)
    K, L = gram_linear(x).numpy(), gram_linear(y).numpy()
    ref = _hsic_u_statistic(K, L)
    assert hsic(torch.tensor(K), torch.tensor(L), "unbiased") == pytest.approx(ref, rel=1e-10)
    m = _cka([[x, y]], "unbiased")
    ref_cka = ref / math.sqrt(_hsic_u_statistic(K, K) * _hsic_u_statistic(L, L))
    assert m[0, 1] == pytest.approx(ref_cka, rel=1e-10)


def test_biased_hsic_reference():
    x, y = _rand(5, 3, 7), _rand(5, 2, 8)
    K, L = gram_linear(x).numpy(), gram_linear(y).numpy()
    h = np.eye(5) - 1 / 5
    assert hsic(torch.tensor(K), torch.tensor(L), "biased") == pytest.approx(
        np.trace(K @ h @ L @ h) / 16, rel=1e-12)


def test_known_matrices():
    # X: centred, orthogonal columns of equal norm; Y = its first column -> CKA = 1/sqrt(2)
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    assert linear_cka(x, x[:, :1]) == pytest.approx(1 / math.sqrt(2))
    assert _cka([[x, x[:, :1]]], "biased")[0, 1] == pytest.approx(1 / math.sqrt(2))
    # unequal norms a, b -> a^2 / sqrt(a^4 + b^4)
    xs = x * torch.tensor([2.0, 1.0], dtype=torch.float64)
    assert linear_cka(xs, xs[:, :1]) == pytest.approx(4 / math.sqrt(17))


def test_minibatch_average_over_batches():
    b1 = [_rand(8, 3, 10), _rand(8, 4, 11)]
    b2 = [_rand(6, 3, 12), _rand(6, 4, 13)]
    h = (hsic_matrix([gram_linear(t) for t in b1]) + hsic_matrix([gram_linear(t) for t in b2])) / 2
    expect = h[0, 1] / torch.sqrt(h[0, 0] * h[1, 1])
    acc = MinibatchCKA(2)
    acc.update(b1)
    acc.update(b2)
    with pytest.warns(UserWarning):
        acc.update([_rand(3, 3, 14), _rand(3, 4, 15)])  # too small for the unbiased estimator
    assert acc.batches == 2 and acc.images == 14 and acc.skipped_images == 3
    assert acc.value()[0, 1] == pytest.approx(float(expect), rel=1e-12)
    assert len(acc.per_batch) == 2  # the skipped batch leaves no per-batch matrix
    np.testing.assert_allclose(acc.per_batch[1], hsic_matrix([gram_linear(t) for t in b2]))


def test_cka_analysis_on_a_model(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 3, 3, padding=1)
            self.b = nn.Identity()
            self.c = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(48, 4))

        def forward(self, x):
            return self.c(self.b(self.a(x)))

    torch.manual_seed(0)
    model = Net()
    x = torch.randn(20, 1, 4, 4)
    bl = models.named_blocks(model, {"a": "conv", "b": "conv", "c": "head"})
    r = cka_analysis(model, x, block_list=bl, batch_size=10)
    m = r.matrix
    assert r.n_images == 20 and r.n_batches == 2
    np.testing.assert_allclose(np.diag(m), 1.0)
    assert m[0, 1] == pytest.approx(1.0)  # identity block
    np.testing.assert_allclose(m, m.T)
    back = CKAResult.load(r.save(tmp_path / "c.json"))
    np.testing.assert_allclose(back.matrix, m)
    assert back.estimator == "unbiased"
    # the per-batch HSIC matrices average to the reported CKA
    from landscape.features.similarity import cka_from_hsic
    assert np.asarray(back.hsic_batches).shape == (2, 3, 3)
    np.testing.assert_allclose(cka_from_hsic(np.mean(back.hsic_batches, axis=0)), m, rtol=1e-6)
