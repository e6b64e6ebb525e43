"""The result store (issue #24): atomic writes, no swallowed exceptions, companion files under
the computation's key (the torn ``density.h5`` case), interrupted computations continued."""
import json
from pathlib import Path

import pytest

from landscape.errors import LandscapeError
from landscape.store.provenance import atomic_write, read_json, write_json
from landscape.store.resume import ResultCache


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert p.read_text() == "old" and not tmp.exists()
    with atomic_write(p) as tmp:
        tmp.write_text("new")
    assert p.read_text() == "new"


def _density_cache(tmp_path: Path, calls: list, force: bool = False):
    cache = ResultCache(tmp_path, force=force, checkpoint_sha256="c" * 64)

    def compute(p: Path):
        calls.append(p.name)
        with atomic_write(p.with_name("density.h5")) as tmp:
            tmp.write_bytes(b"DENSITY")
        write_json(p, {"trace": 1.0})
        return read_json(p)

    def load(p: Path):
        if p.with_name("density.h5").read_bytes() != b"DENSITY":
            raise OSError("truncated file")
        return read_json(p)

    return cache.get("curvature.json", {"probes": 1}, compute, load,
                     companions=("density.h5",))


def test_torn_companion_file_is_named_in_one_line_and_recomputed(tmp_path, capsys):
    calls: list = []
    assert _density_cache(tmp_path, calls) == ({"trace": 1.0}, False)
    assert _density_cache(tmp_path, calls) == ({"trace": 1.0}, True)
    assert calls == ["curvature.json"]
    (tmp_path / "density.h5").write_bytes(b"DENS")  # torn: fails its recorded checksum
    assert _density_cache(tmp_path, calls) == ({"trace": 1.0}, False)
    err = capsys.readouterr().err.strip()
    assert "its companion density.h5 does not match the checksum" in err and "recomputing" in err
    assert "\n" not in err
    assert calls == ["curvature.json"] * 2
    (tmp_path / "density.h5").unlink()  # missing companion
    assert _density_cache(tmp_path, calls)[1] is False
    assert "its companion density.h5 is missing" in capsys.readouterr().err
    assert _density_cache(tmp_path, calls, force=True) == ({"trace": 1.0}, False)
    assert calls == ["curvature.json"] * 4


def test_verified_but_unreadable_result_is_one_line(tmp_path):
    calls: list = []
    _density_cache(tmp_path, calls)
    cache = ResultCache(tmp_path, checkpoint_sha256="c" * 64)

    def broken_reader(p: Path):
        raise OSError("reader bug")

    with pytest.raises(LandscapeError, match="cached result unreadable.*--force"):
        cache.get("curvature.json", {"probes": 1}, lambda p: None, broken_reader,
                  companions=("density.h5",))


def test_unreadable_key_is_one_line_and_recomputed(tmp_path, capsys):
    calls: list = []
    _density_cache(tmp_path, calls)
    (tmp_path / "curvature.json.key.json").write_text("{not json")
    assert _density_cache(tmp_path, calls)[1] is False
    assert "record curvature.json.key.json is unreadable" in capsys.readouterr().err
    assert calls == ["curvature.json"] * 2


def test_other_settings_recompute_and_stale_companions_go(tmp_path):
    cache = ResultCache(tmp_path, checkpoint_sha256="c" * 64)
    (tmp_path / "density.h5").write_text("stale")
    (tmp_path / "x.json").write_text("{}")
    write_json(tmp_path / "x.json.key.json", {"settings": {"probes": 9}})
    log: list = []
    cache.log = log.append
    res, reused = cache.get("x.json", {"probes": 0},
                            lambda p: write_json(p, {"v": 2}) or read_json(p), read_json,
                            companions=("density.h5",))
    assert res == {"v": 2} and not reused
    assert not (tmp_path / "density.h5").exists()  # the old settings' file is gone
    assert "probes: 9 -> 0" in log[0]


def test_interrupted_computation_is_continued_only_with_the_same_identity(tmp_path):
    cache = ResultCache(tmp_path, checkpoint_sha256="c" * 64)
    seen: list = []

    def interrupted(p: Path):
        p.write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get("s.h5", {"n": 1}, interrupted, Path.read_text, resumable=True)
    assert (tmp_path / "s.h5.pending.json").is_file()
    assert not (tmp_path / "s.h5.key.json").exists()

    def resume(p: Path):
        seen.append(p.read_text() if p.exists() else None)
        p.write_text("done")
        return "done"

    assert cache.get("s.h5", {"n": 1}, resume, Path.read_text, resumable=True) == ("done", False)
    assert seen == ["partial"]
    assert json.loads((tmp_path / "s.h5.key.json").read_text())["settings"] == {"n": 1}
    assert not (tmp_path / "s.h5.pending.json").exists()
    # Other settings: the partial file of the interrupted run is not continued.
    with pytest.raises(KeyboardInterrupt):
        cache.get("t.h5", {"n": 1}, interrupted, Path.read_text, resumable=True)
    assert cache.get("t.h5", {"n": 2}, resume, Path.read_text, resumable=True)[1] is False
    assert seen == ["partial", None]
