"""SCALE=paper end to end on a CPU: the three paper architectures at full size, CIFAR-100 in its
real archive format, checkpoints in the released file format, the `paper` budget (augmented
Hessian data, L2 term, every analysis) shrunk by experiments/paper_smoke.toml, report written."""
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import landscape_models as models
import pytest
import torch
from cases import cifar_batches, free_port

from landscape.cli import main as cli_main
from landscape.loading import checkpoint

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "tests" / "paper_manifests"
SMOKE = ROOT / "experiments" / "paper_smoke.toml"
# registry name -> (released file, manifest); AlterNet has no release: our format.
PAPER = {"resnet50": ("resnet_50_cifar100_691cc9a9e4.pth.tar", "resnet_50_cifar100.json"),
         "vit_ti": ("vit_ti_cifar100_9857b21357.pth.tar", "vit_ti_cifar100.json"),
         "alternet50": (None, "alternet_50_cifar100.json")}
SECTIONS = ("hessian", "surface", "fourier", "variance", "robustness", "cka", "lesion")


def write_cifar100(folder: Path, n_train: int, n_test: int) -> Path:
    """``folder/cifar-100-python.tar.gz`` in the real format (pickled dicts, protocol 2)."""
    members, _ = cifar_batches("cifar100", seed=0, n_train=n_train, n_test=n_test)
    path = folder / "cifar-100-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            raw = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def write_paper_checkpoints(folder: Path) -> None:
    """Random full-size weights: the released ``{name, state_dict}`` files (keys in the released
    order, checked against the manifests) and AlterNet-50 in our format."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, (released, manifest)) in enumerate(PAPER.items()):
        torch.manual_seed(i)
        net = models.create(name, num_classes=100, in_chans=3, img_size=32)
        man = json.loads((MANIFESTS / manifest).read_text())
        own = net.state_dict()
        assert sum(p.numel() for p in net.parameters()) == man["num_params"]
        sd = {k: own[k] for k in man["state_dict"]}  # released key order; KeyError if absent
        assert len(sd) == len(own)
        if released:
            torch.save({"name": released.split("_cifar100")[0], "state_dict": sd},
                       folder / released)
        else:
            checkpoint.save(folder / f"{name}.pt", net, dataset="cifar100", seed=i, epoch=0)


@pytest.fixture(scope="module")
def paper_setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("paper")
    write_cifar100(d, n_train=256, n_test=64)
    ckpts = d / "PAPER_CKPTS"
    write_paper_checkpoints(ckpts)
    # The make target's first step: link the released files as <name>.pt.
    subprocess.run([sys.executable, str(ROOT / "experiments" / "paper_checkpoints.py"),
                    "--out", str(ckpts)], check=True, cwd=ROOT, timeout=120,
                   env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True)
    return d, [str(ckpts / f"{n}.pt") for n in PAPER]


@pytest.fixture
def one_thread():
    """One intra-op thread: on a 2-core machine shared with other jobs two threads spin at every
    barrier (measured, ResNet-50 HVP on one image at load 7: 0.7 CPU-s and 5 s with one thread,
    4-8 CPU-s and 15-31 s with two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def analyze_args(d: Path, ckpts: list, out: Path) -> list:
    """What `make paper SCALE=paper` runs, with the smoke config over the paper budget."""
    return ["analyze", *ckpts, "--data", "cifar100", "--data-root", str(d), "--budget", "paper",
            "--config", str(SMOKE), "--out", str(out), "--quiet"]


@pytest.mark.slow
@pytest.mark.paper_smoke
def test_paper_pipeline_smoke(paper_setup, tmp_path, one_thread):
    d, ckpts = paper_setup
    for p, (released, _) in zip(ckpts, PAPER.values(), strict=True):
        assert Path(p).exists()
        assert (Path(p).resolve().name == released) if released else not Path(p).is_symlink()
    out = tmp_path / "out"
    assert cli_main(analyze_args(d, ckpts, out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "report.html").stat().st_size > 10_000
    labels = [m["label"] for m in summary["models"]]
    assert labels == list(PAPER)
    params = {m["label"]: m["params"] for m in summary["models"]}
    for name, (_, manifest) in PAPER.items():
        assert params[name] == json.loads((MANIFESTS / manifest).read_text())["num_params"]
    assert {m["family"] for m in summary["models"]} == {"cnn", "vit", "hybrid"}
    s = summary["settings"]
    assert s["dataset"] == "cifar100" and s["budget"] == "paper"
    assert s["hessian_augment"] is True and s["surface_augment"] is True
    for section in SECTIONS:
        assert set(summary[section]) == set(PAPER), section
    for name in PAPER:
        h = summary["hessian"][name]
        assert h["n_params"] == params[name]
        assert all(map(lambda v: v == v, h["top_eigenvalues"]))  # finite, not NaN
        assert h["wd"] == 5e-4 and h["augment"] and h["loss"] == "NLL + wd * sum_p ||p||_2"
        surf = summary["surface"][name]
        assert surf["wd"] == 5e-4 and surf["augment"] and surf["loss"] == h["loss"]
    assert all(m["eval_samples"] == 4 for m in summary["models"])


@pytest.mark.slow
@pytest.mark.paper_smoke
def test_paper_spectrum_two_ranks_match_one(paper_setup, tmp_path):
    """`landscape analyze` does not run under torchrun (both ranks run everything and collide on
    the same files); the paper Hessian spectrum it uses does: ViT-Ti from the released file, the
    smoke budget with augmentation and L2, 2 ranks (gloo) == 1 rank, number for number."""
    import h5py
    import numpy as np
    d, ckpts = paper_setup
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    args = ["-m", "landscape", "hessian", ckpts[1], "--data", "cifar100", "--data-root", str(d),
            "--split", "train", "--samples", "0", "--batch-size", "1", "--batches", "2",
            "--top-k", "1", "--max-iter", "2", "--augment", "--wd", "5e-4",
            "--mode", "double_backward", "--device", "cpu", "--quiet", "--out"]
    subprocess.run([sys.executable, *args, str(tmp_path / "one")], check=True, env=env,
                   timeout=600, capture_output=True)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                    "--master-port", str(free_port()), *args, str(tmp_path / "two")],
                   check=True, env=env, timeout=600, capture_output=True)
    files = sorted(p.name for p in (tmp_path / "one").glob("*.h5"))
    assert files and files == sorted(p.name for p in (tmp_path / "two").glob("*.h5"))
    for name in files:
        with h5py.File(tmp_path / "one" / name) as a, h5py.File(tmp_path / "two" / name) as b:
            ev = np.asarray(a["eigenvalues"])
            assert ev.shape == (2, 1) and np.isfinite(ev).all()
            assert np.array_equal(ev, np.asarray(b["eigenvalues"]))
