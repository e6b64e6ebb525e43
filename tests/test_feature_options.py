"""Every option of every feature command (``landscape fourier|variance|robustness|cka|lesion``)
changes the result or the output, or is refused with one line ``landscape: error: ...`` and
exit code 2.

Runs on tiny IDX files written here (random 28x28 images, so nothing depends on an installed
Fashion-MNIST), 16 images and untrained tiny models; the figures are stubbed out (the plotting
has its own tests), so each run takes a fraction of a second.
:func:`test_every_option_has_a_test` fails when a command gains an option no test here covers.
"""
from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import landscape_models as models
import numpy as np
import pytest
import torch
from cases import write_fmnist

from landscape.cli import build_parser
from landscape.cli import main as cli_main
from landscape.loading import checkpoint

torch.set_num_threads(1)

FEATURE_COMMANDS = ("fourier", "variance", "robustness", "cka", "lesion")
FAST = ["--samples", "16", "--batch-size", "8", "--device", "cpu", "--quiet"]
EXTRA = {"robustness": ["--freqs", "0.5", "1"]}  # two frequencies keep it quick
N_TEST = 48

# ------------------------------------------------------------------------------------ inputs


USER_NET = textwrap.dedent("""
    import landscape_models


    def net(num_classes=10):
        return landscape_models.create("resnet_tiny", num_classes=num_classes, in_chans=1,
                                       img_size=28)
""")


@pytest.fixture(scope="module")
def inp(tmp_path_factory):
    """Data folders, checkpoints (ours, a bare state_dict, one with a NaN) and a user model
    (a file and a package in a repository folder)."""
    d = tmp_path_factory.mktemp("inputs")
    for name, seed in (("fm", 0), ("fm2", 1)):
        write_fmnist(d / name, 40, N_TEST, seed=seed, shuffle_labels=False)
    out = {"root": d / "fm", "root2": d / "fm2"}
    for name in ("resnet_tiny", "vit_tiny"):
        torch.manual_seed(0)
        m = models.create(name, num_classes=10, in_chans=1, img_size=28)
        out[name] = checkpoint.save(d / f"{name}.pt", m, dataset="fashion-mnist",
                                    mean=[0.286], std=[0.353], seed=0, epoch=0)
        if name == "resnet_tiny":
            torch.save(m.state_dict(), d / "bare.pt")
            out["bare"] = d / "bare.pt"
            with torch.no_grad():
                next(m.parameters()).view(-1)[0] = float("nan")
            out["nan"] = checkpoint.save(d / "nan.pt", m, dataset="fashion-mnist",
                                         mean=[0.286], std=[0.353], seed=0, epoch=0)
    (d / "user_net.py").write_text(USER_NET)
    out["user_file"] = d / "user_net.py"
    (d / "repo" / "zoo").mkdir(parents=True)
    (d / "repo" / "zoo" / "__init__.py").write_text("")
    (d / "repo" / "zoo" / "tiny_net_for_options.py").write_text(USER_NET)
    out["repo"] = d / "repo"
    return out


@pytest.fixture(autouse=True)
def _no_figures(monkeypatch):
    import landscape.reporting.plots.features as P
    for name in dir(P):
        if name.startswith("plot_"):
            monkeypatch.setattr(P, name, lambda *a, **k: [])


_n = itertools.count()


class Runner:
    """Runs a feature command in-process on the tiny data; each run gets its own --out."""

    def __init__(self, inp, tmp: Path, capsys):
        self.inp, self.tmp, self.capsys = inp, tmp, capsys

    def __call__(self, cmd: str, *extra, ckpts=None, out=None, fast=True, root=None):
        out = out or self.tmp / f"out{next(_n)}"
        ck = ckpts if ckpts is not None else [self.inp["resnet_tiny"]]
        root = self.inp["root"] if root is None else root
        argv = [cmd, *map(str, ck), "--data-root", str(root), "--out", str(out),
                *(FAST if fast else []), *EXTRA.get(cmd, []), *map(str, extra)]
        self.capsys.readouterr()
        rc = cli_main(argv)
        cap = self.capsys.readouterr()
        return rc, cap.out, cap.err, Path(out)

    def result(self, cmd: str, *extra, label: str = "resnet_tiny", **kw):
        """The result object of a successful run."""
        from landscape.runners import FEATURE_RUNNERS
        from landscape.workflows.features import result_loader
        rc, _, err, out = self(cmd, *extra, **kw)
        assert rc == 0, err
        return result_loader(cmd)(out / f"{cmd}_{label}.{FEATURE_RUNNERS[cmd][2]}")


@pytest.fixture
def run(inp, tmp_path, capsys):
    return Runner(inp, tmp_path, capsys)


def values(cmd: str, r) -> np.ndarray:
    """The numbers a command computes."""
    if cmd == "fourier":
        return np.concatenate([np.asarray(s, dtype=float).ravel() for s in r.spectra])
    if cmd == "variance":
        return np.asarray(r.variance, dtype=float)
    if cmd == "robustness":
        return np.asarray([*r.loss, *r.accuracy, r.clean_loss], dtype=float)
    if cmd == "cka":
        return np.asarray(r.cka, dtype=float).ravel()
    return np.asarray([*r.loss, r.baseline_loss], dtype=float)


def differ(cmd: str, a, b) -> bool:
    va, vb = values(cmd, a), values(cmd, b)
    return va.shape != vb.shape or not np.allclose(va, vb, rtol=1e-6, atol=1e-9, equal_nan=True)


def refused(rc: int, err: str, *words: str) -> None:
    """Exit 2 and exactly one line ``landscape: error: ...`` naming ``words``."""
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("landscape: error: "), (rc, err)
    for w in words:
        assert w in lines[0], (w, lines[0])


_BASE: dict[str, object] = {}


@pytest.fixture
def base(run):
    """The result of each command with the defaults above (computed once per module)."""
    def get(cmd: str):
        if cmd not in _BASE:
            _BASE[cmd] = run.result(cmd)
        return _BASE[cmd]
    return get


per_command = pytest.mark.parametrize("cmd", FEATURE_COMMANDS)

# --------------------------------------------------------------------------- coverage of options

COMMON = {"--model", "--allow-nonfinite", "--model-def", "--model-kwargs", "--code-root",
          "--blocks", "--data",
          "--data-root", "--download", "--split", "--samples", "--batch-size", "--seed",
          "--device", "--out", "--force", "--quiet"}
OWN = {"fourier": {"--eps", "--no-input"}, "variance": {"--ddof", "--no-input"},
       "robustness": {"--protocol", "--freqs", "--width", "--eps", "--noise-norm", "--base"},
       "cka": {"--estimator"}, "lesion": set()}


def _subparsers():
    import argparse
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_the_feature_commands_are_these():
    from landscape.commands import features
    cmds = {name for name, sp in _subparsers().items()
            if sp.get_default("func") is features.run}
    assert cmds == set(FEATURE_COMMANDS)


@per_command
def test_every_option_has_a_test(cmd):
    sp = _subparsers()[cmd]
    options = {s for a in sp._actions for s in a.option_strings
               if s.startswith("--") and s != "--help"}
    assert options == COMMON | OWN[cmd], "an option without a test in this file (or a test of " \
                                         "an option that is gone)"


def test_the_commands_compute_with_the_settings_defaults(base):
    """What the commands computed with their defaults (read from the results, not from the
    parsers) is what the settings say: robustness's protocol, eps, band width and base noise,
    fourier's eps, cka's estimator (the defaults of the options are
    tests/test_settings_defaults.py's)."""
    from landscape.settings import (
        ROBUSTNESS_PROTOCOLS,
        CKASettings,
        FourierSettings,
        RobustnessSettings,
    )
    r = base("robustness")
    paper = ROBUSTNESS_PROTOCOLS["paper"]
    assert (r.protocol, r.eps, r.width, r.base) == (
        RobustnessSettings.protocol, RobustnessSettings.eps, paper["width"], paper["base"])
    assert base("fourier").config["identity"]["settings"]["eps"] == FourierSettings.eps
    assert base("cka").estimator == CKASettings.estimator

# ------------------------------------------------------------------------------ common options


@per_command
def test_checkpoints_one_result_each_and_missing_refused(cmd, run, inp):
    rc, out_text, err, out = run(cmd, ckpts=[inp["resnet_tiny"], inp["vit_tiny"]])
    assert rc == 0, err
    assert {p.name.split(".")[0] for p in out.glob(f"{cmd}_*")} == {f"{cmd}_resnet_tiny",
                                                                    f"{cmd}_vit_tiny"}
    assert out_text.count("wrote") == 2
    rc, _, err, _ = run(cmd, ckpts=[inp["resnet_tiny"].parent / "missing.pt"])
    refused(rc, err, "missing.pt")


@per_command
def test_samples(cmd, run, base):
    r8 = run.result(cmd, "--samples", "8")
    assert r8.n_images == 8 and base(cmd).n_images == 16 and differ(cmd, r8, base(cmd))
    assert run.result(cmd, "--samples", "0").n_images == N_TEST  # 0 = all
    rc, _, err, _ = run(cmd, "--samples", "-1")
    refused(rc, err, "--samples")


@per_command
def test_seed(cmd, run, base):
    r = run.result(cmd, "--seed", "1")
    assert differ(cmd, r, base(cmd)) and r.config["identity"]["settings"]["seed"] == 1
    rc, _, err, _ = run(cmd, "--seed", "x")
    refused(rc, err, "--seed")


@per_command
def test_split(cmd, run, base):
    r = run.result(cmd, "--split", "train")
    assert differ(cmd, r, base(cmd)) and r.config["identity"]["settings"]["split"] == "train"
    rc, _, err, _ = run(cmd, "--split", "val")
    refused(rc, err, "--split")


@per_command
def test_data_root(cmd, run, base, inp, tmp_path):
    assert differ(cmd, run.result(cmd, root=inp["root2"]), base(cmd))
    (tmp_path / "empty").mkdir()
    rc, _, err, _ = run(cmd, root=tmp_path / "empty")
    refused(rc, err)


@per_command
def test_data(cmd, run, inp):
    # a bare state_dict records no dataset: refused without --data, analysed with it
    rc, _, err, _ = run(cmd, "--model", "resnet_tiny", ckpts=[inp["bare"]])
    refused(rc, err, "--data")
    r = run.result(cmd, "--model", "resnet_tiny", "--data", "fashion-mnist", ckpts=[inp["bare"]],
                   label="bare")
    assert r.n_images == 16
    rc, _, err, _ = run(cmd, "--data", "cifar10")  # not in --data-root: one line
    refused(rc, err, "cifar")
    rc, _, err, _ = run(cmd, "--data", "mnist-like")
    refused(rc, err, "mnist-like")


def test_download_is_refused_for_fashion_mnist(run):
    for cmd in FEATURE_COMMANDS:
        rc, _, err, _ = run(cmd, "--download")
        refused(rc, err, "--download", "CIFAR")


@per_command
def test_batch_size(cmd, run, base, tmp_path):
    r = run.result(cmd, "--batch-size", "4")
    assert r.config["identity"]["settings"]["batch_size"] == 4
    if cmd == "cka":  # HSIC per mini-batch: the batch size is part of the estimate
        assert r.n_batches == 4 and base(cmd).n_batches == 2 and differ(cmd, r, base(cmd))
    elif cmd != "robustness":  # means over images: batching changes no number
        np.testing.assert_allclose(values(cmd, r), values(cmd, base(cmd)), rtol=1e-4, atol=1e-6)
    # the stored result records it: another batch size in the same --out is refused
    rc, _, err, out = run(cmd, "--batch-size", "4", out=tmp_path / "same")
    assert rc == 0, err
    rc, _, err, _ = run(cmd, out=out)
    refused(rc, err, "batch_size")
    rc, _, err, _ = run(cmd, "--batch-size", "0")
    refused(rc, err, "--batch-size")


@per_command
def test_force_and_reuse(cmd, run, tmp_path):
    out = tmp_path / "o"
    rc, text, err, _ = run(cmd, out=out)
    assert rc == 0 and "wrote" in text, err
    file = next(out.glob(f"{cmd}_resnet_tiny.*"))
    stamp = file.stat().st_mtime_ns
    rc, text, err, _ = run(cmd, out=out)
    assert rc == 0 and "reusing" in text and file.stat().st_mtime_ns == stamp, err
    rc, text, err, _ = run(cmd, "--force", out=out)
    assert rc == 0 and "wrote" in text, err
    rc, _, err, _ = run(cmd, "--seed", "3", out=out)  # other settings: refused, named
    refused(rc, err, "seed")
    rc, text, err, _ = run(cmd, "--seed", "3", "--force", out=out)
    assert rc == 0 and "wrote" in text, err


@per_command
def test_out(cmd, run, tmp_path):
    rc, text, err, out = run(cmd, out=tmp_path / "here" / "deep")
    assert rc == 0, err
    assert (out / f"config_{cmd}.json").is_file() and list(out.glob(f"{cmd}_resnet_tiny.*"))
    assert str(out) in text
    (tmp_path / "a_file").write_text("")
    rc, _, err, _ = run(cmd, out=tmp_path / "a_file")
    refused(rc, err, "a_file")


@per_command
def test_quiet(cmd, run):
    loud = [a for a in FAST if a != "--quiet"]
    rc, _, err, _ = run(cmd, *loud, fast=False)
    assert rc == 0 and cmd in err and "%" in err, err  # a progress bar
    rc, _, err, _ = run(cmd)
    assert rc == 0 and err == ""


@per_command
def test_device(cmd, run):
    rc, _, err, _ = run(cmd, "--device", "no-such-device")
    refused(rc, err, "no-such-device")
    if not torch.cuda.is_available():
        rc, _, err, _ = run(cmd, "--device", "cuda")
        refused(rc, err, "cuda")


@per_command
def test_model(cmd, run, base, inp):
    rc, _, err, _ = run(cmd, "--data", "fashion-mnist", ckpts=[inp["bare"]])
    refused(rc, err, "--model")
    r = run.result(cmd, "--model", "resnet_tiny", "--data", "fashion-mnist",
                   ckpts=[inp["bare"]], label="bare")
    np.testing.assert_allclose(values(cmd, r), values(cmd, base(cmd)), rtol=1e-6)  # same weights
    rc, _, err, _ = run(cmd, "--model", "vit_tiny")  # the weights do not fit
    refused(rc, err)
    rc, _, err, _ = run(cmd, "--model", "no_such_model")
    refused(rc, err, "no_such_model")


@per_command
def test_model_def(cmd, run, inp):
    spec = f"{inp['user_file']}:net"
    r = run.result(cmd, "--model-def", spec, "--data", "fashion-mnist", ckpts=[inp["bare"]],
                   label="bare")
    ref = run.result(cmd, "--model", "resnet_tiny", "--data", "fashion-mnist",
                     ckpts=[inp["bare"]], label="bare")
    np.testing.assert_allclose(values(cmd, r), values(cmd, ref), rtol=1e-6)
    assert r.config["checkpoint"]["model"] == "net"
    rc, _, err, _ = run(cmd, "--model-def", f"{inp['user_file']}:nope", ckpts=[inp["bare"]])
    refused(rc, err, "nope")
    # --model-kwargs reach the builder: 10 classes loads, 7 does not fit the weights
    r = run.result(cmd, "--model-def", spec, "--model-kwargs", "num_classes=10", "--data",
                   "fashion-mnist", ckpts=[inp["bare"]], label="bare")
    np.testing.assert_allclose(values(cmd, r), values(cmd, ref), rtol=1e-6)
    rc, _, err, _ = run(cmd, "--model-def", spec, "--model-kwargs", "num_classes=7",
                        ckpts=[inp["bare"]])
    refused(rc, err)


@per_command
def test_code_root(cmd, run, inp):
    spec = "zoo.tiny_net_for_options:net"
    r = run.result(cmd, "--model-def", spec, "--code-root", inp["repo"], "--data",
                   "fashion-mnist", ckpts=[inp["bare"]], label="bare")
    assert r.config["checkpoint"]["model"] == "net"
    rc, _, err, _ = run(cmd, "--model-def", "zoo_nowhere.tiny:net", ckpts=[inp["bare"]])
    refused(rc, err, "--code-root")
    rc, _, err, _ = run(cmd, "--code-root", inp["repo"])  # nothing to import from it
    refused(rc, err, "--code-root", "--model-def")
    rc, _, err, _ = run(cmd, "--model-def", spec, "--code-root", inp["repo"] / "absent",
                        ckpts=[inp["bare"]])
    refused(rc, err, "--code-root")


@per_command
def test_allow_nonfinite(cmd, run, inp):
    rc, _, err, _ = run(cmd, ckpts=[inp["nan"]])
    refused(rc, err, "--allow-nonfinite")
    rc, _, err, _ = run(cmd, "--allow-nonfinite", ckpts=[inp["nan"]])
    assert rc == 0, err


@per_command
def test_blocks(cmd, run, base):
    spec = "layer1.0=conv,layer2.0=conv,layer3.1=conv"
    if cmd == "robustness":  # the predictions only: no block list to choose
        rc, _, err, _ = run(cmd, "--blocks", spec)
        refused(rc, err, "--blocks")
        return
    r = run.result(cmd, "--blocks", spec)
    assert [n for n in r.names if n != "input"] == ["layer1.0", "layer2.0", "layer3.1"]
    assert len(base(cmd).names) > len(r.names)
    rc, _, err, _ = run(cmd, "--blocks", "no_such_module=conv")
    refused(rc, err, "no_such_module")

# ------------------------------------------------------------------------- per-command options


def test_fourier_eps(run, base):
    r = run.result("fourier", "--eps", "0.5")
    assert differ("fourier", r, base("fourier")) and r.config["identity"]["settings"]["eps"] == 0.5
    rc, _, err, _ = run("fourier", "--eps", "0")
    refused(rc, err, "--eps")


@pytest.mark.parametrize("cmd", ["fourier", "variance"])
def test_no_input(cmd, run, base):
    r = run.result(cmd, "--no-input")
    assert base(cmd).names[0] == "input" and "input" not in r.names
    assert r.names == base(cmd).names[1:]


def test_variance_ddof(run, base):
    r = run.result("variance", "--ddof", "0")
    assert differ("variance", r, base("variance"))
    rc, _, err, _ = run("variance", "--ddof", "2")
    refused(rc, err, "--ddof")


def test_cka_estimator(run, base):
    r = run.result("cka", "--estimator", "biased")
    assert r.estimator == "biased" and base("cka").estimator == "unbiased"
    assert differ("cka", r, base("cka"))
    rc, _, err, _ = run("cka", "--estimator", "other")
    refused(rc, err, "--estimator")


def test_robustness_default_is_the_paper_protocol(base):
    from landscape.features.robustness import PAPER_EPS, PAPER_WIDTH
    r = base("robustness")
    assert (r.protocol, r.eps, r.width, r.base) == ("paper", PAPER_EPS, PAPER_WIDTH, "sign")
    s = r.config["identity"]["settings"]
    assert (s["protocol"], s["eps"], s["base"]) == ("paper", PAPER_EPS, "sign")
    assert "noise_norm" not in s  # the paper protocol has no norm
    assert "eps * sign(N(0, 1))" in r.config["noise"] and "not renormalized" in r.config["noise"]


@pytest.mark.parametrize("option", [
    ("--protocol", "radial"), ("--freqs", "0.2", "0.7"), ("--width", "0.2"), ("--eps", "2"),
    ("--base", "gaussian")])
def test_robustness_option_changes_the_result(option, run, base):
    r = run.result("robustness", *option)
    assert differ("robustness", r, base("robustness")), option
    name = option[0][2:].replace("-", "_")
    stored = r.config["identity"]["settings"][name]
    assert stored == ([float(v) for v in option[1:]] if name == "freqs" else
                      float(option[1]) if name in ("width", "eps") else option[1])


def test_robustness_radial_options(run):
    radial = run.result("robustness", "--protocol", "radial")
    assert (radial.protocol, radial.norm, radial.base, radial.eps) == ("radial", 5.0, "gaussian",
                                                                       None)
    assert "N(0, 1)" in radial.config["noise"] and "sign" not in radial.config["noise"]
    loud = run.result("robustness", "--protocol", "radial", "--noise-norm", "50")
    assert loud.norm == 50.0 and differ("robustness", loud, radial)
    for opt in (("--width", "0.2"), ("--base", "sign")):
        assert differ("robustness", run.result("robustness", "--protocol", "radial", *opt),
                      radial), opt
    sign = run.result("robustness", "--protocol", "radial", "--base", "sign")
    assert "sign(N(0, 1))" in sign.config["noise"]


def test_robustness_other_protocols_options_are_refused(run):
    rc, _, err, _ = run("robustness", "--noise-norm", "50")  # paper protocol (default)
    refused(rc, err, "--noise-norm", "radial")
    rc, _, err, _ = run("robustness", "--protocol", "paper", "--noise-norm", "5")
    refused(rc, err, "--noise-norm")
    rc, _, err, _ = run("robustness", "--protocol", "radial", "--eps", "1")
    refused(rc, err, "--eps", "paper")


@pytest.mark.parametrize("bad", [("--freqs", "1.5"), ("--width", "0"), ("--eps", "-1"),
                                 ("--noise-norm", "-1"), ("--base", "uniform"),
                                 ("--protocol", "square")])
def test_robustness_bad_values_refused(bad, run):
    rc, _, err, _ = run("robustness", *bad)
    refused(rc, err, bad[0])


def test_robustness_help_describes_both_protocols(capsys):
    with pytest.raises(SystemExit):
        cli_main(["robustness", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "paper (default)" in text and "FreqAttack" in text and "not renormalized" in text
    assert "radial:" in text and "--noise-norm applies; --eps is refused" in text
    assert "--eps applies; --noise-norm is refused" in text
