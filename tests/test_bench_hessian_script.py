"""benchmarks/hessian.py's peer section on a tiny model: ours always; each peer when installed,
and a peer that is missing is said and skipped (the test extra does not install them)."""
from __future__ import annotations

import builtins
import importlib.util
from pathlib import Path

import numpy as np
import torch
from cases import TinyCNN

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_hessian",
                                                  ROOT / "benchmarks" / "hessian.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_missing_peer_is_said_and_skipped(monkeypatch, capsys):
    B = _bench()
    real_import = builtins.__import__

    def no_peers(name, *a, **k):
        if name.split(".")[0] in ("hessian_eigenthings", "curvlinops"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_peers)
    versions = B.peer_versions()
    assert versions == {"eigenthings": None, "curvlinops": None}
    B.print_peers_case(16, {"peers": versions, "ours_first_run": {
        "time_s": 1.0, "hvps": 3, "mode": None, "rel_err": [0.0]}, "per_product_s": {
        "gradient": 1.0}}, 1)
    out = capsys.readouterr().out
    assert "eigenthings: NOT INSTALLED, skipped" in out
    assert "curvlinops: NOT INSTALLED, skipped" in out


def test_peers_case_on_a_tiny_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))  # restored afterwards
    B = _bench()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = TinyCNN().eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 1, 8, 8, generator=g), torch.randint(0, 3, (12,), generator=g)
    from landscape.curvature import dense_hessian
    ev = np.linalg.eigvalsh(dense_hessian(m.double(), x.double(), y).numpy())
    m.float()
    ref = ev[np.argsort(-np.abs(ev))][:5]
    versions = B.peer_versions()  # the installed peers run too (none in the test extra)
    rows = B.bench_peers_case(m, x, y, ref, 1, versions, tmp_path / "cache")
    B.print_peers_case(12, rows, 1)
    assert rows["ours"]["residual_rule"] and max(rows["ours"]["rel_err"]) < 1e-3
    assert rows["ours"]["mode"]["source"] in ("rule", "cache")
    for peer, v in versions.items():
        if v is not None and peer in rows:
            assert rows[peer]["agreement"] < 1e-2 and rows[peer]["hvps"] > 0
    assert "floor, seconds per product" in capsys.readouterr().out
