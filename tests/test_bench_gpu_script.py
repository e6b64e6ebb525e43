"""The prepared GPU benchmark script runs (tiny, on the CPU) and says so when there is no GPU."""
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_script_smoke_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu",
                        "--smoke", "--json", str(out)], capture_output=True, text=True,
                       timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    s = json.loads(out.read_text())["surface"]
    assert s["points"] == 4 and s["fp32"]["max_rel_loss_diff"] == 0.0
    if not torch.cuda.is_available():
        r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py")],
                           capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert r.returncode == 0 and "no CUDA device" in r.stdout
