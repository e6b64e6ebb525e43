"""Model zoo: registry, block lists (order, kinds, grids, lesions), attention, double backward."""
from __future__ import annotations

import landscape_models as models
import pytest
import torch
import torch.nn as nn
from landscape_models.alternet import parse_pattern
from landscape_models.attention import attend, reference_attention
from landscape_models.vit import neighbourhood_mask
from torch.nn.attention import SDPBackend, sdpa_kernel

TINY = dict(num_classes=10, in_chans=1, img_size=28)
# Small configurations of the paper models so every registered model is exercised quickly.
# (Their full-size layouts and outputs are checked in test_paper_manifests.py.)
SMALL = {
    "resnet50": dict(num_classes=7, in_chans=3, img_size=16, widths=(4, 4, 8, 8),
                     num_blocks=(1, 2, 1, 1)),
    "alternet50": dict(num_classes=7, in_chans=3, img_size=16, widths=(4, 4, 8, 8),
                       pattern="C,CCM,CMM,CM", heads=(1, 1, 2, 2), dim_head=8),
    "vit_ti": dict(num_classes=7, in_chans=3, img_size=8, depth=2, embed_dim=24),
    "pit_ti": dict(num_classes=7, in_chans=3, img_size=8, depth=(1, 1, 1), base_dims=(8, 8, 8)),
    "swin_ti": dict(num_classes=7, in_chans=3, img_size=8, depths=(2, 2, 2, 2), embed_dim=12,
                    num_heads=(1, 2, 3, 4)),
}
EXPECTED = {"resnet50", "vit_ti", "pit_ti", "swin_ti", "alternet50",
            "resnet_tiny", "vit_tiny", "alternet_tiny", "pit_tiny"}
# One small configuration per attention family for the double-backward check (8x8 inputs).
ATTENTION_TINY = {
    "vit_tiny": dict(depth=2),
    "pit_tiny": dict(),
    "alternet_tiny": dict(),
    "swin_ti": dict(embed_dim=8, depths=(2, 2, 2), num_heads=(1, 2, 2), window_size=2),
}


def _config(name: str) -> dict:
    return dict(SMALL.get(name, TINY))


def _build(name: str) -> tuple[nn.Module, torch.Tensor, int]:
    cfg = _config(name)
    torch.manual_seed(0)
    model = models.create(name, **cfg).eval()
    x = torch.randn(2, cfg["in_chans"], cfg["img_size"], cfg["img_size"],
                    generator=torch.Generator().manual_seed(1))
    return model, x, cfg["num_classes"]


def test_registry_names():
    assert set(models.names()) >= EXPECTED


@pytest.mark.parametrize("name", models.names())
def test_block_list_contract(name):
    model, x, num_classes = _build(name)
    blocks = models.blocks(model)
    names = [b.name for b in blocks]
    assert len(set(names)) == len(names), "block names must be unique"
    assert all(b.kind in models.KINDS for b in blocks)
    assert blocks[0].kind == "embed" and blocks[-1].kind == "head"
    assert all(b.kind != "head" for b in blocks[:-1])
    assert [b.stage for b in blocks] == sorted(b.stage for b in blocks)
    assert all(b.branch is not None for b in blocks if b.kind in ("msa", "mlp"))

    # forward order: hooks fire in list order, each once
    fired: list[str] = []
    handles = [b.module.register_forward_hook(lambda *_a, n=b.name: fired.append(n))
               for b in blocks]
    with torch.no_grad():
        out = model(x)
    for h in handles:
        h.remove()
    assert fired == names
    assert out.shape == (2, num_classes)

    feats = models.block_outputs(model, x, blocks)
    for b in blocks[:-1]:
        g = models.to_grid(feats[b.name], b.tokens)
        assert g.dim() == 4 and g.shape[0] == 2 and g.shape[2] == g.shape[3], b.name
    assert torch.equal(feats["head"], out)

    # lesioning any residual block changes the output; the model is restored afterwards
    residual = [b for b in blocks if b.branch is not None]
    assert residual
    with torch.no_grad():
        for b in residual:
            with models.lesioned(b):
                les = model(x)
            assert not torch.allclose(les, out), b.name
        assert torch.equal(model(x), out)


@pytest.mark.parametrize("name", models.names())
def test_taps_do_not_touch_state_dict(name):
    model, _, _ = _build(name)
    keys = list(model.state_dict())
    assert not [k for k in keys if any(t in k for t in ("after_attn", "after_mlp", "embed_out"))]
    for b in models.blocks(model):
        if isinstance(b.module, nn.Identity):
            assert not b.module.state_dict()


def test_lesion_matches_hand_computation_vit():
    model, x, _ = _build("vit_tiny")
    blocks = models.blocks(model)
    target = next(b for b in blocks if b.name == "blocks.1.msa")
    with torch.no_grad():
        with models.lesioned(target):
            les = model(x)
        t = model.patch_embed(x)
        t = torch.cat([model.cls_token.expand(2, -1, -1), t], dim=1) + model.pos_embed
        for i, blk in enumerate(model.blocks):
            if i != 1:
                t = t + blk.attn(blk.norm1(t))
            t = t + blk.mlp(blk.norm2(t))
        hand = model.head(model.norm(t)[:, 0])
    torch.testing.assert_close(les, hand, rtol=0, atol=1e-6)


def test_lesion_matches_hand_computation_resnet():
    model, x, _ = _build("resnet_tiny")
    target = next(b for b in models.blocks(model) if b.name == "layer3.0")
    with torch.no_grad():
        with models.lesioned(target):
            les = model(x)
        h = model.layer2(model.layer1(model.layer0(x)))
        unit = model.layer3[0]
        hand = model.classifier(model.layer3[1](torch.relu(unit.shortcut(h))))
    torch.testing.assert_close(les, hand, rtol=0, atol=1e-6)


def test_alternet_msa_lesion_is_identity_unit():
    model, x, _ = _build("alternet_tiny")
    target = next(b for b in models.blocks(model) if b.name == "layer3.1")
    assert target.kind == "msa"
    with torch.no_grad():
        with models.lesioned(target):
            les = model(x)
        h = model.layer2(model.layer1(model.layer0(x)))
        hand = model.classifier(model.layer3[0](h))      # layer3.1 adds a zero branch
    torch.testing.assert_close(les, hand, rtol=0, atol=1e-6)


@pytest.mark.parametrize("bias_kind", ["none", "float", "bool"])
def test_attend_matches_reference(bias_kind):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 8, generator=g, dtype=torch.float64) for _ in range(3))
    bias = {"none": None, "float": torch.randn(3, 10, 10, generator=g, dtype=torch.float64),
            "bool": neighbourhood_mask(3, 1)}[bias_kind]
    torch.testing.assert_close(attend(q, k, v, bias, 0.3), reference_attention(q, k, v, bias, 0.3))


def test_neighbourhood_mask():
    m = neighbourhood_mask(3, 3)
    assert m.shape == (10, 10)
    assert m[0].all() and m[:, 0].all()                  # class token is global
    # grid token (0, 0) = index 1 sees (0,0), (0,1), (1,0), (1,1) only
    assert m[1, 1:].nonzero().flatten().tolist() == [0, 1, 3, 4]
    with pytest.raises(ValueError):
        neighbourhood_mask(3, 2)


@pytest.mark.parametrize("window,changes", [(3, False), (None, True)])
def test_vit_window_restricts_attention(window, changes):
    """After the first MSA, a patch token depends only on its k x k neighbourhood (and the class
    token, whose input is image-independent): a far-away patch must not influence it."""
    torch.manual_seed(0)
    model = models.create("vit_tiny", **TINY, window=window).eval()
    x = torch.randn(1, 1, 28, 28)
    x2 = x.clone()
    x2[..., 24:, 24:] += 1.0                              # patch (6, 6)
    tap = models.blocks(model)[1]
    assert tap.name == "blocks.0.msa"
    outs = []
    for inp in (x, x2):
        with models.capture([tap]) as cap, torch.no_grad():
            model(inp)
        outs.append(cap[tap.name][0, 1])                 # token of patch (0, 0)
    assert (not torch.allclose(outs[0], outs[1])) == changes


def test_pattern_forms():
    want = [["C", "C", "C"], ["C", "C", "C", "M"], ["C", "M", "C", "M", "C", "M"],
            ["C", "M", "C", "M"]]
    assert parse_pattern("CCC,CCCM,CMCMCM,CMCM") == want
    assert parse_pattern(["CCC", "CCCM", "CMCMCM", "CMCM"]) == want
    assert parse_pattern(want) == want
    with pytest.raises(ValueError):
        parse_pattern("CCX,CM")
    m = models.create("alternet_tiny", **TINY, pattern=[["C"], ["M", "C"], ["C", "M"]])
    kinds = [(b.name, b.kind) for b in models.blocks(m)[1:-1]]
    assert kinds == [("layer1.0", "conv"), ("layer2.0", "msa"), ("layer2.1", "conv"),
                     ("layer3.0", "conv"), ("layer3.1", "msa")]
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", list(ATTENTION_TINY))
def test_double_backward_under_math_sdpa(name):
    """Hessian-vector product through the model (create_graph) under the MATH SDPA backend,
    checked against a central difference of gradients in float64."""
    torch.manual_seed(0)
    model = models.create(name, num_classes=3, in_chans=1, img_size=8,
                          **ATTENTION_TINY[name]).double().eval()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 2])
    params = [p for p in model.parameters() if p.requires_grad]
    vec = [torch.randn_like(p) for p in params]

    def grads() -> list[torch.Tensor]:
        loss = nn.functional.cross_entropy(model(x), y)
        return list(torch.autograd.grad(loss, params, create_graph=True))

    with sdpa_kernel(SDPBackend.MATH):
        g = grads()
        hv = torch.autograd.grad(g, params, grad_outputs=vec)
        eps = 1e-6
        with torch.no_grad():
            for p, v in zip(params, vec, strict=True):
                p.add_(eps * v)
        gp = [t.detach() for t in grads()]
        with torch.no_grad():
            for p, v in zip(params, vec, strict=True):
                p.sub_(2 * eps * v)
        gm = [t.detach() for t in grads()]
        with torch.no_grad():
            for p, v in zip(params, vec, strict=True):
                p.add_(eps * v)
    fd = torch.cat([((a - b) / (2 * eps)).flatten() for a, b in zip(gp, gm, strict=True)])
    hv = torch.cat([t.flatten() for t in hv])
    assert torch.isfinite(hv).all() and hv.abs().max() > 0
    # central-difference error is O(eps^2): about 1e-8 of the HVP's scale here
    assert (hv - fd).abs().max() <= 1e-6 * hv.abs().max()


@pytest.mark.parametrize("name", ["resnet_tiny", "vit_tiny", "alternet_tiny"])
def test_tiny_parameter_budget(name):
    n = sum(p.numel() for p in models.create(name, **TINY).parameters())
    lo, hi = {"resnet_tiny": (150_000, 200_000), "vit_tiny": (150_000, 200_000),
              "alternet_tiny": (100_000, 200_000)}[name]
    assert lo <= n <= hi


def test_sdpa_close_to_manual_in_paper_vit(monkeypatch):
    """The paper models use SDPA; its output must agree with written-out attention far inside the
    1e-5 logit tolerance of the manifest tests."""
    import landscape_models.attention as att
    torch.manual_seed(0)
    model = models.create("vit_ti", num_classes=7, in_chans=3, img_size=8, depth=2).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        fused = model(x)
        monkeypatch.setattr(att, "attend", reference_attention)
        manual = model(x)
    assert (fused - manual).abs().max() < 1e-6
