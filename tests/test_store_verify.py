"""The result store verifies what it reuses (issue #32): every stored result's record holds its
identity and the SHA-256 of each file; a byte flip, two swapped planes, a file copied from
another model's folder or a record of an older version is recomputed with one line saying why,
never returned as a result. Also: one computation for two concurrent writers of one result
(per-result lock, unique temporary names), a read-only folder, a torn timings cache."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from landscape.curvature.results import DensityResult
from landscape.errors import LandscapeError
from landscape.store.provenance import atomic_write, read_cache_json, read_json, write_json
from landscape.store.resume import ResultCache, tree_sha256

SHA_A, SHA_B = "a" * 64, "b" * 64


def _flip(path: Path, n: int = 64, back: int = 200) -> None:
    """Invert ``n`` bytes ``back`` bytes before the end of ``path`` (or from its start)."""
    data = bytearray(path.read_bytes())
    start = max(0, len(data) - back)
    for i in range(start, min(start + n, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _bytes_cache(folder: Path, sha: str, name: str, payload: bytes, calls: list,
                 log: list | None = None) -> tuple[bytes, bool]:
    cache = ResultCache(folder, checkpoint_sha256=sha, log=None if log is None else log.append)

    def compute(p: Path) -> bytes:
        calls.append(name)
        p.write_bytes(payload)
        return payload

    return cache.get(name, {"plane": name}, compute, Path.read_bytes)


def test_record_holds_identity_name_and_checksums(tmp_path):
    calls: list = []
    assert _bytes_cache(tmp_path, SHA_A, "r.h5", b"RESULT", calls) == (b"RESULT", False)
    rec = read_json(tmp_path / "r.h5.key.json")
    assert rec["settings"] == {"plane": "r.h5"} and rec["checkpoint_sha256"] == SHA_A
    assert rec["result"] == "r.h5"
    assert rec["sha256"] == {"r.h5": tree_sha256(tmp_path / "r.h5")}
    assert _bytes_cache(tmp_path, SHA_A, "r.h5", b"RESULT", calls) == (b"RESULT", True)
    assert calls == ["r.h5"]


def _warnings(capsys) -> list[str]:
    """The warning lines on stderr (said even in a quiet run)."""
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def test_byte_flip_is_recomputed_with_one_line(tmp_path, capsys):
    calls: list = []
    log: list = []
    payload = bytes(range(256)) * 4
    _bytes_cache(tmp_path, SHA_A, "r.h5", payload, calls)
    _flip(tmp_path / "r.h5")
    assert _bytes_cache(tmp_path, SHA_A, "r.h5", payload, calls, log) == (payload, False)
    assert calls == ["r.h5", "r.h5"] and log == []
    err = _warnings(capsys)
    assert len(err) == 1 and err[0].startswith("landscape: warning: ")
    assert "does not match the checksum" in err[0] and "recomputing" in err[0]
    assert (tmp_path / "r.h5").read_bytes() == payload


def test_swapped_planes_are_recomputed_not_exchanged(tmp_path, capsys):
    calls: list = []
    log: list = []
    _bytes_cache(tmp_path, SHA_A, "surface.h5", b"PLANE0", calls)
    _bytes_cache(tmp_path, SHA_A, "surface_p1.h5", b"PLANE1", calls)
    a, b = tmp_path / "surface.h5", tmp_path / "surface_p1.h5"
    a.rename(tmp_path / "x")
    b.rename(a)
    (tmp_path / "x").rename(b)
    assert _bytes_cache(tmp_path, SHA_A, "surface.h5", b"PLANE0", calls, log)[0] == b"PLANE0"
    assert _bytes_cache(tmp_path, SHA_A, "surface_p1.h5", b"PLANE1", calls, log)[0] == b"PLANE1"
    assert calls.count("surface.h5") == 2 and calls.count("surface_p1.h5") == 2
    err = _warnings(capsys)
    assert len(err) == 2 and all("the file does not match the checksum" in ln for ln in err)
    # files and records swapped together: the identity (its plane) differs
    for suffix in ("", ".key.json"):
        (tmp_path / f"surface.h5{suffix}").rename(tmp_path / "x")
        (tmp_path / f"surface_p1.h5{suffix}").rename(tmp_path / f"surface.h5{suffix}")
        (tmp_path / "x").rename(tmp_path / f"surface_p1.h5{suffix}")
    log.clear()
    assert _bytes_cache(tmp_path, SHA_A, "surface.h5", b"PLANE0", calls, log)[0] == b"PLANE0"
    assert "other settings" in log[0] and "plane" in log[0]


@pytest.mark.parametrize("with_record", [False, True], ids=["file only", "file and record"])
def test_file_copied_from_another_models_folder(with_record, tmp_path, capsys):
    vit, resnet = tmp_path / "vit-aaaa", tmp_path / "resnet-bbbb"
    calls: list = []
    log: list = []
    _bytes_cache(vit, SHA_A, "spectrum.h5", b"VIT NUMBERS", calls)
    _bytes_cache(resnet, SHA_B, "spectrum.h5", b"RESNET NUMBERS", calls)
    for name in ("spectrum.h5", *(("spectrum.h5.key.json",) if with_record else ())):
        (resnet / name).write_bytes((vit / name).read_bytes())
    res, reused = _bytes_cache(resnet, SHA_B, "spectrum.h5", b"RESNET NUMBERS", calls, log)
    assert res == b"RESNET NUMBERS" and not reused
    err = _warnings(capsys)
    assert len(err) == 1 and err[0].startswith("landscape: warning: ") and log == []
    assert ("checkpoint_sha256: bbbbbbbbbbbb -> aaaaaaaaaaaa" not in err[0]) and (
        ("checkpoint_sha256: aaaaaaaaaaaa -> bbbbbbbbbbbb" in err[0]
         and "another model's result" in err[0]) if with_record else
        "the file does not match the checksum" in err[0])


def test_record_of_an_older_version_without_checksums_is_recomputed(tmp_path, capsys):
    calls: list = []
    log: list = []
    _bytes_cache(tmp_path, SHA_A, "r.json", b"{}", calls)
    rec = read_json(tmp_path / "r.json.key.json")
    del rec["sha256"]
    write_json(tmp_path / "r.json.key.json", rec)
    assert _bytes_cache(tmp_path, SHA_A, "r.json", b"{}", calls, log)[1] is False
    assert "no checksums" in _warnings(capsys)[0]


def test_damaged_density_file_is_recomputed(tmp_path, capsys):
    """density.h5 (a companion of curvature.json) with bytes flipped: recomputed, never read."""
    rng = np.random.default_rng(0)
    good = DensityResult(grid=np.linspace(0, 1, 50), density=rng.random(50),
                         nodes=rng.random((2, 5)), weights=np.full((2, 5), 0.2), sigma=0.1,
                         n_products=10, seed=0, steps=5)
    calls: list = []
    log: list = []

    def get():
        cache = ResultCache(tmp_path, checkpoint_sha256=SHA_A, log=log.append)

        def compute(p: Path):
            calls.append(1)
            good.save(p.with_name("density.h5"))
            write_json(p, {"trace": 1.0})
            return read_json(p)

        def load(p: Path):
            return DensityResult.load(p.with_name("density.h5")), read_json(p)

        return cache.get("curvature.json", {"probes": 2}, compute, load,
                         companions=("density.h5",))

    get()
    (dens, _), reused = get()
    assert reused and np.array_equal(dens.density, good.density)
    _flip(tmp_path / "density.h5", back=400)
    assert get()[1] is False and len(calls) == 2
    assert "its companion density.h5 does not match the checksum" in _warnings(capsys)[-1]
    np.testing.assert_array_equal(DensityResult.load(tmp_path / "density.h5").density,
                                  good.density)


# ------------------------------------------------------------------ a real surface file
def _tiny_surface(path: Path) -> None:
    from landscape.surface import compute_surface
    from landscape.surface import directions as D
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(8, 1, 2, 2)
    y = torch.randint(0, 3, (8,))
    dirs = [D.random_direction(net, 0, norm="layer", exclude=()),
            D.random_direction(net, 1, norm="layer", exclude=())]
    compute_surface(net, dirs, x, y, np.linspace(-1, 1, 3), np.linspace(-1, 1, 3), path,
                    split="train", batch_size=8, points_per_pass=3, workers=1, progress=False)


def test_load_surface_refuses_a_file_damaged_after_it_was_written(tmp_path):
    from landscape.surface import load_surface
    p = tmp_path / "surface.h5"
    _tiny_surface(p)
    good = load_surface(p).arrays["train_loss"].copy()
    assert np.isfinite(good).all()
    _flip(p, n=64, back=120)  # the values are the last bytes of the file
    with pytest.raises(LandscapeError, match="fail their checksum") as e:
        load_surface(p)
    assert "\n" not in str(e.value)


def test_store_recomputes_a_flipped_surface_through_load_surface(tmp_path, capsys):
    from landscape.surface import load_surface
    calls: list = []

    def get():
        cache = ResultCache(tmp_path, checkpoint_sha256=SHA_A)

        def compute(p: Path):
            calls.append(1)
            _tiny_surface(p)
            return load_surface(p)

        return cache.get("surface.h5", {"seeds": [0, 1]}, compute, load_surface)

    first, _ = get()
    _flip(tmp_path / "surface.h5", n=64, back=120)
    again, reused = get()
    assert not reused and len(calls) == 2
    np.testing.assert_array_equal(again.arrays["train_loss"], first.arrays["train_loss"])
    assert "surface.h5: the file does not match the checksum" in capsys.readouterr().err


# ------------------------------------------------------------------ concurrency
WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from landscape.store.resume import ResultCache
    folder, marker = Path(sys.argv[1]), Path(sys.argv[2])
    def compute(p):
        with open(marker, "a") as f:
            f.write("computed\\n")
        time.sleep(1.5)
        p.write_text("THE RESULT")
        return "THE RESULT"
    res, reused = ResultCache(folder, checkpoint_sha256="a" * 64).get(
        "spectrum.h5", {"k": 5}, compute, Path.read_text, resumable=True)
    print(res, reused)
""")


def test_two_processes_on_one_raw_folder_compute_once(tmp_path):
    """The second run waits for the first one's lock and reuses its finished result (before:
    FileNotFoundError on spectrum.h5.pending.json -> key.json after doing the work again)."""
    raw, marker = tmp_path / "raw", tmp_path / "computed.txt"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(raw), str(marker)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted(o.strip() for o, _ in outs) == ["THE RESULT False", "THE RESULT True"]
    assert marker.read_text() == "computed\n"
    assert not list(raw.glob("*.pending.json")) and not list(raw.glob("*.tmp"))
    assert any("waiting for another landscape run" in e for _, e in outs)


def test_atomic_write_uses_unique_temporary_names(tmp_path):
    p = tmp_path / "timings.json"
    with atomic_write(p) as t1, atomic_write(p) as t2:
        assert t1 != t2 and t1.parent == t2.parent == tmp_path
        assert t1.name != "timings.json.tmp"
        t1.write_text("1")
        t2.write_text("2")
    assert p.read_text() == "1" and sorted(x.name for x in tmp_path.iterdir()) == [p.name]


def test_threads_writing_one_json_never_fail(tmp_path):
    p = tmp_path / "timings.json"
    errors: list = []

    def work(i: int) -> None:
        try:
            for j in range(50):
                write_json(p, {"writer": i, "j": j})
        except Exception as e:  # noqa: BLE001 - collected for the assert
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and read_json(p)["j"] == 49
    assert [x.name for x in tmp_path.iterdir()] == ["timings.json"]


# ------------------------------------------------------------------ permissions, torn caches
def test_read_only_folder_reuses_but_refuses_to_recompute(tmp_path, monkeypatch):
    calls: list = []
    _bytes_cache(tmp_path, SHA_A, "a.json", b"A", calls)
    import os
    real_open = os.open

    def read_only_open(path, flags, *args):
        if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only_open)
    assert _bytes_cache(tmp_path, SHA_A, "a.json", b"A", calls) == (b"A", True)
    with pytest.raises(LandscapeError) as e:
        _bytes_cache(tmp_path, SHA_A, "b.json", b"B", calls)
    msg = str(e.value)
    assert "cannot recompute b.json" in msg and "permission denied" in msg and "\n" not in msg
    assert calls == ["a.json"]


@pytest.mark.parametrize("text", ['{"hessian": 1.', "", "[1, 2]", "\x00\x01"])
def test_torn_timings_cache_is_ignored_with_a_warning(text, tmp_path, capsys):
    p = tmp_path / "timings.json"
    p.write_text(text)
    assert read_cache_json(p, {}, "timings cache") == {}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning: ignoring" in err[0] and str(p) in err[0]
    assert read_cache_json(tmp_path / "missing.json", {}) == {}
    write_json(p, {"hessian": 1.5})
    assert read_cache_json(p, {}) == {"hessian": 1.5}
    assert json.loads(p.read_text()) == {"hessian": 1.5}


# ------------------------------------------------------------------ checksums inside the files
def test_density_file_carries_its_checksum(tmp_path):
    rng = np.random.default_rng(1)
    d = DensityResult(grid=np.linspace(0, 1, 40), density=rng.random(40), nodes=rng.random((1, 4)),
                      weights=np.full((1, 4), 0.25), sigma=0.1, n_products=4, seed=0, steps=4)
    p = tmp_path / "density.h5"
    d.save(p)
    np.testing.assert_array_equal(DensityResult.load(p).density, d.density)
    import h5py
    with h5py.File(p, "r+") as f:  # a value changed behind the writer's back
        f["density"][3] = 7e20
    with pytest.raises(LandscapeError, match="do not match the checksum stored in it"):
        DensityResult.load(p)


def test_json_result_carries_its_checksum(tmp_path):
    from landscape.features.lesion import LesionResult
    r = LesionResult(names=["b1", "b2"], kinds=["conv", "msa"], stages=[1, 2], depth=[0.5, 1.0],
                     accuracy=[0.5, 0.25], loss=[1.0, 2.0], baseline_accuracy=0.75,
                     baseline_loss=0.5, n_images=4, correct=[[1, 1, 1, 0], [1, 0, 1, 0]])
    p = tmp_path / "lesion.json"
    r.save(p)
    assert "data_sha256" in read_json(p)
    assert LesionResult.load(p) == r
    doc = read_json(p)
    doc["baseline_accuracy"] = 0.5  # a number changed behind the writer's back
    p.write_text(json.dumps(doc))
    with pytest.raises(LandscapeError, match="do not match the checksum stored in it"):
        LesionResult.load(p)
