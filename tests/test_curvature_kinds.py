"""The curvature kinds are siblings on one data loop, and a backend or option that cannot serve
a kind refuses it in one line (``LandscapeError``; the CLI: ``landscape: error: ...``, exit 2)
instead of computing another kind's numbers under its name."""
from __future__ import annotations

import pytest
import torch

from landscape.cli import main
from landscape.curvature import (
    CurvatureOperator,
    EmpiricalFisherOperator,
    GGNOperator,
    HessianOperator,
    LossHessian,
    top_eigenvalues,
)
from landscape.curvature.spectrum import max_eigenvalue_spectrum
from landscape.errors import LandscapeError
from landscape.settings import SpectrumSettings


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    return m, x, torch.tensor([0, 1, 2, 0, 1, 2])


def test_kinds_are_siblings_on_one_base():
    for cls in (LossHessian, GGNOperator, EmpiricalFisherOperator):
        assert issubclass(cls, CurvatureOperator)
    for a in (LossHessian, GGNOperator, EmpiricalFisherOperator):
        for b in (LossHessian, GGNOperator, EmpiricalFisherOperator):
            assert a is b or not issubclass(a, b), (a, b)


@pytest.mark.parametrize("kind", ["ggn", "ef"])
def test_pyhessian_refuses_a_curvature_other_than_the_hessian(tiny, kind):
    m, x, y = tiny
    op = HessianOperator(m, (x, y), curvature=kind)
    with pytest.raises(LandscapeError, match=f"the {kind} curvature needs backend landscape"):
        top_eigenvalues(op, 2, backend="pyhessian")
    assert op.n_products == 0  # refused before any product


@pytest.mark.parametrize("kind", ["ggn", "ef"])
@pytest.mark.parametrize("mode", ["double_backward", "forward_over_reverse"])
def test_a_product_mode_is_refused_for_kinds_without_one(tiny, kind, mode):
    m, x, y = tiny
    with pytest.raises(LandscapeError, match=f"the {kind} curvature has one product"):
        HessianOperator(m, (x, y), curvature=kind, mode=mode)
    cls = {"ggn": GGNOperator, "ef": EmpiricalFisherOperator}[kind]
    with pytest.raises(LandscapeError, match="leave mode at auto"):
        cls(m, (x, y), mode=mode)
    assert HessianOperator(m, (x, y), curvature=kind, mode="auto").config()["mode"] == kind


def test_the_spectrum_refuses_before_writing(tiny, tmp_path):
    m, x, y = tiny
    out = tmp_path / "spectrum.h5"
    cfg = SpectrumSettings(k=1, batch_size=3, n_batches=2, curvature="ggn", backend="pyhessian")
    with pytest.raises(LandscapeError, match="backend pyhessian computes the Hessian only"):
        max_eigenvalue_spectrum(m, x, y, cfg, out=out, progress=False)
    assert not out.exists()


@pytest.mark.parametrize("argv,says", [
    (["--curvature", "ggn", "--backend", "pyhessian"], "backend pyhessian computes the Hessian"),
    (["--curvature", "ef", "--backend", "pyhessian"], "backend pyhessian computes the Hessian"),
    (["--curvature", "ggn", "--mode", "double_backward"], "mode double_backward chooses"),
    (["--curvature", "ef", "--mode", "forward_over_reverse"], "mode forward_over_reverse"),
])
def test_the_command_ends_with_one_line_and_exit_2(tmp_path, capsys, argv, says):
    rc = main(["hessian", str(tmp_path / "no-such.pt"), "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("landscape: error: ") and says in err, err
    assert not (tmp_path / "out").exists()  # refused before any work
