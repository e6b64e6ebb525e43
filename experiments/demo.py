"""The main job (`make demo`): train the demo trio if missing, then analyze them side by side.

Writes ``figures/demo/report.html`` (self-contained) with ``summary.json`` and the raw results.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from demo_checkpoints import DEMO_MODELS, train_demo  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoints", default=str(ROOT / "checkpoints" / "demo"),
                    help="folder of the demo checkpoints (trained here if missing)")
    ap.add_argument("--out", default=str(ROOT / "figures" / "demo"), help="report folder")
    ap.add_argument("--budget", default="quick", help="analysis budget preset")
    args = ap.parse_args()
    t0 = time.perf_counter()
    ckpts = Path(args.checkpoints)
    train_demo(ckpts)
    print(f"demo checkpoints ready in {time.perf_counter() - t0:.0f} s", flush=True)
    from landscape.cli import main as cli
    rc = cli(["analyze", *[str(ckpts / f"{m}.pt") for m in DEMO_MODELS], "--data", "fashion-mnist",
              "--budget", args.budget, "--out", args.out])
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; report: {args.out}/report.html")
    return rc


if __name__ == "__main__":
    sys.exit(main())
