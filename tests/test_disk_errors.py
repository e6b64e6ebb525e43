"""A full disk or a refused write (issue #32): every writer (JSON, HDF5, torch.save, figures)
ends in one line ``landscape: error: no space left on device writing PATH; needs ...``, exit 2,
the previous good file intact, no temporary file left and no HDF5 handle open (h5py closing a
file after a failed flush at interpreter exit segfaulted). Writers are patched to raise
ENOSPC; one end-to-end run fills a real 150 KiB tmpfs where this machine can mount one, else a
file-size limit (RLIMIT_FSIZE) refuses the writes the same way."""
from __future__ import annotations

import errno
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from cases import needs_fashion_mnist

from landscape.cli import main
from landscape.curvature.results import DensityResult
from landscape.errors import LandscapeError
from landscape.loading import checkpoint
from landscape.store.provenance import atomic_h5, atomic_write, disk_error, write_json


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


def _only_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _open_h5_files() -> int:
    return len(h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE))


def _one_line(e: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(e.value)
    assert "\n" not in msg and f"writing {path}" in msg, msg
    return msg


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path):
    p = tmp_path / "summary.json"
    p.write_text("old")
    with pytest.raises(LandscapeError) as e, atomic_write(p, size=5 << 20) as tmp:
        tmp.write_text("half")
        _enospc()
    msg = _one_line(e, p)
    assert msg.startswith("no space left on device writing")
    assert f"needs free space on {tmp_path} (the file is 5.0 MiB)" in msg
    assert p.read_text() == "old" and _only_entries(tmp_path) == ["summary.json"]


def test_write_json_on_a_full_disk(tmp_path, monkeypatch):
    p = tmp_path / "config.json"
    write_json(p, {"v": 1})
    monkeypatch.setattr(Path, "write_text", _enospc)
    with pytest.raises(LandscapeError) as e:
        write_json(p, {"v": 2})
    assert "no space left on device" in _one_line(e, p)
    monkeypatch.undo()
    assert p.read_text().strip().startswith("{") and '"v": 1' in p.read_text()
    assert _only_entries(tmp_path) == ["config.json"]


def test_hdf5_writer_on_a_full_disk_leaves_no_open_handle(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    d = DensityResult(grid=np.linspace(0, 1, 20), density=rng.random(20), nodes=rng.random((1, 3)),
                      weights=np.full((1, 3), 1 / 3), sigma=0.1, n_products=3, seed=0, steps=3)
    p = tmp_path / "density.h5"
    d.save(p)
    before = p.read_bytes()
    n_open = _open_h5_files()
    monkeypatch.setattr(Path, "write_bytes", _enospc)
    with pytest.raises(LandscapeError) as e:
        DensityResult(**{**d.__dict__, "sigma": 0.2}).save(p)
    assert "no space left on device" in _one_line(e, p)
    monkeypatch.undo()
    assert p.read_bytes() == before and _only_entries(tmp_path) == ["density.h5"]
    assert _open_h5_files() == n_open
    assert DensityResult.load(p).sigma == 0.1


def test_hdf5_error_inside_the_block_closes_the_file(tmp_path):
    p = tmp_path / "x.h5"
    n_open = _open_h5_files()
    with pytest.raises(RuntimeError, match="boom"), atomic_h5(p) as f:
        f.create_dataset("a", data=np.arange(3))
        raise RuntimeError("boom")
    assert not p.exists() and _open_h5_files() == n_open and _only_entries(tmp_path) == []


def test_torch_save_on_a_full_disk(tmp_path, monkeypatch):
    import landscape_models as models
    m = models.create("resnet_tiny", num_classes=10, in_chans=1, img_size=28)
    p = tmp_path / "model.pt"
    checkpoint.save(p, m, dataset="fashion-mnist")
    before = hashlib.sha256(p.read_bytes()).hexdigest()

    def failing_save(*_a, **_k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter "
                           "failed writing file data/3: file write failed")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(LandscapeError) as e:
        checkpoint.save(p, m, dataset="fashion-mnist")
    assert "no space left on device" in _one_line(e, p)
    assert hashlib.sha256(p.read_bytes()).hexdigest() == before
    assert _only_entries(tmp_path) == ["model.pt"]


def test_figure_on_a_full_disk(tmp_path, monkeypatch):
    from landscape.reporting.plots.figure import new_figure, save
    fig = new_figure((2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    monkeypatch.setattr(Path, "write_bytes", _enospc)
    with pytest.raises(LandscapeError) as e:
        save(fig, tmp_path / "curve")
    assert "no space left on device" in _one_line(e, tmp_path / "curve.png")
    assert _only_entries(tmp_path) == []


@pytest.mark.parametrize("err,reason,need", [
    (PermissionError(errno.EACCES, "Permission denied"), "permission denied", "write access to"),
    (OSError(errno.EROFS, "Read-only file system"), "read-only file system", "write access to"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk quota exceeded", "free space on"),
    (OSError("Can't write data (file write failed: time = x, filename = 'a.h5', file "
             "descriptor = 3, errno = 28, error message = 'No space left on device')"),
     "no space left on device", "free space on"),
])
def test_disk_error_lines(err, reason, need, tmp_path):
    line = str(disk_error(err, tmp_path / "a.h5"))
    assert line.startswith(f"{reason} writing {tmp_path / 'a.h5'}; needs {need}")
    assert disk_error(OSError(errno.ENOENT, "No such file"), tmp_path) is None
    assert disk_error(ValueError("x"), tmp_path) is None


def test_permission_denied_creating_the_temporary_file(tmp_path, monkeypatch):
    import tempfile

    def refuse(*_a, **_k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(LandscapeError) as e:
        write_json(tmp_path / "a.json", {})
    assert _one_line(e, tmp_path / "a.json").startswith("permission denied writing")


def test_cli_catches_an_unwrapped_disk_error(monkeypatch, capsys, tmp_path):
    """A writer outside the atomic helpers (any OSError with ENOSPC) still ends in one line."""
    def full(_args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.bin"))

    parser_args = ["blocks", str(tmp_path / "ignored.pt")]
    import landscape.cli as cli
    real = cli.build_parser

    def build():
        p = real()
        p._subparsers._group_actions[0].choices["blocks"].set_defaults(func=full)
        return p

    monkeypatch.setattr(cli, "build_parser", build)
    assert main(parser_args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"landscape: error: no space left on device writing {tmp_path / 'x.bin'}; "
                   f"needs free space on {tmp_path}; earlier finished files are kept and the "
                   "same command continues from them"]


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def ok_ckpt(tmp_path_factory) -> Path:
    import landscape_models as models

    from landscape.data import dataset_spec
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    m = models.create("resnet_tiny", num_classes=10, in_chans=1, img_size=28)
    sp = dataset_spec("fashion-mnist")
    checkpoint.save(d / "ok.pt", m, dataset="fashion-mnist", mean=list(sp.mean),
                    std=list(sp.std), seed=0)
    return d / "ok.pt"


@needs_fashion_mnist
def test_fourier_with_a_full_disk_keeps_the_previous_results(ok_ckpt, tmp_path, monkeypatch,
                                                              capsys):
    out = tmp_path / "out"
    argv = ["fourier", str(ok_ckpt), "--samples", "16", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    monkeypatch.setattr(Path, "write_bytes", _enospc)
    monkeypatch.setattr(Path, "write_text", _enospc)
    assert main([*argv, "--force"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("landscape: error: no space left on device "
                                               f"writing {out}/"), err
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                       capture_output=True)
    return r.returncode == 0


@needs_fashion_mnist
def test_surface_on_a_really_full_disk_is_one_line_not_a_segfault(ok_ckpt, tmp_path):
    out = tmp_path / "full"
    out.mkdir()
    cmd = [sys.executable, "-m", "landscape.cli", "surface", str(ok_ckpt), "--grid", "-1:1:3",
           "--ygrid", "-1:1:3", "--samples", "16", "--out", str(out / "s"), "--quiet"]
    if _can_mount_tmpfs():  # a real 150 KiB file system
        script = (f"mount -t tmpfs -o size=150k tmpfs {out} && "
                  + " ".join(f"'{c}'" for c in cmd))
        r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                           timeout=300)
    else:  # a 150 KiB file-size limit: writes beyond it fail with EFBIG, as a full disk would
        import resource

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (150 * 1024, 150 * 1024))

        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("landscape: error: "), r.stderr[-2000:]
    assert " writing " in lines[0] and "Traceback" not in r.stderr


def test_cli_closes_hdf5_files_left_open():
    import io

    from landscape.cli import _close_hdf5_files
    f = h5py.File(io.BytesIO(), "w")
    f.create_dataset("a", data=[1])
    assert f.id.valid
    _close_hdf5_files()
    assert not f.id.valid and _open_h5_files() == 0


# ------------------------------------------------------------------ the minor items
def _one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("landscape: error: "), err
    return err[0]


@needs_fashion_mnist
@pytest.mark.parametrize("cmd", [
    ["hessian", "--top-k", "1", "--batches", "1", "--batch-size", "8", "--samples", "16",
     "--quiet"],
    ["surface", "--grid", "-1:1:2", "--samples", "8", "--quiet", "--no-plot"],
], ids=["hessian", "surface"])
def test_run_folder_stands_for_its_model_pt(cmd, ok_ckpt, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(ok_ckpt, run / "model.pt")
    assert main([cmd[0], str(run), *cmd[1:], "--out", str(tmp_path / "out")]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([cmd[0], str(empty), *cmd[1:], "--out", str(tmp_path / "out2")]) == 2
    assert "folder without model.pt" in _one_error_line(capsys)


def test_blocks_refuses_a_nan_checkpoint(tmp_path, capsys):
    import landscape_models as models
    m = models.create("resnet_tiny", num_classes=10, in_chans=1, img_size=28)
    with torch.no_grad():
        next(m.parameters()).view(-1)[0] = float("nan")
    p = checkpoint.save(tmp_path / "nan.pt", m, dataset="fashion-mnist")
    assert main(["blocks", str(p), "--input-shape", "1,28,28"]) == 2
    assert "NaN or infinite" in _one_error_line(capsys)


def test_bare_pickle_is_one_line_without_torch_warning(tmp_path, capsys):
    import pickle
    p = tmp_path / "bare.pt"
    p.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    assert main(["blocks", str(p), "--input-shape", "1,28,28"]) == 2
    assert "not a readable PyTorch checkpoint" in _one_error_line(capsys)
