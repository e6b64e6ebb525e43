"""landscape.train: learning, resume after interruption, NaN loss, fine-tuning, freezing, CLI."""
import landscape_models as models
import numpy as np
import pytest
import torch

from landscape import train as T
from landscape.cli import main as cli_main
from landscape.data import ImageData
from landscape.errors import LandscapeError, NonFiniteLossError
from landscape.loading import checkpoint


def _data(n=96, seed=0, classes=10, nan=False):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    # Learnable: the class shifts a bright square's position.
    x = 0.1 * torch.randn(n, 1, 28, 28, generator=g)
    for i in range(n):
        r = int(y[i]) * 2
        x[i, 0, r:r + 6, 4:10] += 2.0
    if nan:
        x[0, 0, 0, 0] = float("nan")
    return ImageData(x, y, classes, "synthetic", "train", (0.0,), (1.0,))


CFG = dict(epochs=2, batch_size=32, lr=3e-3, warmup_epochs=0.5, seed=0, pad=1)


def _model(name="resnet_tiny", classes=10):
    torch.manual_seed(0)
    return models.create(name, num_classes=classes, in_chans=1, img_size=28)


def test_training_learns_and_writes_checkpoints(tmp_path):
    m = _model()
    data = _data()
    before = T.evaluate(m, data)["loss"]
    metrics = T.train(m, data, data, T.TrainConfig(**{**CFG, "epochs": 4}), tmp_path,
                      progress=False)
    assert metrics["test_loss"] < before
    for f in ("model.pt", "last.pt", "epoch_001.pt", "epoch_004.pt", "config.json", "metrics.json"):
        assert (tmp_path / f).exists(), f
    loaded, info = checkpoint.load(tmp_path / "model.pt")
    assert info.epoch == 4 and info.dataset == "synthetic" and info.seed == 0
    assert info.metrics["test_acc"] == metrics["test_acc"]


class _Stop(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted(tmp_path, monkeypatch):
    data = _data()
    full = _model()
    T.train(full, data, None, T.TrainConfig(**CFG), tmp_path / "a", progress=False)

    part = _model()
    calls = {"n": 0}
    orig = checkpoint.save

    def save_then_die(path, *a, **k):
        out = orig(path, *a, **k)
        if str(path).endswith("last.pt"):
            calls["n"] += 1
            raise _Stop  # killed right after epoch 1 was saved
        return out
    monkeypatch.setattr(T.checkpoint, "save", save_then_die)
    with pytest.raises(_Stop):
        T.train(part, data, None, T.TrainConfig(**CFG), tmp_path / "b", progress=False)
    monkeypatch.setattr(T.checkpoint, "save", orig)
    resumed = _model()  # a fresh process: new model object, same command
    T.train(resumed, data, None, T.TrainConfig(**CFG), tmp_path / "b", progress=False)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), k


def test_other_settings_in_same_folder_refused(tmp_path):
    data = _data(32)
    T.train(_model(), data, None, T.TrainConfig(**{**CFG, "epochs": 1}), tmp_path, progress=False)
    with pytest.raises(LandscapeError, match="other settings"):
        T.train(_model(), data, None, T.TrainConfig(**{**CFG, "epochs": 1, "lr": 0.1}), tmp_path,
                progress=False)


def test_nan_loss_is_a_clear_error(tmp_path):
    with pytest.raises(NonFiniteLossError, match="lower --lr"):
        T.train(_model(), _data(32, nan=True), None, T.TrainConfig(**{**CFG, "augment": False}),
                tmp_path, progress=False)


def test_finetune_reinitializes_head_and_freeze_trains_only_head(tmp_path):
    src = _model()
    checkpoint.save(tmp_path / "src.pt", src)
    dst = _model(classes=5)
    reinit = T.init_from(dst, tmp_path / "src.pt")
    assert reinit and all(k.startswith(("head", "fc", "classifier")) for k in reinit), reinit
    body = [k for k in dst.state_dict() if k not in reinit and "num_batches" not in k]
    for k in body:
        assert torch.equal(dst.state_dict()[k], src.state_dict()[k])
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    T.train(dst, _data(32, classes=5), None, T.TrainConfig(**{**CFG, "epochs": 1, "freeze": True}),
            tmp_path / "ft", progress=False)
    heads = set(T.head_parameters(dst))
    for k, p in dst.named_parameters():
        assert torch.equal(p, before[k]) != (k in heads), k


#: TrainConfig fields no option sets, and why (any other field without an option fails).
NOT_AN_OPTION = {"min_lr": "the cosine schedule's floor (0: the paper's recipe)",
                 "pad": "the paper's pad-4 crop (a recipe constant)",
                 "eval_batch_size": "evaluation batch: speed only, not the result"}
#: options that set a TrainConfig field under another name (negated flags)
NEGATED = {"no_augment": "augment", "no_flip": "flip"}


def test_cli_train_every_option_is_documented_and_reaches_the_config():
    """Every one of ``landscape train``'s options has its own help line in ``--help``; every
    TrainConfig field is set by an option (or listed in NOT_AN_OPTION), and an option named
    like a field has the field's default (the command and the API train alike)."""
    import argparse
    import contextlib
    import dataclasses
    import io

    from landscape.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = [a for a in sub.choices["train"]._actions if a.dest != "help"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    text = " ".join(buf.getvalue().split())
    for a in actions:
        assert a.help and " ".join(a.help.split())[:40].replace("%%", "%") in text, a.dest
        if a.option_strings:
            assert a.option_strings[0] in text
    fields = {f.name: f.default for f in dataclasses.fields(T.TrainConfig)}
    dests = {NEGATED.get(a.dest, a.dest) for a in actions}
    assert set(fields) - dests == set(NOT_AN_OPTION)
    for a in actions:
        if a.dest in fields:
            assert a.default == fields[a.dest], a.dest


def _interrupted(tmp_path, monkeypatch, data, cfg):
    """A run killed right after epoch 1 was saved (last.pt on disk, config.json recorded)."""
    orig = checkpoint.save

    def save_then_die(path, *a, **k):
        out = orig(path, *a, **k)
        if str(path).endswith("last.pt"):
            raise _Stop
        return out
    monkeypatch.setattr(T.checkpoint, "save", save_then_die)
    with pytest.raises(_Stop):
        T.train(_model(), data, None, cfg, tmp_path, progress=False)
    monkeypatch.setattr(T.checkpoint, "save", orig)


def _sub(data, idx):
    return ImageData(data.images[idx], data.labels[idx], data.num_classes, data.name, data.split,
                     data.mean, data.std, indices=idx, seed=0)


def test_resume_with_other_data_refused_naming_it(tmp_path, monkeypatch):
    full = _data(96)
    cfg = T.TrainConfig(**CFG)
    _interrupted(tmp_path, monkeypatch, _sub(full, np.arange(0, 64)), cfg)
    before = (tmp_path / "config.json").read_text()
    other = _sub(full, np.arange(32, 96))  # same size, other images
    with pytest.raises(LandscapeError, match=r"data indices_sha256") as e:
        T.train(_model(), other, None, cfg, tmp_path, progress=False)
    assert "\n" not in str(e.value) and "train_size" not in str(e.value)
    with pytest.raises(LandscapeError, match=r"train_size: 64 -> 32"):
        T.train(_model(), _sub(full, np.arange(0, 32)), None, cfg, tmp_path, progress=False)
    with pytest.raises(LandscapeError, match=r"\(seed: 0 -> 1\)"):
        T.train(_model(), _sub(full, np.arange(0, 64)), None,
                T.TrainConfig(**{**CFG, "seed": 1}), tmp_path, progress=False)
    assert (tmp_path / "config.json").read_text() == before  # provenance untouched
    T.train(_model(), _sub(full, np.arange(0, 64)), None, cfg, tmp_path, progress=False)


def test_more_epochs_on_a_finished_run_names_the_setting(tmp_path):
    data = _data(32)
    T.train(_model(), data, None, T.TrainConfig(**{**CFG, "epochs": 1}), tmp_path, progress=False)
    with pytest.raises(LandscapeError, match="1 epochs and --epochs is 2.*--init"):
        T.train(_model(), data, None, T.TrainConfig(**{**CFG, "epochs": 2}), tmp_path,
                progress=False)


def test_cli_train_resume_with_other_subset_refused(tmp_path, capsys, fmnist_root):
    base = ["train", "--model", "resnet_tiny", "--data", "fashion-mnist",
            "--data-root", str(fmnist_root),
            "--epochs", "1", "--batch-size", "20", "--out", str(tmp_path / "run"), "--quiet"]
    assert cli_main(base + ["--subset", "20"]) == 0
    capsys.readouterr()
    assert cli_main(base + ["--subset", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("landscape: error:") and "subset" in err[0]
