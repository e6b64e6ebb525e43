"""mode="auto" without a probe tax: every product computed is counted (checked by counting the
calls into the underlying Hessian-vector products), the measuring products are Lanczos steps
(no extra products over a pinned mode), and the persistent cache of choices is keyed, used,
invalidated by a torch version change and never trusted when unreadable."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cases import make

from landscape.curvature import (  # noqa: E402
    HessianOperator,
    LossHessian,
    dense_hessian,
    hutchpp_trace,
    mode_cache,
    slq_density,
    top_eigenvalues,
)
from landscape.curvature.modes import PROBE_SCHEDULE  # noqa: E402

torch.set_num_threads(1)


# every test: no CPU rule, so "auto" measures as on an accelerator (the empty private mode
# cache is conftest's, for every test)
pytestmark = pytest.mark.usefixtures("no_cpu_rule")


@pytest.fixture
def hvp_calls(monkeypatch):
    """Vectors multiplied by each underlying product function (a batched call counts its
    vectors)."""
    calls = {"double_backward": 0, "forward_over_reverse": 0}
    for mode in calls:
        name = f"_hvp_{mode}"
        orig = getattr(LossHessian, name)

        def counted(self, i, vs, batched, _orig=orig, _mode=mode):
            calls[_mode] += vs[0].shape[0] if batched else 1
            return _orig(self, i, vs, batched)

        monkeypatch.setattr(LossHessian, name, counted)
    return calls


def _lanczos(op):
    return top_eigenvalues(op, 3, "LM", tol=1e-8, seed=0, return_eigenvectors=False)


@pytest.mark.parametrize("name", ["mlp", "cnn", "attn"])
def test_auto_counts_every_product_and_spends_none_extra(hvp_calls, name):
    m, x, y = make(name)
    H = dense_hessian(m, x, y)
    ev = np.linalg.eigvalsh(H.numpy())
    ref = ev[np.argsort(-np.abs(ev))][:3]

    pinned = HessianOperator(m, (x, y), mode="double_backward")
    rp = _lanczos(pinned)
    assert hvp_calls["double_backward"] == pinned.n_products == rp.n_products
    hvp_calls.update(double_backward=0, forward_over_reverse=0)

    auto = HessianOperator(m, (x, y))  # empty cache: measured inside the Lanczos steps
    ra = _lanczos(auto)
    assert sum(hvp_calls.values()) == auto.n_products == ra.n_products
    # after the probe every product uses the measured winner (which one wins is the machine's)
    won, lost = auto.loss.mode_choice.mode, ({"double_backward", "forward_over_reverse"}
                                             - {auto.loss.mode_choice.mode}).pop()
    assert hvp_calls[lost] == PROBE_SCHEDULE.count(lost)
    assert hvp_calls[won] == auto.n_products - PROBE_SCHEDULE.count(lost)
    assert auto.loss.mode_choice.source == "probe"
    assert auto.loss.mode_choice.probe_products == len(PROBE_SCHEDULE)
    # the measuring products were Lanczos steps: no more products than the pinned run (the two
    # modes agree to rounding, so the runs may differ by a confirming step at most)
    assert abs(ra.n_products - rp.n_products) <= 1
    np.testing.assert_allclose(ra.eigenvalues, ref, rtol=1e-7)
    np.testing.assert_allclose(rp.eigenvalues, ref, rtol=1e-7)
    hvp_calls.update(double_backward=0, forward_over_reverse=0)

    again = HessianOperator(m, (x, y))  # the same setting: the cached choice, nothing measured
    rc = _lanczos(again)
    assert again.loss.mode_choice.source == "cache"
    assert again.loss.mode_choice.mode == auto.loss.mode_choice.mode
    assert sum(hvp_calls.values()) == again.n_products == rc.n_products
    assert hvp_calls[again.loss.mode_choice.mode] == rc.n_products  # one mode only
    assert again.config()["mode_choice"]["source"] == "cache"


def test_batched_probes_and_estimators_count_honestly(hvp_calls):
    m, x, y = make("cnn")
    op = HessianOperator(m, (x, y))
    t = hutchpp_trace(op, 30, seed=0, block=4)
    assert sum(hvp_calls.values()) == op.n_products == t.n_products == 30
    assert op.loss.mode_choice.source == "probe"
    op2 = HessianOperator(m, [(x[:5], y[:5]), (x[5:], y[5:])])  # two batches: 2 calls a product
    d = slq_density(op2, 2, 7, seed=0)
    assert d.n_products == op2.n_products == 14
    assert sum(hvp_calls.values()) == 30 + 2 * 14


def test_cache_key_and_invalidation(tmp_path, monkeypatch):
    m, x, y = make("mlp")
    op = HessianOperator(m, (x, y))
    op.matmat(torch.randn(op.shape[0], 1, dtype=torch.float64))
    assert op.loss.mode == "auto"  # still measuring after one product
    for _ in range(len(PROBE_SCHEDULE) - 1):
        op.matvec(torch.randn(op.shape[0], dtype=torch.float64))
    assert op.loss.mode in ("double_backward", "forward_over_reverse")
    path = tmp_path / "mode-cache" / mode_cache.FILE
    data = json.loads(path.read_text())
    assert data["torch"] == torch.__version__
    (entry,) = data["entries"].values()
    key = entry["key"]
    assert key["n_params"] == op.shape[0] and key["dtype"] == "torch.float64"
    assert key["batch_shapes"] == [list(x.shape)] and key["arch"].endswith("TinyMLP")
    assert key["device"] == f"cpu:{torch.get_num_threads()}threads"
    # another batch shape, another dtype: other settings, measured again
    assert mode_cache.lookup(HessianOperator(m, (x[:5], y[:5])).loss.mode_cache_key()) is None
    assert mode_cache.lookup(op.loss.mode_cache_key()) is not None
    # a torch version change invalidates the whole file
    data["torch"] = "0.0.0"
    path.write_text(json.dumps(data))
    assert mode_cache.lookup(op.loss.mode_cache_key()) is None
    # an unreadable file: one warning naming it, then measured (and rewritten)
    path.write_text("{not json")
    fresh = HessianOperator(m, (x, y))
    with pytest.warns(UserWarning, match="ignoring the product-mode cache"):
        fresh.resolved_mode()
    assert fresh.loss.mode_choice.source == "probe"
    assert json.loads(path.read_text())["torch"] == torch.__version__
    # switched off: nothing read or written
    monkeypatch.setenv("LANDSCAPE_CACHE", "off")
    path.unlink()
    off = HessianOperator(m, (x, y))
    off.resolved_mode()
    assert not path.exists() and off.loss.mode_choice.source == "probe"


def test_probe_block_measured_on_real_probes_then_cached(hvp_calls):
    from landscape.curvature import hutchinson_trace, probe_block_size
    from landscape.curvature.block_size import CANDIDATE, BlockedProducts
    m, x, y = make("cnn")
    op = HessianOperator(m, (x, y))
    t = hutchinson_trace(op, 16, seed=0)  # block "auto": measured on its own probes
    assert t.block in (1, CANDIDATE)
    assert sum(hvp_calls.values()) == op.n_products == t.n_products == 16
    assert probe_block_size(op) == t.block  # recorded for this setting
    fresh = HessianOperator(m, (x, y))
    apply = BlockedProducts(fresh)
    assert apply.block == t.block and not apply.measure  # the next estimate measures nothing
    ref = hutchinson_trace(HessianOperator(m, (x, y), mode="double_backward"), 16, seed=0,
                           block=1)
    np.testing.assert_allclose(t.samples, ref.samples, rtol=1e-9)
    # too few probes to measure: the rule (or the cache), nothing timed
    small = BlockedProducts(HessianOperator(m, (x[:5], y[:5])))
    small(torch.randn(small.op.shape[0], 3, dtype=torch.float64))
    assert small.seconds == {}
