"""GPU benchmark (issue 14, part 3): run it whenever a CUDA device is available.

* surface: ViT-Ti (the paper's CIFAR-100 model, random weights) on ``--images`` random 32x32 RGB
  images (10,000 by default; random pixels are fine for timing), a ``--grid`` x ``--grid`` plane
  (21x21), ``compute_surface`` end to end in three precisions: fp32 (TF32 off), TF32 matmuls and
  convolutions, and bf16 autocast. Reports seconds, seconds per point and the largest loss
  difference from fp32 (relative to max(1, |loss|)); target: ViT-Ti 21x21 on 10,000 images in
  under 5 minutes on one H100-class GPU.
* spectrum: ``benchmarks/hessian.py --device cuda`` (ours against today's peers,
  hessian-eigenthings and curvlinops, and against pyhessian at its matched tolerance; Hutch++ and
  SLQ at equal products; the paper's workload), on the GPU the product mode and the probe block
  are measured inside the work (the CPU rules do not apply there) and printed.

Without a CUDA device it says so and exits 0 (``make bench`` runs it on every machine);
``--device cpu --smoke`` runs a tiny version on the CPU to check the script itself.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRECISIONS = ("fp32", "tf32", "bf16")


def set_precision(name: str) -> torch.autocast | None:
    """Apply ``name``'s TF32 flags; the autocast context for bf16 (None otherwise)."""
    tf32 = name == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if name == "bf16":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return None


def bench_surface(args: argparse.Namespace, device: torch.device) -> dict:
    import landscape_models as models

    from landscape import surface as S
    from landscape.surface import directions as D
    torch.manual_seed(0)
    model = models.create(args.model, num_classes=100, in_chans=3, img_size=32).to(device).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.images, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 100, (args.images,), generator=g).to(device)
    d1, d2 = D.random_direction(model, 1), D.random_direction(model, 2)
    xs = np.linspace(-1, 1, args.grid)
    out: dict = {"model": args.model, "images": args.images, "grid": args.grid,
                 "points": args.grid ** 2}
    precisions = PRECISIONS if device.type == "cuda" else ("fp32",)
    with tempfile.TemporaryDirectory() as tmp:
        for name in precisions:
            ctx = set_precision(name) if device.type == "cuda" else None
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            if ctx is None:
                r = S.compute_surface(model, [d1, d2], x, y, xs, xs, Path(tmp) / f"{name}.h5",
                                      progress=False)
            else:
                with ctx:
                    r = S.compute_surface(model, [d1, d2], x, y, xs, xs,
                                          Path(tmp) / f"{name}.h5", progress=False)
            if device.type == "cuda":
                torch.cuda.synchronize()
            secs = time.perf_counter() - t
            loss = np.asarray(r.arrays["test_loss"], dtype=np.float64)
            out[name] = {"seconds": secs, "seconds_per_point": secs / loss.size, "loss": loss}
    ref = out["fp32"]["loss"]
    for name in precisions:
        loss = out[name].pop("loss")
        diff = np.abs(loss - ref) / np.maximum(1, np.abs(ref))
        out[name]["max_rel_loss_diff"] = float(np.max(diff))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="torch device (default cuda)")
    ap.add_argument("--model", default="vit_ti", help="registry name (default vit_ti)")
    ap.add_argument("--images", type=int, default=10_000, help="random images (default 10000)")
    ap.add_argument("--grid", type=int, default=21, help="points per axis (default 21)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (checks the script)")
    ap.add_argument("--no-spectrum", action="store_true", help="skip benchmarks/hessian.py")
    ap.add_argument("--quick", action="store_true", help="accepted for run_all.py")
    ap.add_argument("--json", default=str(ROOT / "runs" / "bench" / "gpu.json"))
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu: no CUDA device here; the GPU benchmark did not run")
        return 0
    if args.smoke:
        args.images, args.grid = 8, 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"gpu: {name}, torch {torch.__version__}")
    res = {"device": name, "surface": bench_surface(args, device)}
    s = res["surface"]
    for p in PRECISIONS:
        if p in s:
            print(f"  surface {s['model']} {s['grid']}x{s['grid']} on {s['images']} images, {p}: "
                  f"{s[p]['seconds']:.1f} s ({s[p]['seconds_per_point']:.3f} s/point), max "
                  f"loss difference from fp32 {s[p]['max_rel_loss_diff']:.1e}")
    if device.type == "cuda" and not args.smoke:
        best = min(s[p]["seconds"] for p in PRECISIONS)
        print(f"  target: < 300 s for the best precision: {best:.1f} s "
              f"({'met' if best < 300 else 'missed'})")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1))
    if not args.no_spectrum and not args.smoke:
        return subprocess.call([sys.executable, str(ROOT / "benchmarks" / "hessian.py"),
                                "--device", str(device)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
