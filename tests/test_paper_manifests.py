"""The paper's CIFAR-100 architectures against the released-checkpoint manifests.

For each manifest: state_dict keys (order-insensitive), shapes and dtypes must be identical, and
the logits for the README's deterministic weight recipe must match ``reference.logits`` within
1e-5 (tight enough to catch a Swin LayerNorm eps of 1e-6 instead of 1e-5, see the README there).
"""
from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path

import landscape_models as models
import pytest
import torch

# A copy of ../shared/paper-checkpoints travels with the repo so a clean clone tests them too.
MANIFEST_DIR = Path(os.environ.get(
    "LANDSCAPE_PAPER_MANIFESTS", Path(__file__).resolve().parent / "paper_manifests"))
# Swin last: the sensitivity test below reuses its build.
PAPER = {"alternet50": "alternet_50", "pit_ti": "pit_ti", "resnet50": "resnet_50",
         "vit_ti": "vit_ti", "swin_ti": "swin_ti"}
TOL = 1e-5


def _manifest(name: str) -> dict:
    path = MANIFEST_DIR / f"{PAPER[name]}_cifar100.json"
    if not path.exists():
        pytest.skip(f"manifest {path} not found (set LANDSCAPE_PAPER_MANIFESTS)")
    return json.loads(path.read_text())


@functools.lru_cache(maxsize=1)
def _model(name: str) -> torch.nn.Module:
    """The last paper model built is kept (the Swin sensitivity test reuses the Swin build)."""
    return models.create(name, num_classes=100, in_chans=3, img_size=32)


def regenerate_weights(manifest: dict, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The README recipe: entry i of the manifest gets a CPU generator seeded with i."""
    own = model.state_dict()
    buffers = set(manifest["buffers"])
    out = {}
    for i, (key, info) in enumerate(manifest["state_dict"].items()):
        shape = info["shape"]
        g = torch.Generator().manual_seed(i)
        if key in buffers:
            if key.endswith("running_mean"):
                out[key] = 0.02 * torch.randn(shape, generator=g, dtype=torch.float32)
            elif key.endswith("running_var"):
                out[key] = 1 + 0.1 * torch.rand(shape, generator=g, dtype=torch.float32)
            elif key.endswith("num_batches_tracked"):
                out[key] = torch.zeros(shape, dtype=torch.int64)
            else:
                out[key] = own[key]
            continue
        z = torch.randn(shape, generator=g, dtype=torch.float32)
        if key.endswith(".weight") and len(shape) == 1:
            out[key] = 1 + 0.02 * z
        elif key.endswith(".weight") and len(shape) >= 2:
            out[key] = z / math.sqrt(math.prod(shape[1:]))
        else:
            out[key] = 0.02 * z
    return out


def test_rng_stream_matches_readme():
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(12345))
    want = torch.tensor([-1.4798077, 0.4873060, -3.0127938, 0.4438552])
    assert torch.allclose(x[0, 0, 0, :4], want, atol=1e-6)


@pytest.mark.parametrize("name", list(PAPER))
def test_layout_and_reference_logits(name):
    man = _manifest(name)
    model = _model(name)
    sd = model.state_dict()
    assert set(sd) == set(man["state_dict"]), (
        f"missing {sorted(set(man['state_dict']) - set(sd))[:10]}, "
        f"unexpected {sorted(set(sd) - set(man['state_dict']))[:10]}")
    for key, info in man["state_dict"].items():
        assert list(sd[key].shape) == info["shape"], key
        assert str(sd[key].dtype).removeprefix("torch.") == info["dtype"], key
    assert sum(p.numel() for p in model.parameters()) == man["num_params"]
    assert {k for k, _ in model.named_buffers() if k in sd} == set(man["buffers"])

    model.load_state_dict(regenerate_weights(man, model), strict=True)
    model.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(12345))
    with torch.no_grad():
        logits = model(x)
    ref = torch.tensor(man["reference"]["logits"], dtype=torch.float32)
    assert logits.shape == ref.shape == (2, 100)
    diff = (logits - ref).abs().max().item()
    assert diff < TOL, f"{name}: max abs logit difference {diff:.3g} >= {TOL}"


def test_recipe_is_sensitive():
    """A wrong architecture detail must fail the 1e-5 check: Swin with LayerNorm eps 1e-6."""
    man = _manifest("swin_ti")
    model = _model("swin_ti")
    model.load_state_dict(regenerate_weights(man, model), strict=True)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(12345))
    model.eval()
    try:
        for m in norms:
            m.eps = 1e-6
        with torch.no_grad():
            diff = (model(x) - torch.tensor(man["reference"]["logits"])).abs().max().item()
    finally:
        for m in norms:
            m.eps = 1e-5
    assert diff > TOL
