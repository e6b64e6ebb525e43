"""`landscape analyze` end to end on two tiny checkpoints with a minimal budget."""
import json
from html.parser import HTMLParser

import landscape_models as models
import pytest
import torch
from cases import TINY, needs_fashion_mnist

from landscape.cli import main as cli_main
from landscape.loading import checkpoint
from landscape.summary import read_summary
from landscape.summary_sections import HessianEntry, SurfaceEntry


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpts")
    out = []
    for name in ("resnet_tiny", "vit_tiny"):
        torch.manual_seed(0)
        m = models.create(name, num_classes=10, in_chans=1, img_size=28)
        out.append(str(checkpoint.save(d / f"{name}.pt", m, dataset="fashion-mnist",
                                       mean=[0.286], std=[0.353], seed=0, epoch=0)))
    (d / "tiny.toml").write_text(TINY)
    return d, out


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if "id" in a:
            self.ids.add(a["id"])


@needs_fashion_mnist
@pytest.mark.slow
def test_analyze_end_to_end_and_cache(ckpts, tmp_path, capsys, monkeypatch):
    d, paths = ckpts
    out = tmp_path / "out"
    args = ["analyze", *paths, "--config", str(d / "tiny.toml"), "--out", str(out), "--quiet"]
    assert cli_main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [m["label"] for m in summary["models"]] == ["resnet_tiny", "vit_tiny"]
    assert {m["family"] for m in summary["models"]} == {"cnn", "vit"}
    for section in ("hessian", "surface", "fourier", "variance", "robustness", "cka", "lesion"):
        assert set(summary[section]) == {"resnet_tiny", "vit_tiny"}, section
    h = summary["hessian"]["resnet_tiny"]
    assert len(h["top_eigenvalues"]) == 2 and h["spectrum"]["count"] == 4
    assert summary["surface"]["vit_tiny"]["grid"] == [3, 3]
    assert len(summary["claims"]) >= 6
    assert [(m["arch"], m["seed"]) for m in summary["models"]] == [("resnet_tiny", 0),
                                                                   ("vit_tiny", 0)]
    # per-group values for the bootstrap, the exact read-out frequency, same-grid flags
    fb = {b["name"]: b for b in summary["fourier"]["vit_tiny"]["blocks"]}
    assert fb["blocks.0.msa"]["freq_label"] == "6π/7" and fb["blocks.0.msa"]["grid"] == 7
    assert len(fb["blocks.0.msa"]["groups"]) == 8
    assert summary["fourier"]["vit_tiny"]["readout"] == "paper"
    rb = {b["name"]: b for b in summary["variance"]["resnet_tiny"]["blocks"]}
    assert rb["layer1.0"]["same_grid"] is False and rb["layer1.1"]["same_grid"] is True
    assert summary["robustness"]["vit_tiny"]["protocol"] == "paper"
    assert len(summary["robustness"]["vit_tiny"]["groups"]["acc"]) == 3
    assert len(summary["cka"]["resnet_tiny"]["hsic_batches"]) == 4
    assert summary["cka"]["resnet_tiny"]["matched_distance"][0]["distance"] == 1
    assert len(summary["lesion"]["vit_tiny"]["baseline_groups"]) == 8
    cl = {c["id"]: c for c in summary["claims"]}
    assert cl["fourier-msa-vit"]["n"] == 1 and len(cl["fourier-msa-vit"]["interval"]) == 2
    assert cl["fourier-conv-cnn"]["n"] == 1  # resnet_tiny's second units keep the grid
    assert cl["fourier-msa-vit"]["extra"]["bootstrap"]["seed"] == 0
    assert cl["fourier-msa-vit"]["verdict"] != "agrees"  # one checkpoint: no seed-level interval
    h = summary["hessian"]["vit_tiny"]["per_batch"]
    assert h["top_k"] == 2 and len(h["negative_top_k"]) == len(h["lambda_max"])
    # the typed summary: Hessian and surface entries (the fast test_summary_analyze.py reads the
    # feature sections), read back from the file with the numbers the JSON holds
    typed = read_summary(out / "summary.json")
    th, ts = typed.hessian["vit_tiny"], typed.surface["vit_tiny"]
    assert isinstance(th, HessianEntry) and isinstance(ts, SurfaceEntry)
    assert th.per_batch.top_k == 2 and th.spectrum.count == h["top_k"] * len(h["lambda_max"])
    assert th.trace == summary["hessian"]["vit_tiny"]["trace"] and ts.grid == (3, 3)
    assert [b.value for b in typed.fourier["vit_tiny"].blocks] == [
        b["dlogA_hf"] for b in summary["fourier"]["vit_tiny"]["blocks"]]
    assert "effect [95% CI]" in (out / "report.html").read_text()
    p = _Imgs()
    p.feed((out / "report.html").read_text())
    assert len(p.imgs) >= 10 and all(s.startswith("data:image/png;base64,") for s in p.imgs)
    assert {"models", "hessian", "claims", "settings"} <= p.ids

    # Second run: everything reused, nothing recomputed (any compute call would raise).
    import landscape.analyze.run as A
    monkeypatch.setattr(A, "ResultCache", _NoCompute(A.ResultCache))
    assert cli_main(args) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["hessian"] == summary["hessian"] and again["fourier"] == summary["fourier"]


class _NoCompute:
    def __init__(self, cls):
        self.cls = cls

    def __call__(self, *args, **kwargs):
        c = self.cls(*args, **kwargs)
        orig = c.get

        def get(name, key, compute, load, **kw):
            def fail(_p):
                raise AssertionError(f"{name} recomputed although cached")
            return orig(name, key, fail, load, **kw)
        c.get = get
        return c


def _err(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    return lines


@needs_fashion_mnist
def test_bad_inputs_exit_2_one_line(ckpts, tmp_path, capsys):
    d, paths = ckpts
    cases = []
    cases.append(["analyze", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o1")])
    # classes do not match the dataset
    m = models.create("resnet_tiny", num_classes=7, in_chans=1, img_size=28)
    bad = checkpoint.save(tmp_path / "seven.pt", m, dataset="fashion-mnist")
    cases.append(["analyze", str(bad), "--out", str(tmp_path / "o2")])
    (tmp_path / "bad.toml").write_text("this is [ not toml")
    cases.append(["analyze", paths[0], "--config", str(tmp_path / "bad.toml"),
                  "--out", str(tmp_path / "o3")])
    (tmp_path / "afile").write_text("x")
    cases.append(["analyze", paths[0], "--out", str(tmp_path / "afile")])
    cases.append(["analyze", paths[0], "--set", "nonsense=1", "--out", str(tmp_path / "o5")])
    for args in cases:
        rc = cli_main(args)
        err = _err(capsys)
        assert rc == 2, args
        assert len(err) == 1 and err[0].startswith("landscape: error:"), err
    for o in ("o1", "o2", "o3", "o5"):
        assert not (tmp_path / o / "report.html").exists()
