"""Checkpoint formats and every error path of landscape.loading.checkpoint.load."""
import pickle

import landscape_models as models
import pytest
import torch

from landscape.cli import main as cli_main
from landscape.errors import LandscapeError
from landscape.loading import checkpoint

NAME = "resnet_tiny"
KW = dict(num_classes=10, in_chans=1, img_size=28)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return models.create(NAME, **KW).eval()


def _x():
    return torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def test_roundtrip_our_format(tmp_path, net):
    p = checkpoint.save(tmp_path / "m.pt", net, dataset="fashion-mnist", mean=[0.286], std=[0.353],
                        seed=3, epoch=7, metrics={"test_acc": 0.5})
    model, info = checkpoint.load(p)
    assert info.format == "landscape" and info.model == NAME and info.dataset == "fashion-mnist"
    assert info.seed == 3 and info.epoch == 7 and info.metrics["test_acc"] == 0.5
    assert info.model_kwargs["num_classes"] == 10 and len(info.sha256) == 64
    assert not model.training
    with torch.no_grad():
        assert torch.equal(model(_x()), net(_x()))


def test_paper_format_and_bare_state_dict(tmp_path, net):
    torch.save({"name": NAME, "state_dict": net.state_dict()}, tmp_path / "paper.pth.tar")
    model, info = checkpoint.load(tmp_path / "paper.pth.tar", model=NAME, model_kwargs=KW)
    assert info.format == "paper"
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(LandscapeError, match="--model"):
        checkpoint.load(tmp_path / "bare.pt")
    model, info = checkpoint.load(tmp_path / "bare.pt", model=NAME, model_kwargs=KW)
    assert info.format == "state_dict"
    with torch.no_grad():
        assert torch.equal(model(_x()), net(_x()))
    # module. prefixes from DataParallel are stripped
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "dp.pt")
    checkpoint.load(tmp_path / "dp.pt", model=NAME, model_kwargs=KW)


def test_paper_names_map_to_registry():
    assert checkpoint._paper_model_name("resnet_50") == "resnet50"
    assert checkpoint._paper_model_name("vit_ti_cifar100") == "vit_ti"
    assert checkpoint._paper_model_name("swin_ti") == "swin_ti"
    assert checkpoint._paper_model_name("mystery") is None


def test_missing_and_directory(tmp_path):
    with pytest.raises(LandscapeError, match="not found"):
        checkpoint.load(tmp_path / "nope.pt")
    with pytest.raises(LandscapeError, match="directory"):
        checkpoint.load(tmp_path)


def test_corrupt_file(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(LandscapeError, match="not a readable"):
        checkpoint.load(tmp_path / "bad.pt")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_refused(tmp_path, capsys):
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"state_dict": Evil()}, f, protocol=2)
    with pytest.raises(LandscapeError, match="refusing"):
        checkpoint.load(tmp_path / "evil.pt")
    assert "pwned" not in capsys.readouterr().out


def test_not_a_dict_and_no_state_dict(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "t.pt")
    with pytest.raises(LandscapeError, match="not a checkpoint"):
        checkpoint.load(tmp_path / "t.pt")
    torch.save({"hello": 1}, tmp_path / "d.pt")
    with pytest.raises(LandscapeError, match="neither a state_dict"):
        checkpoint.load(tmp_path / "d.pt")


def test_unknown_model(tmp_path, net):
    torch.save({"name": "mystery_net", "state_dict": net.state_dict()}, tmp_path / "m.pt")
    with pytest.raises(LandscapeError, match="unknown model name 'mystery_net'"):
        checkpoint.load(tmp_path / "m.pt")
    torch.save(net.state_dict(), tmp_path / "b.pt")
    with pytest.raises(LandscapeError, match="unknown model 'mystery_net'"):
        checkpoint.load(tmp_path / "b.pt", model="mystery_net")


def test_missing_unexpected_and_shape_mismatch_are_listed(tmp_path, net):
    sd = dict(net.state_dict())
    first, second = list(sd)[:2]
    del sd[first]
    sd["extra.weight"] = torch.zeros(1)
    head = [k for k in sd if k.endswith("weight") and sd[k].dim() == 2][-1]
    sd[head] = torch.zeros(sd[head].shape[0] + 1, sd[head].shape[1])
    torch.save(sd, tmp_path / "b.pt")
    with pytest.raises(LandscapeError) as e:
        checkpoint.load(tmp_path / "b.pt", model=NAME, model_kwargs=KW)
    msg = str(e.value)
    assert f"missing keys (1): {first}" in msg
    assert "unexpected keys (1): extra.weight" in msg
    assert f"shape mismatches (1): {head}" in msg


def test_wrong_architecture(tmp_path, net):
    checkpoint.save(tmp_path / "m.pt", net)
    with pytest.raises(LandscapeError, match="does not fit model 'vit_tiny'"):
        checkpoint.load(tmp_path / "m.pt", model="vit_tiny")


def test_save_refuses_unregistered_model(tmp_path):
    with pytest.raises(LandscapeError, match="landscape_models.create"):
        checkpoint.save(tmp_path / "x.pt", torch.nn.Linear(2, 2))


def test_cli_one_line_error_exit_2(tmp_path, capsys):
    rc = cli_main(["train", "--model", "mystery", "--data", "nope", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("landscape: error:")
