"""A researcher's own model: --model-def, block inference, --blocks, `landscape blocks`, loud
failures, and the README's "Your own model" example run verbatim."""
import copy
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import landscape_models as models
import pytest
import torch
import torch.nn as nn
from cases import TINY, needs_fashion_mnist
from landscape_models.inference import blocks_from_spec, infer_blocks

from landscape.cli import main as cli_main
from landscape.errors import LandscapeError
from landscape.loading import checkpoint
from landscape.loading.user_model import import_callable, load_model, parse_blocks_arg
from landscape.store.provenance import file_sha256

ROOT = Path(__file__).resolve().parents[1]

# A small CNN with an attention layer (sequence-first MHA) and a residual conv unit, not in
# our registry; the conv unit is a class so inference must find it through torch.fx.
USER_MODEL = textwrap.dedent("""
    import torch.nn as nn


    class Unit(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)
            self.relu = nn.ReLU()

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + x)


    class SmallNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
            self.unit1 = Unit(8)
            self.down = nn.Conv2d(8, 8, 4, stride=4)
            self.unit2 = Unit(8)
            self.mixer = nn.MultiheadAttention(8, 2)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            x = self.unit2(self.down(self.unit1(self.stem(x))))
            t = x.flatten(2).permute(2, 0, 1)
            t = t + self.mixer(t, t, t, need_weights=False)[0]
            return self.fc(t.mean(0))
""")


@pytest.fixture()
def user_model(tmp_path):
    """(model file, plain state-dict checkpoint, the model) in a temp folder."""
    f = tmp_path / "small_net.py"
    f.write_text(USER_MODEL)
    net = import_callable(f"{f}:SmallNet")()
    torch.save(net.state_dict(), tmp_path / "small.pt")
    return f, tmp_path / "small.pt", net


def _kinds(bl):
    return [(b.name, b.kind, b.stage, b.branch is not None) for b in bl]


def test_infer_blocks_user_cnn_with_attention(user_model):
    _f, _ck, net = user_model
    bl = infer_blocks(net, torch.randn(2, 1, 28, 28))
    assert _kinds(bl) == [("embed", "embed", 0, False), ("unit1", "conv", 0, True),
                          ("unit2", "conv", 1, True), ("mixer", "msa", 1, True),
                          ("fc", "head", 1, False)]
    assert bl[1].branch is net.unit1.bn2 and bl[3].branch is net.mixer
    # Without an example: registration order, stage 0, last Linear as head.
    assert _kinds(infer_blocks(net)) == [("embed", "embed", 0, False), ("unit1", "conv", 0, True),
                                         ("unit2", "conv", 0, True), ("mixer", "msa", 0, True),
                                         ("fc", "head", 0, False)]


def test_infer_blocks_matches_our_models_kinds():
    x = torch.randn(2, 1, 28, 28)
    for name in ("resnet_tiny", "vit_tiny", "alternet_tiny"):
        net = models.create(name, num_classes=10, in_chans=1, img_size=28)
        ref = [(b.kind, b.stage) for b in models.blocks(net)]
        got = [(b.kind, b.stage) for b in infer_blocks(net, x)]
        assert got == ref, name
        assert all(b.branch is not None for b in infer_blocks(net, x)
                   if b.kind not in ("head", "embed"))


def test_capture_and_lesion_of_sequence_first_attention(user_model):
    """Exact reference: the captured msa output is (B, N, C); zeroing the branch equals the model
    without the attention term."""
    _f, _ck, net = user_model
    net.eval()
    bl = models.attach_blocks(net, infer_blocks(net, torch.randn(2, 1, 28, 28))).block_list()
    x = torch.randn(3, 1, 28, 28)
    out = models.block_outputs(net, x)
    t = net.down(net.unit1(net.stem(x)))
    t = net.unit2(t).flatten(2).permute(2, 0, 1)
    with torch.no_grad():
        attn = net.mixer(t, t, t)[0]
        # read after the residual addition: t + attn(t), batch first
        assert torch.allclose(out["mixer"], (t + attn).transpose(0, 1), atol=1e-6)
        assert out["mixer"].shape == (3, 49, 8)
        assert bl[3].name == "mixer"
        with models.lesioned(bl[3]):
            y = net(x)
        assert torch.allclose(y, net.fc(t.mean(0)), atol=1e-6)


def test_attach_blocks_survives_deepcopy_and_spec_precedence(user_model):
    _f, _ck, net = user_model
    x = torch.randn(2, 1, 28, 28)
    models.attach_blocks(net, blocks_from_spec(net, {"stem": "embed", "mixer": "msa"}, x))
    twin = copy.deepcopy(net)
    assert [b.module for b in models.blocks(twin)] == [twin.stem, twin.mixer]
    assert models.blocks(twin)[1].branch is twin.mixer  # branch found by inference
    with pytest.raises(KeyError, match="mixr.*close: mixer"):
        blocks_from_spec(net, {"mixr": "msa"})


def test_block_list_method_beats_inference_and_blocks_arg_beats_both(tmp_path):
    net = models.create("resnet_tiny", num_classes=10, in_chans=1, img_size=28)
    p = checkpoint.save(tmp_path / "r.pt", net, dataset="fashion-mnist")
    m, info = load_model(p)
    assert [b.name for b in models.blocks(m)][:2] == ["embed", "layer1.0"]
    assert info.sha256 == file_sha256(p) and "blocks" not in info.extra
    m, info2 = load_model(p, blocks="layer2=conv, layer3.1=conv")
    assert _kinds(models.blocks(m)) == [("layer2", "conv", 0, False), ("layer3.1", "conv", 1, True)]
    assert info2.sha256 != info.sha256 and info2.extra["checkpoint_sha256"] == info.sha256
    for bad in ("layer2", "layer2=convv", ""):
        with pytest.raises(LandscapeError, match="--blocks"):
            parse_blocks_arg(bad)


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("landscape: error: "), err
    return err[0]


def test_loud_failures_exit_2_one_line(user_model, tmp_path, capsys):
    f, ck, _net = user_model
    base = ["blocks", str(ck), "--data", "fashion-mnist"]
    broken = tmp_path / "broken.py"
    broken.write_text("import torch.nn as nn\nraise RuntimeError('no GPU here')\n")
    cases = {
        "importing": [*base, "--model-def", f"{broken}:Net"],
        "file not found": [*base, "--model-def", f"{tmp_path / 'nope.py'}:Net"],
        "has no 'Smallnet' (callables defined there: SmallNet, Unit)":
            [*base, "--model-def", f"{f}:Smallnet"],
        "cannot import module 'no_such_module_xyz'":
            [*base, "--model-def", "no_such_module_xyz:Net"],
        "MODULE:CALLABLE": [*base, "--model-def", str(f)],
        "not both": [*base, "--model-def", f"{f}:SmallNet", "--model", "resnet_tiny"],
    }
    for needle, argv in cases.items():
        assert cli_main(argv) == 2, needle
        assert needle in _one_line_error(capsys)
    # A state dict that does not fit: one line naming the missing and unexpected keys.
    sd = torch.load(ck, weights_only=True)
    sd["extra.weight"] = sd.pop("fc.weight")
    torch.save(sd, tmp_path / "bad.pt")
    assert cli_main(["blocks", str(tmp_path / "bad.pt"), "--model-def", f"{f}:SmallNet"]) == 2
    line = _one_line_error(capsys)
    assert "missing keys (1): fc.weight" in line and "unexpected keys (1): extra.weight" in line
    # A plain CNN: nothing to infer but the head.
    plain = tmp_path / "plain.py"
    plain.write_text("import torch.nn as nn\n"
                     "def net():\n"
                     "    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(),\n"
                     "                         nn.Linear(2704, 10))\n")
    torch.save(import_callable(f"{plain}:net")().state_dict(), tmp_path / "plain.pt")
    assert cli_main(["blocks", str(tmp_path / "plain.pt"), "--model-def", f"{plain}:net"]) == 2
    assert "no blocks found" in _one_line_error(capsys)
    # A model that fails on the dataset's images (3 channels given, 1 expected).
    assert cli_main(["blocks", str(ck), "--model-def", f"{f}:SmallNet", "--data", "cifar10"]) == 2
    assert "fails on an input batch of shape (2, 3, 32, 32)" in _one_line_error(capsys)


def test_blocks_command_registry_and_user_model(user_model, tmp_path, capsys):
    net = models.create("vit_tiny", num_classes=10, in_chans=1, img_size=28)
    p = checkpoint.save(tmp_path / "vit.pt", net, dataset="fashion-mnist")
    assert cli_main(["blocks", str(p)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "vit_tiny, blocks from block_list(), input 2x1x28x28" in out[0]
    rows = [line.split() for line in out[2:]]
    assert len(rows) == len(models.blocks(net))
    assert rows[1][:3] == ["blocks.0.msa", "msa", "0"]
    assert rows[0][0] == "embed" and rows[-1][:2] == ["head", "head"]
    assert rows[-1][3] == "2x10"

    f, ck, _ = user_model
    assert cli_main(["blocks", str(ck), "--model-def", f"{f}:SmallNet", "--data", "fmnist"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "SmallNet, blocks from inferred, input 2x1x28x28" in out[0]
    rows = [line.split() for line in out[2:]]
    assert [r[:4] for r in rows] == [["embed", "embed", "0", "2x8x28x28"],
                                     ["unit1", "conv", "0", "2x8x28x28"],
                                     ["unit2", "conv", "1", "2x8x7x7"],
                                     ["mixer", "msa", "1", "2x49x8"],
                                     ["fc", "head", "1", "2x10"]]
    assert cli_main(["blocks", str(ck), "--model-def", f"{f}:SmallNet", "--input-shape",
                     "1,32,32", "--blocks", "stem=embed,mixer=msa"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "blocks from --blocks, input 2x1x32x32" in out[0]
    assert [r.split()[:4] for r in out[2:]] == [["stem", "embed", "0", "2x8x32x32"],
                                                ["mixer", "msa", "1", "2x64x8"]]


@needs_fashion_mnist
@pytest.mark.slow
def test_analyze_user_model_through_model_def(user_model, tmp_path, capsys):
    f, ck, _ = user_model
    (tmp_path / "tiny.toml").write_text(TINY)
    out = tmp_path / "out"
    argv = ["analyze", str(ck), "--model-def", f"{f}:SmallNet", "--data", "fashion-mnist",
            "--config", str(tmp_path / "tiny.toml"), "--out", str(out)]
    assert cli_main(argv) == 0
    err = capsys.readouterr().err
    assert "SmallNet: blocks inferred from module types" in err
    row = r"^mixer\s+msa\s+1\s+2x49x8\s+MultiheadAttention\s+yes\s+stream$"
    assert re.search(row, err, re.M), err
    assert (out / "report.html").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    (m,) = summary["models"]
    assert m["arch"] == "SmallNet" and m["family"] == "hybrid"
    lab = m["label"]  # the checkpoint's own name (its file stem), not the class name
    kinds = {b["name"]: b["kind"] for b in summary["fourier"][lab]["blocks"]}
    assert kinds["mixer"] == "msa" and kinds["unit1"] == "conv"
    assert [b["name"] for b in summary["lesion"][lab]["blocks"]] == ["unit1", "unit2", "mixer"]


def _readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- own-model:{re.escape(marker)} -->\n```\w*\n(.*?)```", text, re.S)
    assert m, f"README.md has no block marked own-model:{marker}"
    return m.group(1)


@needs_fashion_mnist
@pytest.mark.slow
def test_readme_own_model_example_verbatim(tmp_path):
    """The README's model file, shell commands and Python snippet, copied verbatim and run."""
    (tmp_path / "mynet.py").write_text(_readme_block("mynet.py"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, cmd in (("landscape", f'"{sys.executable}" -m landscape "$@"'),
                      ("python", f'"{sys.executable}" "$@"')):
        (bin_dir / name).write_text(f"#!/bin/sh\nexec {cmd}\n")
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHONPATH=str(ROOT))
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", _readme_block("shell")], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"^attn\s+msa\s+0\s+2x49x16", r.stdout, re.M), r.stdout
    assert re.search(r"^conv\s+conv\s+0\s+2x16x7x7", r.stdout, re.M), r.stdout
    assert (tmp_path / "runs" / "mynet" / "report.html").exists()
    r = subprocess.run([sys.executable, "-c", _readme_block("python")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "('attn', 'msa', 0)" in r.stdout


class _Attention(nn.Module):  # timm-like: shape unpacking that torch.fx cannot trace
    def __init__(self, d):
        super().__init__()
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, c).unbind(2)
        return self.proj(torch.softmax(q @ k.transpose(1, 2) / c ** 0.5, -1) @ v)


class _LayerScale(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((d,), 0.5))

    def forward(self, x):
        return x * self.gamma


class _TimmBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn, self.ls1, self.drop_path1 = _Attention(d), _LayerScale(d), nn.Identity()
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.ls2, self.drop_path2 = nn.Identity(), nn.Dropout(0.0)

    def forward(self, x):
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class _TinyViT(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.patch = nn.Conv2d(1, d, 7, 7)
        self.blocks = nn.Sequential(_TimmBlock(d), _TimmBlock(d))
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        return self.head(self.blocks(self.patch(x).flatten(2).transpose(1, 2)).mean(1))


def test_infer_blocks_timm_style_transformer_and_exact_lesion():
    net = _TinyViT().eval()
    x = torch.randn(2, 1, 28, 28)
    bl = infer_blocks(net, x)
    assert _kinds(bl) == [("embed", "embed", 0, False),
                          ("blocks.0.attn", "msa", 0, True), ("blocks.0.mlp", "mlp", 0, True),
                          ("blocks.1.attn", "msa", 0, True), ("blocks.1.mlp", "mlp", 0, True),
                          ("head", "head", 0, False)]
    assert bl[1].branch is net.blocks[0].attn  # through DropPath and LayerScale wrappers
    b1 = net.blocks[1]
    with torch.no_grad(), models.lesioned(bl[3]):
        t = net.blocks[0](net.patch(x).flatten(2).transpose(1, 2))
        ref = net.head((t + b1.mlp(b1.norm2(t))).mean(1))  # block 1 without its attention
        assert torch.allclose(net(x), ref, atol=1e-6)
