"""Fig. 12 (left): the AlterNet build-up at demo scale, then a held-out comparison.

Runs ``landscape alternet-search`` with demo-scale settings: the all-conv pre-activation ResNet
``alternet_tiny`` pattern ``CC,CC,CC`` (the baseline CNN, widths 16-32-64) on a Fashion-MNIST
subset, validation NLL as the metric, 2 seeds per candidate; then the final AlterNet, the baseline
and ``vit_tiny`` (and ``resnet_tiny``) trained alike are tested on the test split. Writes
``OUT/search.json`` (every candidate), ``OUT/comparison.json``, ``OUT/buildup.{png,pdf}`` and
``OUT/comparison.{png,pdf}``; checkpoints go to ``--runs-dir``. Re-running resumes.

    python experiments/alternet_buildup.py --out figures/alternet        # demo (< 30 min, 2 cores)
    python experiments/alternet_buildup.py --quick --out /tmp/alt_quick  # smoke run (~1 min)

Extra arguments after ``--`` go to ``landscape alternet-search`` (e.g. ``-- --metric acc``).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from landscape.cli import main as cli_main

# Demo scale, sized by timing one candidate: the baseline CC,CC,CC on 2000 images x 3 epochs of
# batch 64 trained in 49 s on the 2-core CPU shared with other jobs (load ~5). With 4 epochs, the
# 4 candidates x 2 seeds (MSA candidates are up to ~1.4x slower) plus the comparison models
# (vit_tiny, resnet_tiny: ~3x cheaper per step) come to ~15 minutes, under 30 with contention.
DEMO = ["--subset", "2000", "--val-samples", "1000", "--epochs", "4", "--batch-size", "64",
        "--test-samples", "2000", "--seeds", "0", "1", "--compare", "vit_tiny", "resnet_tiny"]
QUICK = ["--subset", "128", "--val-samples", "64", "--epochs", "1", "--batch-size", "64",
         "--test-samples", "64", "--seeds", "0", "1", "--depths", "1", "1", "2", "--compare",
         "vit_tiny"]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="figures/alternet", help="output folder")
    p.add_argument("--runs-dir", default=None,
                   help="checkpoints (default checkpoints/alternet_buildup, "
                        "or OUT/runs with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="extra alternet-search arguments")
    args = p.parse_args(argv)
    runs = args.runs_dir or (f"{args.out}/runs" if args.quick else "checkpoints/alternet_buildup")
    rest = [a for a in args.rest if a != "--"]
    cmd = ["alternet-search", "--baseline", "resnet_tiny", "--data", "fashion-mnist",
           *(QUICK if args.quick else DEMO), "--out", args.out, "--runs-dir", runs, *rest]
    print("landscape " + " ".join(cmd), file=sys.stderr)
    return cli_main(cmd)


if __name__ == "__main__":
    sys.exit(main())
