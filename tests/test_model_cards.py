"""Model cards (``analyze --models``), ``--model-kwargs`` and stages from the data (issue #30,
acceptance (c) and (d)): a user repository with its own ``models`` package, a CNN and a ViT of
its own, compared by one ``analyze`` run; an image folder gives a 4-stage model its 4 stages."""
import json
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cases import needs_fashion_mnist

from landscape.cli import main as cli_main
from landscape.errors import LandscapeError
from landscape.loading.model_args import parse_input_shape, parse_model_kwargs
from landscape.loading.model_cards import read_cards

LAYERS = textwrap.dedent("""
    import torch.nn as nn


    class Unit(nn.Module):
        \"\"\"A residual conv unit; stride 2 halves the resolution (1x1 conv shortcut).\"\"\"

        def __init__(self, c_in, c_out, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.relu = nn.ReLU()
            self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out
                             else nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False))

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + self.shortcut(x))


    class Attention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]
""")
CNN = textwrap.dedent("""
    import torch.nn as nn

    from .layers import Unit


    class CNN(nn.Module):
        def __init__(self, num_classes=10, in_chans=1, width=8, stages=2):
            super().__init__()
            self.stem = nn.Conv2d(in_chans, width, 3, padding=1)
            self.units = nn.Sequential(*[Unit(width, width, 1 if i == 0 else 2)
                                         for i in range(stages)])
            self.fc = nn.Linear(width, num_classes)

        def forward(self, x):
            return self.fc(self.units(self.stem(x)).mean((2, 3)))


    def cnn(**kwargs):
        return CNN(**kwargs)
""")
VIT = textwrap.dedent("""
    import torch.nn as nn

    from models.layers import Attention


    class Block(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.norm1 = nn.LayerNorm(dim)
            self.attn = Attention(dim, heads)
            self.norm2 = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

        def forward(self, x):
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))


    class ViT(nn.Module):
        def __init__(self, num_classes=10, in_chans=1, dim=16, depth=2, patch=7):
            super().__init__()
            self.patch = nn.Conv2d(in_chans, dim, patch, stride=patch)
            self.blocks = nn.Sequential(*[Block(dim, 2) for _ in range(depth)])
            self.norm = nn.LayerNorm(dim)
            self.head = nn.Linear(dim, num_classes)

        def forward(self, x):
            t = self.patch(x).flatten(2).transpose(1, 2)
            return self.head(self.norm(self.blocks(t)).mean(1))


    def vit(**kwargs):
        return ViT(**kwargs)
""")

TINY_HESSIAN = """
[analyze]
eval_samples = 32
samples = 16
batch_size = 16
spectrum_batches = 2
spectrum_batch_size = 8
top_k = 2
lanczos_max_iter = 10
curvature_samples = 16
trace_products = 0
density_probes = 1
density_steps = 6
groups = 2
"""


def _forget_models() -> None:
    for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
        del sys.modules[name]


@pytest.fixture
def user_repo(tmp_path: Path):
    """tmp/repo/models/{__init__,layers,cnn,vit}.py: a research repository with its own
    ``models`` package (relative and absolute sibling imports); sys.path restored afterwards."""
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    for name, text in (("__init__", ""), ("layers", LAYERS), ("cnn", CNN), ("vit", VIT)):
        (repo / "models" / f"{name}.py").write_text(text)
    saved = list(sys.path)
    _forget_models()
    yield repo
    sys.path[:] = saved  # the loader keeps a code root on sys.path for the process's lifetime
    _forget_models()


def _save_state_dict(repo: Path, module: str, fn: str, dest: Path, **kwargs) -> Path:
    """Build ``models.<module>:<fn>(**kwargs)`` of ``repo`` and save it as a plain state dict."""
    from landscape.loading.user_model import build_model
    torch.manual_seed(0)
    net = build_model(f"{repo / 'models' / module}.py:{fn}", kwargs=kwargs)
    torch.save(net.state_dict(), dest)
    return dest


# ---- parsing: --model-kwargs, input shapes, cards ----------------------------------------------

def test_model_kwargs_are_python_literals():
    assert parse_model_kwargs("num_classes=100,window_size=4") == {"num_classes": 100,
                                                                  "window_size": 4}
    assert parse_model_kwargs("img_size=(32, 32), name='s', p=0.1, flag=True, n=None") == {
        "img_size": (32, 32), "name": "s", "p": 0.1, "flag": True, "n": None}
    for bad in ("100", "a=1,2", "a=b", "a=1) or f(", "a=1,a=2", "**d", "a=__import__('os')"):
        with pytest.raises(LandscapeError):
            parse_model_kwargs(bad)


def test_input_shape_parser():
    assert parse_input_shape("3,32,32") == (3, 32, 32)
    assert parse_input_shape([1, 28, 28]) == (1, 28, 28)
    for bad in ("3,32", "3,0,32", "a,b,c", [3.0, 32, 32], [True, 2, 2], "3,32,32,1"):
        with pytest.raises(LandscapeError):
            parse_input_shape(bad)


def test_card_paths_are_relative_to_the_card(user_repo, tmp_path):
    ck = _save_state_dict(user_repo, "cnn", "cnn", tmp_path / "cnn.pt", width=4)
    cards_dir = tmp_path / "cards"
    cards_dir.mkdir()
    (cards_dir / "m.toml").write_text(textwrap.dedent(f"""
        [mine]
        path = "../{ck.name}"
        model-def = "../repo/models/cnn.py:cnn"
        kwargs = {{num_classes = 10, width = 4}}
        input_shape = [1, 28, 28]
        family = "CNN"
        blocks = [{{name = "units.0", kind = "conv", stage = 0}},
                  {{name = "units.1", kind = "conv"}}]

        [mod]
        path = "../{ck.name}"
        model_def = "models.cnn:cnn"
        code-root = "../repo"
    """))
    mine, mod = read_cards(cards_dir / "m.toml")
    assert mine.name == "mine" and mine.path.resolve() == ck.resolve()
    assert mine.model_def == f"{(user_repo / 'models' / 'cnn.py').resolve()}:cnn"
    assert mine.kwargs == {"num_classes": 10, "width": 4} and mine.input_shape == (1, 28, 28)
    assert mine.family == "cnn" and mine.blocks == {"units.0": "conv", "units.1": "conv"}
    assert mine.stages == {"units.0": 0}
    assert mod.model_def == "models.cnn:cnn" and mod.code_root.resolve() == user_repo.resolve()


@pytest.mark.parametrize("body, says", [
    ('model-def = "x.py:f"', "no path"),
    ('path = "nowhere.pt"', "checkpoint not found"),
    ('path = "ck.pt"\ncolour = "red"', "unknown key 'colour'"),
    ('path = "ck.pt"\nblocks = [{name = "a", kind = "transformer"}]', "kind must be one of"),
    ('path = "ck.pt"\nblocks = [{name = "a", kind = "conv", stage = -1}]', "stage must be"),
    ('path = "ck.pt"\nblocks = [{name = "a", kind = "conv", depth = 1}]', "unknown key 'depth'"),
    ('path = "ck.pt"\nfamily = "mlp-mixer"', "family must be one of"),
    ('path = "ck.pt"\nmodel-def = "missing.py:f"', "model-def file not found"),
    ('path = "ck.pt"\nkwargs = {num_classes = 10}', "give model-def"),
    ('path = "ck.pt"\ninput-shape = [3, 32]', "C,H,W"),
    ('path = "ck.pt"\nmodel = "resnet_tiny"\nmodel-def = "m:f"', "not both"),
    ('path = "ck.pt"\nonly = ["hessian", "magic"]', "only must be a list of analyses"),
    ('path = "ck.pt"\nonly = "hessian"', "only must be a list of analyses"),
])
def test_bad_card_is_one_line_naming_card_and_table(tmp_path, capsys, body, says):
    (tmp_path / "ck.pt").write_bytes(b"")
    card = tmp_path / "cards.toml"
    card.write_text(f"[first]\npath = \"ck.pt\"\n\n[broken]\n{body}\n")
    rc = cli_main(["analyze", "--models", str(card), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"landscape: error: {card} [broken]: "), err
    assert says in err[0], err
    assert not (tmp_path / "out").exists()


def test_card_file_errors(tmp_path, capsys):
    (tmp_path / "a.toml").write_text("path = 'x.pt'\n")
    (tmp_path / "b.toml").write_text("[a\n")
    for argv, says in ((["--models", str(tmp_path / "none.toml")], "file not found"),
                       (["--models", str(tmp_path / "a.toml")], "is not a table"),
                       (["--models", str(tmp_path / "b.toml")], "not a TOML file"),
                       ([], "no checkpoint given")):
        assert cli_main(["analyze", *argv, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err


def test_model_kwargs_reach_the_builder(user_repo, tmp_path, capsys):
    ck = _save_state_dict(user_repo, "cnn", "cnn", tmp_path / "cnn.pt", width=4, stages=3)
    argv = ["blocks", str(ck), "--model-def", f"{user_repo / 'models' / 'cnn.py'}:cnn",
            "--input-shape", "1,28,28"]
    assert cli_main([*argv, "--model-kwargs", "width=4,stages=3"]) == 0
    out = capsys.readouterr().out
    assert [ln.split()[:3] for ln in out.splitlines() if ln.startswith("units.")] == [
        ["units.0", "conv", "0"], ["units.1", "conv", "1"], ["units.2", "conv", "2"]]
    # Without them the default model (width 8) does not fit the weights: one line, exit 2.
    assert cli_main(argv) == 2
    assert cli_main([*argv, "--model-kwargs", "width=four"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "width='four'" in err[1], err


# ---- (c) a card with a user CNN and a user ViT: between-family rows -----------------------------

@needs_fashion_mnist
@pytest.mark.slow
def test_card_with_user_cnn_and_vit_gives_between_family_rows(user_repo, tmp_path, capsys):
    ck = tmp_path / "ckpts"
    ck.mkdir()
    _save_state_dict(user_repo, "cnn", "cnn", ck / "cnn.pt", width=6)
    _save_state_dict(user_repo, "vit", "vit", ck / "vit.pt", dim=12)
    card = tmp_path / "models.toml"
    card.write_text(textwrap.dedent("""
        [user_cnn]
        path = "ckpts/cnn.pt"
        model-def = "repo/models/cnn.py:cnn"
        kwargs = {num_classes = 10, width = 6}
        input-shape = [1, 28, 28]

        [user_vit]
        path = "ckpts/vit.pt"
        model-def = "models.vit:vit"
        code-root = "repo"
        kwargs = {dim = 12}
    """))
    (tmp_path / "tiny.toml").write_text(TINY_HESSIAN)
    # a card's own analyses: this extra model gets no hessian
    card.write_text(card.read_text() + textwrap.dedent("""
        [no_hessian]
        path = "ckpts/cnn.pt"
        model-def = "repo/models/cnn.py:cnn"
        kwargs = {num_classes = 10, width = 6}
        only = ["lesion"]
    """))
    # a zoo checkpoint needs no card and mixes with the card's models (it comes first)
    import landscape_models

    from landscape.loading import checkpoint
    zoo = checkpoint.save(ck / "resnet_tiny.pt", landscape_models.create(
        "resnet_tiny", num_classes=10, in_chans=1, img_size=28), dataset="fashion-mnist")
    out = tmp_path / "out"
    t0 = time.perf_counter()
    rc = cli_main(["analyze", str(zoo), "--models", str(card), "--data", "fashion-mnist",
                   "--only", "hessian", "--config", str(tmp_path / "tiny.toml"), "--out",
                   str(out)])
    print(f"card analyze (zoo + 2 user models, tiny hessian): {time.perf_counter() - t0:.1f} s")
    err = capsys.readouterr().err
    assert rc == 0, err[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [(m["label"], m["family"]) for m in summary["models"]] == [
        ("resnet_tiny", "cnn"), ("user_cnn", "cnn"), ("user_vit", "vit"), ("no_hessian", "cnn")]
    assert set(summary["hessian"]) == {"resnet_tiny", "user_cnn", "user_vit"}
    rows = {c["id"]: c for c in summary["claims"]}
    for cid in ("flatness-vit", "negative-eigenvalues-vit"):
        assert cid in rows, sorted(rows)
        assert rows[cid]["verdict"] != "not measured", rows[cid]
        assert rows[cid]["n"] == 3, rows[cid]
        assert set(rows[cid]["per_model"]) == {"resnet_tiny", "user_cnn", "user_vit"}


# ---- (d) an image folder gives the 4 stages of a 4-stage model ---------------------------------

def _image_folder(root: Path, classes: int = 2, per_class: int = 6, size: int = 32) -> Path:
    """root/<class>/<i>.png: RGB ``size``x``size`` noise images, a fixed seed."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            px = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(px).save(root / f"class{c}" / f"{i}.png")
    return root


def test_image_folder_gives_the_stages_of_a_four_stage_model(user_repo, tmp_path, capsys):
    data = _image_folder(tmp_path / "images")
    _save_state_dict(user_repo, "cnn", "cnn", tmp_path / "cnn4.pt", num_classes=2,
                     in_chans=3, width=4, stages=4)
    card = tmp_path / "models.toml"
    card.write_text(textwrap.dedent("""
        [four_stages]
        path = "cnn4.pt"
        model-def = "repo/models/cnn.py:cnn"
        kwargs = {num_classes = 2, in_chans = 3, width = 4, stages = 4}
        input-shape = [3, 32, 32]
    """))
    (tmp_path / "tiny.toml").write_text("eval_samples = 12\nlesion_samples = 12\n"
                                        "batch_size = 12\ngroups = 2\n")
    out = tmp_path / "out"
    rc = cli_main(["analyze", "--models", str(card), "--data", "imagefolder", "--data-root",
                   str(data), "--only", "lesion", "--config", str(tmp_path / "tiny.toml"),
                   "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    blocks = summary["lesion"]["four_stages"]["blocks"]
    assert [(b["name"], b["kind"], b["stage"]) for b in blocks] == [
        ("units.0", "conv", 0), ("units.1", "conv", 1), ("units.2", "conv", 2),
        ("units.3", "conv", 3)]
    # A card's input shape that is not the data's: one line naming the card, before any work.
    card.write_text(card.read_text().replace("[3, 32, 32]", "[3, 28, 28]"))
    rc = cli_main(["analyze", "--models", str(card), "--data", "imagefolder", "--data-root",
                   str(data), "--only", "lesion", "--out", str(tmp_path / "out2"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "[four_stages]: input shape 3,28,28" in err[0], err
    assert "3x32x32" in err[0]
    # The same for a positional checkpoint with --model-def, --model-kwargs and --input-shape.
    rc = cli_main(["analyze", str(tmp_path / "cnn4.pt"), "--model-def",
                   f"{user_repo / 'models' / 'cnn.py'}:cnn", "--model-kwargs",
                   "num_classes=2,in_chans=3,width=4,stages=4", "--input-shape", "3,28,28",
                   "--data", "imagefolder", "--data-root", str(data), "--only", "lesion",
                   "--out", str(tmp_path / "out3"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert f"{tmp_path / 'cnn4.pt'}: input shape 3,28,28 but the data's images are 3x32x32" \
        in err[0], err


def test_stages_from_the_card_win_over_the_probe(user_repo, tmp_path):
    from landscape_models import blocks as model_blocks

    from landscape.loading.model_cards import assign_card_blocks, load_card_weights
    ck = _save_state_dict(user_repo, "cnn", "cnn", tmp_path / "c.pt", width=4, stages=3)
    card = tmp_path / "c.toml"
    card.write_text(textwrap.dedent("""
        [c]
        path = "c.pt"
        model-def = "repo/models/cnn.py:cnn"
        kwargs = {width = 4, stages = 3}
        family = "hybrid"
        blocks = [{name = "units.2", kind = "conv"}, {name = "units.0", kind = "conv"},
                  {name = "units.1", kind = "conv", stage = 0}]
    """))
    (c,) = read_cards(card)
    net, info = load_card_weights(c, "cpu", None)
    x = torch.randn(2, 1, 28, 28)
    net, info = assign_card_blocks(net, info, c, x)
    assert [(b.name, b.stage) for b in model_blocks(net)] == [("units.0", 0), ("units.1", 0),
                                                             ("units.2", 2)]
    assert info.extra["family"] == "hybrid" and info.extra["name"] == "c"
    assert info.extra["checkpoint_sha256"] != info.sha256  # kwargs and stages are in the hash
    assert ck.is_file()


# ---- issue #30 item 6: the smaller findings -----------------------------------------------------

def test_cifar_missing_hint_names_a_download_option_that_analyze_has(tmp_path, capsys):
    from landscape.data import load_dataset
    with pytest.raises(LandscapeError) as e:
        load_dataset("cifar10", "test", root=tmp_path / "empty")
    assert "re-run with --download (every command but alternet-search" in str(e.value)
    for cmd in ("train", "hessian", "surface", "fourier", "variance", "robustness", "cka",
                "lesion", "analyze"):
        with pytest.raises(SystemExit):
            cli_main([cmd, "--help"])
        assert "--download" in capsys.readouterr().out, cmd


@pytest.mark.parametrize("writer", [True, False])
def test_sigterm_under_torchrun_is_reported_by_the_writer_only(monkeypatch, writer):
    import os
    import signal

    from landscape import distributed as D
    monkeypatch.setattr(D, "is_writer", lambda: writer)
    before = signal.getsignal(signal.SIGTERM)
    try:
        D._stop_on_sigterm()
        expected = D.PeerStopped if writer else SystemExit
        with pytest.raises(expected) as e:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs at the next bytecode boundary
    finally:
        signal.signal(signal.SIGTERM, before)
    if writer:
        assert "stopped by SIGTERM" in str(e.value)
    else:
        assert e.value.code == 128 + signal.SIGTERM


def test_augmented_one_channel_batch_has_standard_strides():
    """A 1-channel batch with NHWC strides made convs run channels_last, and the double backward
    of a 1x1 stride-2 conv (a ResNet shortcut) then crashed the process (torch 2.13, CPU)."""
    from landscape.data.augment import Augment
    for c in (1, 3):
        x = torch.randn(4, c, 12, 12)
        a = Augment(pad=2, flip=True)(x, torch.Generator().manual_seed(0))
        assert a.stride() == (c * 144, 144, 12, 1)
        assert not torch.nn.Conv2d(c, 4, 1)(a).is_contiguous(memory_format=torch.channels_last)


def test_every_command_takes_stages_from_the_image_folder(user_repo, tmp_path):
    """hessian, surface and features load through one function: their block stages come from
    the first batch of the loaded images too, not from a dataset's nominal shape."""
    from landscape_models import blocks as model_blocks

    from landscape.workflows.inputs import InputOptions, load_checkpoint_and_data
    data = _image_folder(tmp_path / "images")
    ck = _save_state_dict(user_repo, "cnn", "cnn", tmp_path / "c4.pt", num_classes=2,
                          in_chans=3, width=4, stages=4)
    args = InputOptions(model=None, model_def=f"{user_repo / 'models' / 'cnn.py'}:cnn",
                        model_kwargs={"num_classes": 2, "in_chans": 3, "width": 4, "stages": 4},
                        blocks=None, code_root=None, data="imagefolder", data_root=str(data),
                        split="test", samples=4, seed=0, device="cpu", download=False)
    net, info, images = load_checkpoint_and_data(args, str(ck))
    assert images.images.shape[1:] == (3, 32, 32)
    assert [(b.name, b.stage) for b in model_blocks(net) if b.kind == "conv"] == [
        ("units.0", 0), ("units.1", 1), ("units.2", 2), ("units.3", 3)]
    assert info.num_classes == 2
