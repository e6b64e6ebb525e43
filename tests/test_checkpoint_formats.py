"""One checkpoint reader (issue 31, item 3): every accepted checkpoint layout loads the same way
through ``--model`` (a registry name) and ``--model-def`` (a user's callable), each file is read
(unpickled and hashed) once per command, and the finiteness check sees the same state dict."""
from __future__ import annotations

import hashlib
import textwrap

import landscape_models as models
import pytest
import torch

from landscape.errors import LandscapeError
from landscape.loading import checkpoint
from landscape.loading.user_model import load_weights

USER_NET = textwrap.dedent("""
    import landscape_models


    def net():
        return landscape_models.create("resnet_tiny", num_classes=10, in_chans=1, img_size=28)
""")

LAYOUTS = {
    "model_state_dict": lambda sd: {"model_state_dict": sd, "epoch": 3},
    "state_dict": lambda sd: {"state_dict": sd},
    "model": lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
    "bare": lambda sd: sd,
}


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return models.create("resnet_tiny", num_classes=10, in_chans=1, img_size=28)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_loads_through_model_and_model_def(layout, net, tmp_path):
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    path = tmp_path / f"{layout}.pt"
    torch.save(LAYOUTS[layout](sd), path)
    (tmp_path / "user_net.py").write_text(USER_NET)
    a, ia = load_weights(path, model="resnet_tiny", dataset="fashion-mnist")
    b, ib = load_weights(path, model_def=f"{tmp_path / 'user_net.py'}:net")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert ia.sha256 == ib.sha256 == sha
    for m in (a, b):
        got = m.state_dict()
        assert set(got) == set(sd)
        for k, v in sd.items():
            assert torch.equal(got[k], v), k
    f = checkpoint.read_checkpoint(path)
    assert f.format == ("state_dict" if layout == "bare" else layout)
    # a registry model without a name in the file: --model is asked for, whatever the layout
    with pytest.raises(LandscapeError, match="--model"):
        load_weights(path)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_nonfinite_refused_in_every_layout(layout, net, tmp_path):
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    next(iter(v for v in sd.values() if v.is_floating_point())).view(-1)[0] = float("inf")
    path = tmp_path / "inf.pt"
    torch.save(LAYOUTS[layout](sd), path)
    with pytest.raises(LandscapeError, match="NaN or infinite"):
        checkpoint.read_checkpoint(path, allow_nonfinite=False)
    assert checkpoint.read_checkpoint(path).format  # allowed: read all the same


def test_a_command_reads_each_checkpoint_once(net, tmp_path, monkeypatch):
    """``landscape lesion`` on two checkpoints unpickles each file once (it used to read a file
    for the finiteness check, again for the model and again for its hash)."""
    import gzip
    import struct

    import numpy as np

    from landscape.cli import main as cli_main
    root = tmp_path / "fm"
    root.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 20)):
        for kind, arr in (("images-idx3", rng.integers(0, 256, (n, 28, 28))),
                          ("labels-idx1", np.arange(n) % 10)):
            a = np.ascontiguousarray(arr, dtype=np.uint8)
            raw = struct.pack(">HBB", 0, 8, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
            (root / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(raw + a.tobytes()))
    ckpts = [checkpoint.save(tmp_path / f"m{i}.pt", net, dataset="fashion-mnist")
             for i in range(2)]
    loads: list[str] = []
    real = torch.load

    def counting(f, *a, **k):
        loads.append(str(f))
        return real(f, *a, **k)

    monkeypatch.setattr(torch, "load", counting)
    import landscape.store.provenance as P
    hashed: list[str] = []
    real_sha = P.file_sha256
    monkeypatch.setattr(P, "file_sha256", lambda p, *a, **k: hashed.append(str(p))
                        or real_sha(p, *a, **k))
    assert cli_main(["lesion", *map(str, ckpts), "--data-root", str(root), "--samples", "8",
                     "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet"]) == 0
    assert len(loads) == 2, loads
    assert not [h for h in hashed if h.endswith(".pt")], hashed
    loads.clear()
    assert cli_main(["analyze", *map(str, ckpts), "--data-root", str(root), "--only", "lesion",
                     "--set", "lesion_samples=8", "--set", "eval_samples=8", "--out",
                     str(tmp_path / "an"), "--device", "cpu", "--quiet"]) == 0
    assert len(loads) == 2, loads
    assert not [h for h in hashed if h.endswith(".pt")], hashed
