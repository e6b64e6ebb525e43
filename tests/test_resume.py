"""The one result store (landscape.store.resume): what a stored result is compared on, the one line
that names every differing setting on every resumable analysis, and one library path for the
trace (``landscape hessian --trace`` and ``landscape analyze`` give the same numbers)."""
from __future__ import annotations

import json

import landscape_models as models
import numpy as np
import pytest
import torch
import torch.nn as nn
from cases import fmnist_model, write_fmnist

from landscape.cli import main
from landscape.errors import LandscapeError
from landscape.loading import checkpoint
from landscape.store import resume as R


def _ident(settings, sha="a" * 64, torch_v="2.13.0", landscape_v="0.1.0"):
    return {"settings": settings, "checkpoint_sha256": sha,
            "versions": {"torch": torch_v, "landscape": landscape_v, "python": "3.11.2"}}


def test_differences_name_each_setting_with_both_values():
    old = _ident({"batch_size": 16, "seed": 0, "dirs": {"norm": "filter"}, "same": [1, 2]})
    new = _ident({"batch_size": 32, "seed": 1, "dirs": {"norm": "layer"}, "same": (1, 2)})
    assert R.differences(old, new) == ["batch_size: 16 -> 32", "dirs.norm: filter -> layer",
                                       "seed: 0 -> 1"]
    assert R.differences(old, old) == []
    assert R.differences(_ident({}), _ident({"extra": 1})) == ["extra: unset -> 1"]


def test_versions_compared_at_major_minor_and_checkpoint_by_hash():
    a = _ident({"k": 1})
    assert R.differences(a, _ident({"k": 1}, torch_v="2.13.1+cpu", landscape_v="0.1.7")) == []
    assert R.differences(a, _ident({"k": 1}, torch_v="2.14.0")) == ["versions.torch: 2.13 -> 2.14"]
    assert R.differences(a, _ident({"k": 1}, sha="b" * 64)) == [
        f"checkpoint_sha256: {'a' * 12} -> {'b' * 12}"]


def test_check_is_one_line_with_the_remedy(tmp_path):
    with pytest.raises(LandscapeError) as e:
        R.check(tmp_path / "x.h5", "a spectrum", _ident({"batch_size": 16, "seed": 0}),
                _ident({"batch_size": 32, "seed": 1}))
    msg = str(e.value)
    assert msg == (f"{tmp_path / 'x.h5'} holds a spectrum with other settings (batch_size: 16 -> "
                   "32, seed: 0 -> 1); delete it or use another --out")
    with pytest.raises(LandscapeError, match="not a JSON object"):
        R.check(tmp_path / "x.h5", "a spectrum", [1, 2], _ident({}))


def test_result_cache_reuses_a_match_and_recomputes_a_mismatch_naming_it(tmp_path):
    said, calls = [], []

    def compute(p):
        calls.append(p.name)
        p.write_text("1")
        return 1

    cache = R.ResultCache(tmp_path, checkpoint_sha256="c" * 64, log=said.append)
    assert cache.get("r.json", {"n": 1}, compute, lambda p: 2) == (1, False)
    assert cache.get("r.json", {"n": 1}, compute, lambda p: 2) == (2, True)
    assert cache.get("r.json", {"n": 3}, compute, lambda p: 2) == (1, False)
    assert calls == ["r.json", "r.json"] and len(said) == 1 and "n: 1 -> 3" in said[0]


# ------------------------------------------------------------------ every resumable analysis
class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


def _tiny_data(n=16):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    return _Tiny().double(), torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64), \
        torch.randint(0, 3, (n,), generator=g)


def _spectrum(tmp_path, seed):
    from landscape.curvature.spectrum import SpectrumConfig, max_eigenvalue_spectrum
    m, x, y = _tiny_data()
    max_eigenvalue_spectrum(m, x, y, SpectrumConfig(k=1, batch_size=4, n_batches=2, seed=seed,
                                                    max_iter=5), out=tmp_path / "spectrum.h5",
                            progress=False)


def _surface(tmp_path, seed):
    from landscape import surface as S
    from landscape.surface import directions as D
    m, x, y = _tiny_data()
    dirs = [D.random_direction(m, 0)]
    S.compute_surface(m, dirs, x, y, np.linspace(-1, 1, 3), None, tmp_path / "surface.h5",
                      identity={"checkpoint_sha256": "aa", "directions": {"seed": seed}},
                      batch_size=8, points_per_pass=1, progress=False)


def _train(tmp_path, seed):
    from landscape.data import ImageData
    from landscape.train import TrainConfig, train
    torch.manual_seed(0)
    m = models.create("resnet_tiny", num_classes=3, in_chans=1, img_size=8)
    g = torch.Generator().manual_seed(0)
    data = ImageData(torch.randn(8, 1, 8, 8, generator=g), torch.arange(8) % 3, 3, "toy",
                     "train", (0.0,), (1.0,))
    train(m, data, None, TrainConfig(epochs=1, batch_size=8, seed=seed, augment=False),
          tmp_path, progress=False)


def _features(tmp_path, seed):
    root = tmp_path / "fm"
    if not root.exists():
        write_fmnist(root, n_train=10, n_test=16)
        torch.manual_seed(0)
        m = fmnist_model()
        checkpoint.save(tmp_path / "m.pt", m, dataset="fashion-mnist")
    argv = ["variance", str(tmp_path / "m.pt"), "--data-root", str(root), "--samples", "16",
            "--batch-size", "16", "--seed", str(seed), "--device", "cpu", "--quiet",
            "--out", str(tmp_path / "out")]
    if main(argv) != 0:
        raise LandscapeError("variance failed")  # the message was printed


@pytest.mark.parametrize("run", [_spectrum, _surface, _train, _features],
                         ids=["spectrum", "surface", "train", "features"])
def test_a_resume_with_one_changed_setting_names_it(run, tmp_path, capsys):
    run(tmp_path, 0)
    run(tmp_path, 0)  # the same settings: resumed (or reused)
    capsys.readouterr()
    with pytest.raises(LandscapeError) as e:
        run(tmp_path, 1)
    msg = str(e.value) + capsys.readouterr().err
    assert "with other settings (" in msg and "seed: 0 -> 1" in msg, msg
    assert "\n" not in msg.strip()


# ------------------------------------------------------------------ one path for the trace
@pytest.mark.slow
def test_hessian_trace_equals_analyze_trace(tmp_path):
    root = tmp_path / "fm"
    write_fmnist(root, n_train=16, n_test=10)
    torch.manual_seed(0)
    m = fmnist_model()
    ck = checkpoint.save(tmp_path / "m.pt", m, dataset="fashion-mnist")
    common = ["--data-root", str(root), "--seed", "3", "--device", "cpu", "--quiet"]
    assert main(["hessian", str(ck), *common, "--samples", "0", "--batch-size", "8",
                 "--batches", "1", "--top-k", "1", "--max-iter", "4", "--trace", "--probes", "6",
                 "--curvature-samples", "16", "--curvature-batch-size", "8",
                 "--curvature-top-k", "1", "--mode", "double_backward",
                 "--out", str(tmp_path / "h")]) == 0
    sets = ["spectrum_batches=1", "spectrum_batch_size=8", "top_k=1", "lanczos_max_iter=4",
            "curvature_samples=16", "curvature_batch_size=8", "trace_products=6",
            "density_probes=1", "density_steps=3", "hessian_mode=\"double_backward\"",
            "eval_samples=10"]
    assert main(["analyze", str(ck), *common, "--only", "hessian", "--out", str(tmp_path / "a"),
                 *[a for s in sets for a in ("--set", s)]]) == 0
    cli = json.loads((tmp_path / "h" / "hessian_summary.json").read_text())["trace"]
    raw = next((tmp_path / "a" / "raw").iterdir()) / "curvature.json"
    ana = json.loads(raw.read_text())
    assert cli["n_samples"] == ana["n_samples"] == 16
    assert cli["hutch++"] == ana["trace"]  # the same numbers, to the last bit
    assert np.isfinite(ana["trace"]["trace"]) and ana["trace"]["n_products"] == 6
