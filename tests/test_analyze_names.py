"""`landscape analyze` names: unique labels, run folders as CKPT, no result overwritten."""
import json
from pathlib import Path

import landscape_models as models
import pytest
import torch
from cases import needs_fashion_mnist

from landscape.cli import main as cli_main
from landscape.errors import LandscapeError
from landscape.loading import checkpoint
from landscape.loading.checkpoint import resolve_checkpoint
from landscape.loading.checkpoint_info import checkpoint_labels

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


def test_labels_use_run_folder_for_generic_stems():
    assert checkpoint_labels(["runs/r1/model.pt", "runs/r2/model.pt"], [SHA_A, SHA_B]) == \
        ["r1", "r2"]
    assert checkpoint_labels(["ck/resnet_tiny_s0.pt", "ck/vit_tiny_s0.pt"], [SHA_A, SHA_B]) == \
        ["resnet_tiny_s0", "vit_tiny_s0"]
    assert checkpoint_labels(["paper/vit_ti.pth.tar"], [SHA_A]) == ["vit_ti"]
    assert checkpoint_labels(["r1/epoch_003.pt"], [SHA_A]) == ["r1_epoch_003"]
    # a name recorded in the checkpoint wins
    assert checkpoint_labels(["r1/model.pt"], [SHA_A], ["my_vit"]) == ["my_vit"]


def test_labels_disambiguate_clashes():
    # same stem in two folders: folder prefixed
    assert checkpoint_labels(["a/net.pt", "b/net.pt"], [SHA_A, SHA_B]) == ["a_net", "b_net"]
    # same run-folder name under two parents: the parent, then the hash
    labs = checkpoint_labels(["x/run/model.pt", "y/run/model.pt"], [SHA_A, SHA_B])
    assert len(set(labs)) == 2 and labs == ["run-aaaaaaaa", "run-bbbbbbbb"]
    # a name used in the output folder by another checkpoint: this one's hash appended
    taken = {"r1": {SHA_B[:10]}}
    assert checkpoint_labels(["r1/model.pt"], [SHA_A], taken=taken) == ["r1-aaaaaaaa"]
    assert checkpoint_labels(["r1/model.pt"], [SHA_B], taken=taken) == ["r1"]  # its own
    # the same file twice still gets two names
    assert len(set(checkpoint_labels(["r/m.pt", "r/m.pt"], [SHA_C, SHA_C]))) == 2


def test_run_folder_resolves_to_model_pt(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.pt").write_bytes(b"x")
    assert resolve_checkpoint(tmp_path / "run") == tmp_path / "run" / "model.pt"
    (tmp_path / "empty").mkdir()
    with pytest.raises(LandscapeError, match="folder without model.pt"):
        resolve_checkpoint(tmp_path / "empty")
    with pytest.raises(LandscapeError, match="checkpoint not found"):
        resolve_checkpoint(tmp_path / "missing.pt")


TINY = """
[analyze]
eval_samples = 32
samples = 16
batch_size = 16
"""


def _run_folder(root: Path, name: str, seed: int) -> Path:
    torch.manual_seed(seed)
    m = models.create("resnet_tiny", num_classes=10, in_chans=1, img_size=28)
    checkpoint.save(root / name / "model.pt", m, dataset="fashion-mnist", mean=[0.286],
                    std=[0.353], seed=seed, epoch=0)
    return root / name


@needs_fashion_mnist
def test_two_model_pt_into_one_out_keep_both(tmp_path, capsys):
    """Acceptance (c): two checkpoints both named model.pt, from different run folders,
    analysed into one --out (together, then one more in a later run) keep every result."""
    a, b = _run_folder(tmp_path, "run_a", 0), _run_folder(tmp_path, "run_b", 1)
    other = _run_folder(tmp_path / "elsewhere", "run_a", 2)  # same folder name, other weights
    (tmp_path / "tiny.toml").write_text(TINY)
    out = tmp_path / "out"
    base = ["--only", "variance", "--config", str(tmp_path / "tiny.toml"), "--out", str(out)]
    assert cli_main(["analyze", str(a / "model.pt"), str(b), *base]) == 0  # a folder as CKPT
    first = json.loads((out / "summary.json").read_text())
    assert [m["label"] for m in first["models"]] == ["run_a", "run_b"]
    assert set(first["variance"]) == {"run_a", "run_b"}
    assert first["variance"]["run_a"] != first["variance"]["run_b"]
    raws = sorted(p.name for p in (out / "raw").iterdir())
    assert len(raws) == 2 and all((out / "raw" / r / "variance.json").is_file() for r in raws)
    stdout = capsys.readouterr()
    assert "model 1 of 2: run_a" in stdout.err and "model 2 of 2: run_b" in stdout.err

    # later: another run_a (other weights) into the same --out gets its own name
    assert cli_main(["analyze", str(other), *base]) == 0
    second = json.loads((out / "summary.json").read_text())
    sha = second["models"][0]["sha256"]
    assert sha != first["models"][0]["sha256"]
    assert [m["label"] for m in second["models"]] == [f"run_a-{sha[:8]}"]
    assert len(list((out / "raw").iterdir())) == 3
    for r in raws:  # the first run's results are untouched
        assert (out / "raw" / r / "variance.json").is_file()
    assert (out / "figures" / "variance" / "variance.png").is_file()


@needs_fashion_mnist
def test_feature_command_keeps_each_model_pt_result(tmp_path):
    """`landscape variance` run twice into one --out on two run folders' model.pt: two results,
    each named by its run folder, neither overwritten."""
    a, b = _run_folder(tmp_path, "run_a", 0), _run_folder(tmp_path, "run_b", 1)
    out = tmp_path / "feat"
    base = ["--samples", "16", "--batch-size", "16", "--out", str(out), "--quiet"]
    assert cli_main(["variance", str(a / "model.pt"), *base]) == 0
    first = (out / "variance_run_a.json").read_bytes()
    assert cli_main(["variance", str(b), *base]) == 0  # a run folder as CKPT
    assert (out / "variance_run_a.json").read_bytes() == first
    assert (out / "variance_run_b.json").is_file()
    # the same folder name with other weights: a new file, the first kept
    c = _run_folder(tmp_path / "elsewhere", "run_a", 2)
    assert cli_main(["variance", str(c / "model.pt"), *base]) == 0
    assert (out / "variance_run_a.json").read_bytes() == first
    assert len(list(out.glob("variance_run_a-*.json"))) == 1
