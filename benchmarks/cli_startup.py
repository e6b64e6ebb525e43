"""CLI start-up time: ``landscape --help`` and one bad-argument error, median of 5 runs each.

Each run is a fresh ``python -m landscape ...`` process started from the repository root (so
this checkout's package is the one imported); the time is wall time from start to exit,
interpreter start-up included. Also reports whether each command imported torch (one more
process that runs the CLI in-process and inspects ``sys.modules``).
Prints one line per command: ``cli_startup: <what> median <s> s (runs: ...)``.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "landscape --help": ["--help"],
    "landscape surface --batch-size -5 (argument error)": ["surface", "x.pt", "--batch-size", "-5"],
    "landscape srface (typo)": ["srface"],
}

_PROBE = ("import sys, contextlib, io\n"
          "from landscape.cli import main\n"
          "with contextlib.redirect_stdout(io.StringIO()), "
          "contextlib.redirect_stderr(io.StringIO()):\n"
          "    try:\n        main({argv!r})\n    except SystemExit:\n        pass\n"
          "print('torch' in sys.modules)\n")


def time_once(argv: list[str], root: Path = ROOT) -> float:
    """Wall seconds of one ``python -m landscape ARGV`` process started in ``root``."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "landscape", *argv], cwd=root,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t


def imports_torch(argv: list[str], root: Path = ROOT) -> bool:
    """Whether running the CLI on ARGV imports torch."""
    r = subprocess.run([sys.executable, "-c", _PROBE.format(argv=argv)], cwd=root,
                       capture_output=True, text=True, check=False)
    return r.stdout.strip().endswith("True")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per command (default 5)")
    ap.add_argument("--quick", action="store_true", help="accepted for run_all.py; same runs")
    ap.add_argument("--root", type=Path, default=ROOT,
                    help="checkout whose CLI is timed (default: this one; e.g. an older one to "
                         "compare)")
    args = ap.parse_args()
    for what, argv in CASES.items():
        times = [time_once(argv, args.root) for _ in range(args.runs)]
        print(f"cli_startup: {what}: median {statistics.median(times):.3f} s over {args.runs} runs "
              f"(min {min(times):.3f}, max {max(times):.3f}); imports torch: "
              f"{imports_torch(argv, args.root)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
