"""Bad inputs through the real CLI entry point (``landscape.cli.main``, in-process): each gives
exit code 2, exactly one stderr line ``landscape: error: ...``, no traceback, and leaves the
output folder as it was (or absent). Also: the output-folder lock with two real processes, the
stale-lock takeover, no numpy "All-NaN slice" warning, and no torch import for --help/errors.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
import warnings
import zlib
from pathlib import Path

import h5py
import pytest
import torch
from cases import needs_fashion_mnist

from landscape import validate
from landscape.cli import main
from landscape.errors import LandscapeError
from landscape.loading import checkpoint
from landscape.store.provenance import LOCK_NAME, lock_output_dir, release_locks

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- helpers
def snapshot(folder: Path) -> dict[str, str] | None:
    """Relative path -> SHA-256 of every file under ``folder`` (None when it does not exist)."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_bad(argv: list[str], capsys, out: Path | None = None) -> str:
    """Run the CLI on ARGV; assert the one-line exit-2 contract and an unchanged ``out``.
    Returns the error line."""
    before = snapshot(out) if out is not None else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main([str(a) for a in argv])
    o, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("landscape: error:"), err
    assert "Traceback" not in err + o
    assert not [w for w in caught if "All-NaN" in str(w.message)]
    if out is not None:
        assert snapshot(out) == before
    return lines[0]


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    """A tiny trained-format checkpoint (ok.pt) and copies with a NaN and an inf weight."""
    import landscape_models as models

    from landscape.data import dataset_spec

    d = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    m = models.create("resnet_tiny", num_classes=10, in_chans=1, img_size=28)
    sp = dataset_spec("fashion-mnist")
    kw = dict(dataset="fashion-mnist", mean=list(sp.mean), std=list(sp.std), seed=0)
    checkpoint.save(d / "ok.pt", m, **kw)
    for name, value in (("nan.pt", float("nan")), ("inf.pt", float("inf"))):
        bad = models.create("resnet_tiny", num_classes=10, in_chans=1, img_size=28)
        bad.load_state_dict(m.state_dict())
        with torch.no_grad():
            list(bad.parameters())[-1].view(-1)[0] = value
        checkpoint.save(d / name, bad, **kw)
    return d


# ----------------------------------------------------------------------------- numeric options
BAD_OPTIONS = [
    ["surface", "{ok}", "--batch-size", "-5"],
    ["surface", "{ok}", "--points-per-pass", "-3"],
    ["surface", "{ok}", "--grid", "-1:inf:3"],
    ["surface", "{ok}", "--grid", "-1:1:0"],
    ["surface", "{ok}", "--ygrid", "nan:1:3"],
    ["surface", "{ok}", "--workers", "-1"],
    ["surface", "{ok}", "--seed", "-1"],
    ["surface", "{ok}", "--samples", "ten"],
    ["surface", "{ok}", "--wd", "inf"],
    ["train", "--model", "resnet_tiny", "--data", "fashion-mnist", "--batch-size", "0"],
    ["train", "--model", "resnet_tiny", "--data", "fashion-mnist", "--subset", "1.5"],
    ["train", "--model", "resnet_tiny", "--data", "fashion-mnist", "--subset", "0"],
    ["train", "--model", "resnet_tiny", "--data", "fashion-mnist", "--epochs", "0"],
    ["train", "--model", "resnet_tiny", "--data", "fashion-mnist", "--lr", "nan"],
    ["train", "--model", "resnet_tiny", "--data", "fashion-mnist", "--label-smoothing", "1"],
    ["hessian", "{ok}", "--top-k", "0"],
    ["hessian", "{ok}", "--batch-size", "0"],
    ["hessian", "{ok}", "--subset", "1.5"],
    ["hessian", "{ok}", "--tol", "-1e-3"],
    ["hessian", "{ok}", "--probes", "0"],
    ["fourier", "{ok}", "--eps", "0"],
    ["robustness", "{ok}", "--freqs", "0", "2"],
    ["robustness", "{ok}", "--width", "0"],
    ["alternet-search", "--epochs", "0"],
    ["alternet-search", "--subset", "-3"],
    ["analyze", "{ok}", "--seed", "-2"],
    ["srface", "{ok}"],  # a typo of the command
    ["surface", "{ok}", "--no-such-option"],
    ["hessian", "{ok}", "--which", "XX"],
]


@pytest.mark.parametrize("argv", BAD_OPTIONS, ids=lambda a: " ".join(a[:1] + a[2:]))
def test_bad_option_values(argv, ckpt_dir, tmp_path, capsys):
    out = tmp_path / "out"
    line = run_bad([a.format(ok=ckpt_dir / "ok.pt") for a in argv] + ["--out", str(out)],
                   capsys, out)
    assert not out.exists()
    assert "--help" in line  # argparse errors point at the command's help


def test_argparse_types_share_the_rules():
    from landscape.commands import argtypes as C
    assert C.positive_int("3") == 3 and C.nonneg_int("0") == 0
    assert C.subset_arg("3000") == 3000 and isinstance(C.subset_arg("3000"), int)
    assert C.subset_arg("0.5") == 0.5 and C.subset_arg("10%") == pytest.approx(0.1)
    assert C.subset_arg("1.0") == 1.0 and isinstance(C.subset_arg("1.0"), float)
    assert C.grid_spec("-1:1:21") == "-1:1:21" and C.fraction("1") == 1.0
    assert validate.grid_spec("-2:3:5") == (-2.0, 3.0, 5)
    import argparse
    for f, bad in [(C.positive_int, "0"), (C.positive_int, "1.5"), (C.finite_float, "inf"),
                   (C.finite_float, "nan"), (C.fraction, "0"), (C.fraction, "1.01"),
                   (C.grid_spec, "-inf:1:3"), (C.grid_spec, "1:-1:3"), (C.grid_spec, "0:1"),
                   (C.subset_arg, "1.5"), (C.subset_arg, "-1"), (C.seed_int, "-1")]:
        with pytest.raises(argparse.ArgumentTypeError):
            f(bad)
    # the library's grid parser applies the same rule
    from landscape.surface import parse_grid
    with pytest.raises(LandscapeError, match="finite"):
        parse_grid("-1:inf:3")


# ----------------------------------------------------------------------------- devices
@pytest.mark.parametrize("cmd", ["surface", "hessian", "train", "fourier"])
@pytest.mark.parametrize("device", ["cuda", "cuda:7", "foo", "meta"])
def test_missing_or_unknown_device(cmd, device, ckpt_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on any machine
    out = tmp_path / "out"
    argv = ([cmd, "--model", "resnet_tiny", "--data", "fashion-mnist"] if cmd == "train"
            else [cmd, str(ckpt_dir / "ok.pt")])
    line = run_bad(argv + ["--device", device, "--out", str(out)], capsys, out)
    assert repr(device) in line and not out.exists()


# ----------------------------------------------------------------------------- output folder
@pytest.mark.parametrize("cmd", ["surface", "hessian", "train", "fourier", "analyze"])
def test_out_under_or_at_a_file(cmd, ckpt_dir, tmp_path, capsys):
    f = tmp_path / "somefile"
    f.write_text("keep me")
    argv = ([cmd, "--model", "resnet_tiny", "--data", "fashion-mnist"] if cmd == "train"
            else [cmd, str(ckpt_dir / "ok.pt")])
    for out in (f / "sub", f):
        line = run_bad(argv + ["--out", str(out)], capsys)
        assert str(f) in line
    assert f.read_text() == "keep me"


# ----------------------------------------------------------------------------- non-finite weights
@pytest.mark.parametrize("bad", ["nan.pt", "inf.pt"])
@pytest.mark.parametrize("cmd", ["surface", "hessian", "fourier", "variance", "cka", "analyze"])
def test_nonfinite_checkpoint_refused_by_every_command(cmd, bad, ckpt_dir, tmp_path, capsys):
    out = tmp_path / "out"
    line = run_bad([cmd, str(ckpt_dir / bad), "--out", str(out)], capsys, out)
    assert "NaN or infinite" in line and "--allow-nonfinite" in line and not out.exists()


def test_nonfinite_init_and_target_refused(ckpt_dir, tmp_path, capsys):
    out = tmp_path / "out"
    line = run_bad(["train", "--model", "resnet_tiny", "--data", "fashion-mnist", "--init",
                    str(ckpt_dir / "nan.pt"), "--out", str(out)], capsys, out)
    assert "nan.pt" in line and "NaN" in line


def test_check_finite_lists_the_tensors(ckpt_dir):
    checkpoint.check_finite_file(ckpt_dir / "ok.pt")
    with pytest.raises(LandscapeError, match=r"1 tensor\(s\): .*\(1 of "):
        checkpoint.check_finite_file(ckpt_dir / "nan.pt")
    sd = {"a": torch.tensor([1.0, float("-inf"), float("nan")]), "n": torch.tensor([3])}
    with pytest.raises(LandscapeError, match=r"a \(2 of 3\)"):
        checkpoint.check_finite(sd, "x")


@needs_fashion_mnist
def test_nonfinite_allowed_runs_without_all_nan_warning(ckpt_dir, tmp_path, capsys):
    out = tmp_path / "s"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(["surface", str(ckpt_dir / "nan.pt"), "--allow-nonfinite", "--samples", "16",
                   "--grid", "-1:1:2", "--batch-size", "16", "--points-per-pass", "1",
                   "--workers", "1", "--channels-last", "off", "--out", str(out), "--quiet"])
    o = capsys.readouterr().out
    assert rc == 0 and "no finite loss" in o
    assert not [w for w in caught if "All-NaN" in str(w.message)]


# ----------------------------------------------------------------------------- images
def _png(width: int, height: int, pixels: bytes | None = None) -> bytes:
    """A grayscale PNG; without ``pixels`` only the header claims the size (a 'bomb')."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
    raw = pixels if pixels is not None else b"\0" * 64
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def test_decompression_bomb_png_in_imagefolder(tmp_path, capsys):
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "ok.png").write_bytes(_png(2, 2, b"\0\1\2\0\3\4"))
    (root / "b" / "bomb.png").write_bytes(_png(30000, 30000))  # 9e8 pixels in 100 bytes
    out = tmp_path / "out"
    line = run_bad(["train", "--model", "resnet_tiny", "--data", "imagefolder", "--data-root",
                    str(root), "--out", str(out)], capsys, out)
    assert "bomb.png" in line and "decompression bomb" in line and not out.exists()


# ----------------------------------------------------------------------------- resume files
HESSIAN_ARGS = ["--samples", "64", "--batch-size", "8", "--batches", "2", "--top-k", "1",
                "--max-iter", "8", "--mode", "double_backward", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def spectrum_file(ckpt_dir, tmp_path_factory) -> Path:
    """A finished spectrum.h5, made by a run whose --out held a stale lock of a dead process
    (so this also tests the takeover through the CLI)."""
    if not os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") \
            and not os.environ.get("LANDSCAPE_DATA"):
        pytest.skip("Fashion-MNIST not installed")
    out = tmp_path_factory.mktemp("hessian")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_NAME).write_text(f"{dead.pid} {socket.gethostname()}\n")
    assert main(["hessian", str(ckpt_dir / "ok.pt"), "--out", str(out), *HESSIAN_ARGS]) == 0
    assert not (out / LOCK_NAME).exists()  # taken over, then released at the end
    return out / "spectrum.h5"


def _corrupt_spectrum(kind: str, good: Path, dest: Path) -> None:
    data = good.read_bytes()
    if kind == "truncated":
        dest.write_bytes(data[: len(data) // 3])
    elif kind == "random":
        dest.write_bytes(os.urandom(len(data)))
    elif kind == "empty":
        dest.write_bytes(b"")
    elif kind in ("no-index", "wrong-shape"):
        shutil.copy(good, dest)
        with h5py.File(dest, "a") as f:
            if kind == "no-index":
                del f["sample_indices"]
            else:
                del f["eigenvalues"]
                f.create_dataset("eigenvalues", data=[[1.0, 2.0, 3.0]])
    else:
        raise ValueError(kind)


@pytest.mark.parametrize("kind", ["truncated", "random", "empty", "no-index", "wrong-shape"])
def test_hessian_resume_over_a_bad_spectrum_file(kind, spectrum_file, ckpt_dir, tmp_path,
                                                  capsys):
    out = tmp_path / "out"
    out.mkdir()
    _corrupt_spectrum(kind, spectrum_file, out / "spectrum.h5")
    line = run_bad(["hessian", str(ckpt_dir / "ok.pt"), "--out", str(out), *HESSIAN_ARGS],
                   capsys, out)
    assert "spectrum.h5" in line and "delete it or use another --out" in line


@needs_fashion_mnist
@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", "\x00\xff\xfe"])
def test_train_resume_over_a_corrupt_config(text, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_bytes(text.encode("latin-1"))
    (out / "last.pt").write_bytes(b"whatever")
    line = run_bad(["train", "--model", "resnet_tiny", "--data", "fashion-mnist", "--subset",
                    "32", "--test-samples", "16", "--epochs", "1", "--out", str(out),
                    "--quiet"], capsys, out)
    assert "config.json" in line and "delete it or use another --out" in line


def test_resume_guard_names_file_reason_and_remedy(tmp_path):
    from landscape.store.provenance import read_json, read_resume_file
    p = tmp_path / "c.json"
    p.write_text("{oops")
    with pytest.raises(LandscapeError) as e:
        read_resume_file(p, read_json, "training config")
    msg = str(e.value)
    assert str(p) in msg and "JSONDecodeError" in msg and msg.endswith("another --out")
    assert "\n" not in msg


# ----------------------------------------------------------------------------- output lock
def test_lock_is_exclusive_reentrant_and_released(tmp_path):
    lock = lock_output_dir(tmp_path)
    assert lock.read_text().split()[0] == str(os.getpid())
    assert lock_output_dir(tmp_path) == lock  # same process: fine
    release_locks()
    assert not lock.exists()


def _wait_for_lock(folder: Path, proc: subprocess.Popen) -> None:
    """Poll the lock file's contents until it names ``proc`` (fail if proc exits first)."""
    lock = folder / LOCK_NAME
    while True:
        if proc.poll() is not None:
            pytest.fail(f"writer exited ({proc.returncode}) before taking the lock: "
                        f"{proc.stderr.read() if proc.stderr else ''}")
        try:
            if lock.read_text().split()[0] == str(proc.pid):
                return
        except (OSError, IndexError):
            pass
        time.sleep(0.02)


@needs_fashion_mnist
def test_second_writer_is_refused_and_stale_lock_taken_over(ckpt_dir, tmp_path, capsys):
    """Process A (a real `landscape hessian`) holds --out; B gets one line naming A's PID and
    changes nothing; after A is killed its stale lock is taken over."""
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    a = subprocess.Popen([sys.executable, "-m", "landscape", "hessian", str(ckpt_dir / "ok.pt"),
                          "--out", str(out), "--samples", "4000", "--batch-size", "8",
                          "--batches", "400", "--top-k", "1", "--device", "cpu", "--quiet"],
                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    try:
        _wait_for_lock(out, a)
        os.kill(a.pid, signal.SIGSTOP)  # A holds the lock and cannot write while B runs
        line = run_bad(["hessian", str(ckpt_dir / "ok.pt"), "--out", str(out), *HESSIAN_ARGS],
                       capsys, out)
        assert f"PID {a.pid}" in line and "another --out" in line
    finally:
        a.kill()
        a.wait()
        a.stderr.close()
    assert (out / LOCK_NAME).read_text().split()[0] == str(a.pid)  # stale now
    lock = lock_output_dir(out)
    assert lock.read_text().split()[0] == str(os.getpid())
    release_locks()
    assert not lock.exists()


def test_live_lock_in_another_process_refused(tmp_path):
    """A lock held by a live process is refused even when its takeover file is absent."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    try:
        (tmp_path / LOCK_NAME).write_text(f"{proc.pid} {socket.gethostname()}\n")
        with pytest.raises(LandscapeError, match=f"PID {proc.pid}"):
            lock_output_dir(tmp_path)
        (tmp_path / LOCK_NAME).write_text(f"{proc.pid} some-other-host\n")
        with pytest.raises(LandscapeError, match="some-other-host"):
            lock_output_dir(tmp_path)
    finally:
        proc.stdin.close()
        proc.wait()


# ----------------------------------------------------------------------------- lazy imports
def test_help_version_and_argument_errors_do_not_import_torch():
    code = textwrap.dedent("""
        import contextlib, io, json, sys
        from landscape.cli import main
        res = {}
        for argv in (["--help"], ["--version"], ["surface", "--help"], ["analyze", "--help"],
                     ["train", "--help"], ["fourier", "--help"], ["alternet-search", "--help"],
                     ["srface"], ["surface", "x.pt", "--batch-size", "-5"],
                     ["train", "--model", "m", "--data", "d", "--out", "o", "--subset", "1.5"]):
            with contextlib.redirect_stdout(io.StringIO()), \\
                    contextlib.redirect_stderr(io.StringIO()):
                try:
                    rc = main(argv)
                except SystemExit as e:
                    rc = e.code
            res[" ".join(argv)] = [rc, [m for m in ("torch", "numpy", "h5py", "matplotlib",
                                                    "scipy") if m in sys.modules]]
        print(json.dumps(res))
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    for argv, (rc, heavy) in res.items():
        assert heavy == [], (argv, heavy)
        assert rc == (0 if "--help" in argv or "--version" in argv else 2), argv


def test_help_shows_each_default_once_and_plainly(capsys):
    import re
    for cmd in ["train", "hessian", "surface", "fourier", "robustness", "variance", "cka",
                "lesion", "analyze", "alternet-search"]:
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "default: None" not in text and "np.float64" not in text, cmd
        assert not re.search(r"\(default[^()]*\)\s*\(default", text), cmd


@pytest.mark.parametrize("text", ["{bad", '{"kind": "variance", "unknown_field": 1}'])
def test_features_resume_over_a_corrupt_result(text, ckpt_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "variance_ok.json").write_text(text)
    line = run_bad(["variance", str(ckpt_dir / "ok.pt"), "--out", str(out)], capsys, out)
    assert "variance_ok.json" in line and "--force" in line


@needs_fashion_mnist
@pytest.mark.parametrize("kind", ["random", "truncated-hdf5"])
def test_surface_resume_over_a_corrupt_directions_file(kind, ckpt_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    if kind == "random":
        (out / "directions.h5").write_bytes(os.urandom(3000))
    else:
        with h5py.File(tmp_path / "full.h5", "w") as f:
            f.attrs["identity"] = "{}"
            f.create_dataset("x", data=list(range(5000)))
        (out / "directions.h5").write_bytes((tmp_path / "full.h5").read_bytes()[:3000])
    line = run_bad(["surface", str(ckpt_dir / "ok.pt"), "--samples", "16", "--grid", "-1:1:2",
                    "--out", str(out), "--quiet"], capsys, out)
    assert "directions.h5" in line and "delete it or use another --out" in line


def test_surface_file_with_garbage_identity(tmp_path):
    import numpy as np

    from landscape import surface as S
    from landscape.surface.store import FORMAT_VERSION
    p = tmp_path / "surface.h5"
    with h5py.File(p, "w") as f:
        f.attrs["format"] = S.FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["identity"] = "{not json"
    before = p.read_bytes()
    with pytest.raises(LandscapeError, match="surface.h5.*JSONDecodeError.*delete it"):
        S.SurfaceFile(p).open({}, np.linspace(-1, 1, 3), None, "test", {}, {})
    assert p.read_bytes() == before


def test_analyze_under_torchrun_is_one_line(tmp_path, capsys, monkeypatch):
    from landscape.cli import main
    monkeypatch.setenv("WORLD_SIZE", "2")
    rc = main(["analyze", str(tmp_path / "x.pt"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("landscape: error:")
    assert "torchrun" in err[0] and not (tmp_path / "out").exists()
