"""A research repository with its own top-level ``models`` package (as the paper's has) loads
through both ``--model-def`` forms, and putting it on PYTHONPATH breaks none of the toolkit's
imports (issue #23, acceptance (a) and (b))."""
import configparser
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from landscape.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]

LAYERS = textwrap.dedent("""
    import torch.nn as nn


    class Unit(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, padding=1)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv2(self.relu(self.conv1(x))) + x)
""")
NET = textwrap.dedent("""
    import torch.nn as nn

    from models.layers import Unit


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 8, 3, padding=1)
            self.unit1 = Unit(8)
            self.unit2 = Unit(8)
            self.head = nn.Linear(8, 10)

        def forward(self, x):
            x = self.unit2(self.unit1(self.stem(x)))
            return self.head(x.mean((2, 3)))


    def build():
        return Net()
""")
BUILD = "import models.net\n\n\ndef build():\n    return models.net.build()\n"


@pytest.fixture
def repo(tmp_path: Path):
    """tmp/repo with models/{__init__,layers,net}.py and a build.py at its root; net.pt beside."""
    r = tmp_path / "repo"
    (r / "models").mkdir(parents=True)
    (r / "models" / "__init__.py").write_text("")
    (r / "models" / "layers.py").write_text(LAYERS)
    (r / "models" / "net.py").write_text(NET)
    (r / "build.py").write_text(BUILD)
    sys.path.insert(0, str(r))
    try:
        import importlib
        _forget_models()
        importlib.invalidate_caches()
        net = importlib.import_module("models.net").build()
        torch.save({"state_dict": net.state_dict()}, tmp_path / "net.pt")
    finally:
        sys.path.remove(str(r))
        _forget_models()
    saved = list(sys.path)
    yield r
    sys.path[:] = saved  # the loader keeps a code root on sys.path for the process's lifetime
    _forget_models()


def _forget_models() -> None:
    for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
        del sys.modules[name]


def _blocks(args: list[str], capsys) -> str:
    assert cli_main(["blocks", *args, "--input-shape", "1,8,8"]) == 0
    return capsys.readouterr().out


def test_model_def_file_form_uses_the_repository_models_package(repo, capsys):
    out = _blocks([str(repo.parent / "net.pt"), "--model-def", f"{repo / 'build.py'}:build"],
                  capsys)
    assert "unit1" in out and "unit2" in out and "conv" in out
    assert sys.modules["models"].__file__.startswith(str(repo.resolve()))


def test_model_def_module_form_with_code_root(repo, capsys):
    out = _blocks([str(repo.parent / "net.pt"), "--model-def", "models.net:build",
                   "--code-root", str(repo)], capsys)
    assert "unit1" in out and "unit2" in out


def test_model_def_module_form_without_code_root_is_one_line(repo, capsys):
    assert cli_main(["blocks", str(repo.parent / "net.pt"), "--model-def", "models.net:build",
                     "--input-shape", "1,8,8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("landscape: error:") and "--code-root" in err[0]


def test_repository_on_pythonpath_breaks_no_toolkit_import(repo, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(repo))
    cmd = [sys.executable, "-m", "landscape"]
    r = subprocess.run([*cmd, "--help"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cmd, "blocks", str(tmp_path / "net.pt"), "--model-def",
                        "models.net:build", "--input-shape", "1,8,8"],
                       env=env, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "unit1" in r.stdout
    # A registry model still loads: the toolkit's zoo is not the user's `models`.
    from landscape_models import create

    from landscape.loading import checkpoint
    checkpoint.save(tmp_path / "res.pt", create("resnet_tiny", num_classes=10, in_chans=1,
                                                 img_size=28), dataset="fashion-mnist")
    r = subprocess.run([*cmd, "blocks", str(tmp_path / "res.pt")], env=env, cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_no_common_research_package_name_is_installed():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    packages = cfg["options"]["packages"].split()
    tops = {p.split(".")[0] for p in packages}
    assert tops == {"landscape", "landscape_models"}
    assert not tops & {"models", "utils", "data", "ops", "configs"}
    # Every subpackage of landscape/ is listed (the list is explicit because of the mapping).
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "landscape").rglob("__init__.py")}
    assert found == {p for p in packages if p.startswith("landscape.") or p == "landscape"}


# ---- issue #30 (e): the package-root rule for file-form --model-def -------------------------

REL = textwrap.dedent("""
    from models.layers import Unit as AbsoluteUnit

    from .layers import Unit
    from .net import Net

    assert Unit is AbsoluteUnit  # one module, however it is imported


    def build():
        return Net()
""")


def test_package_root_rule():
    from landscape.loading.user_model import package_root
    assert package_root(ROOT / "landscape" / "commands" / "blocks.py") == (
        ROOT, "landscape.commands.blocks")
    assert package_root(ROOT / "landscape" / "commands" / "__init__.py") == (
        ROOT, "landscape.commands")
    assert package_root(ROOT / "tests" / "conftest.py") == (ROOT / "tests", "conftest")


def test_builder_file_inside_the_models_package_loads_from_the_repository_root(
        repo, monkeypatch, capsys):
    (repo / "models" / "rel.py").write_text(REL)
    monkeypatch.chdir(repo)
    out = _blocks(["../net.pt", "--model-def", "models/rel.py:build"], capsys)
    assert "unit1" in out and "unit2" in out
    assert sys.modules["models.rel"].__file__ == str((repo / "models" / "rel.py").resolve())
    assert sys.modules["models"].__file__.startswith(str(repo.resolve()))


def test_builder_file_inside_the_package_from_a_fresh_shell(repo):
    """As a user runs it: from the repository root, no --code-root, no PYTHONPATH."""
    (repo / "models" / "rel.py").write_text(REL)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-m", "landscape", "blocks", "../net.pt", "--model-def",
                        "models/rel.py:build", "--input-shape", "1,8,8"], env=env, cwd=repo,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "unit1" in r.stdout and "unit2" in r.stdout


def test_failed_import_of_a_package_file_names_code_root(repo, monkeypatch, capsys):
    (repo / "models" / "broken.py").write_text("from helpers.blocks import Thing\n")
    monkeypatch.chdir(repo)
    assert cli_main(["blocks", "../net.pt", "--model-def", "models/broken.py:build",
                     "--input-shape", "1,8,8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("landscape: error:"), err
    assert "as models.broken" in err[0] and "No module named 'helpers'" in err[0]
    assert "--code-root" in err[0]
