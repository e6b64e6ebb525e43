"""The runnable examples in the curvature modules' docstrings (operators, the Hessian's GGN and
empirical-Fisher siblings, Lanczos top-k, Hutchinson/Hutch++ trace, SLQ density, the probe block
rule): every example must run and print what its docstring says."""
from __future__ import annotations

import doctest
import importlib

import pytest
import torch

MODULES = [
    "landscape.curvature.operators",
    "landscape.curvature.ggn",
    "landscape.curvature.fisher",
    "landscape.curvature.lanczos",
    "landscape.curvature.trace",
    "landscape.curvature.density",
    "landscape.curvature.block_size",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    torch.set_num_threads(1)
    module = importlib.import_module(name)
    res = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert res.attempted > 0, f"{name} has no examples"
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples in {name} failed"
