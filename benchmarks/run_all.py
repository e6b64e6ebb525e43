"""Run every benchmark in this folder in turn (``make bench``); pass --quick for a short run."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    rc = 0
    for script in sorted(HERE.glob("*.py")):
        if script.name == Path(__file__).name or script.name.startswith("_"):
            continue
        print(f"=== {script.name}", flush=True)
        rc |= subprocess.call([sys.executable, str(script), *sys.argv[1:]])
    return rc


if __name__ == "__main__":
    sys.exit(main())
