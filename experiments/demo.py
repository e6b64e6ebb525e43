"""The main job (`make demo`): train the demo checkpoints if missing, then analyze them together.

Prints a plan first (what will be trained and analysed, what is already cached, an estimated
time on a 2-core CPU), then writes ``OUT/report.html`` (self-contained) with ``summary.json``,
the raw results and the figures. ``OUT`` defaults to ``runs/demo`` (not tracked by git), so a
demo run never changes the committed reference figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from demo_checkpoints import (  # noqa: E402
    DEMO_MODELS,
    RECIPES,
    demo_checkpoints,
    train_demo,
    variant_cards,
)

ANALYSES = ("hessian", "surface", "fourier", "variance", "robustness", "cka", "lesion")
#: Fallbacks for the plan when no measured time is at hand: seconds per checkpoint for
#: ``analyze --budget quick`` and per training epoch on the full Fashion-MNIST training set, on a
#: 2-core CPU (rough). Measured times replace them: the committed reference run's per-result
#: compute times (``figures/demo/summary.json``) and the training times in the manifest.
ANALYZE_SECONDS = {"resnet_tiny": 420.0, "vit_tiny": 480.0, "alternet_tiny": 480.0}
EPOCH_SECONDS = {"resnet_tiny": 15.0, "vit_tiny": 25.0, "alternet_tiny": 25.0}
REFERENCE = ROOT / "figures" / "demo" / "summary.json"


def _arch(path: Path) -> str:
    return next(m for m in sorted(DEMO_MODELS, key=len, reverse=True) if path.stem.startswith(m))


def measured_seconds(reference: Path = REFERENCE) -> dict[str, dict[str, float]]:
    """Mean compute seconds per analysis for each architecture in a reference run's summary
    (its ``timing`` section); empty when the file or the section is missing."""
    try:
        summary = json.loads(reference.read_text())
    except (OSError, ValueError):
        return {}
    per = (summary.get("timing") or {}).get("per_model") or {}
    acc: dict[str, dict[str, list[float]]] = {}
    for m in summary.get("models") or []:
        for analysis, t in (per.get(m.get("label")) or {}).items():
            if isinstance(t.get("seconds"), (int, float)):
                acc.setdefault(m.get("arch"), {}).setdefault(analysis, []).append(t["seconds"])
    return {a: {k: sum(v) / len(v) for k, v in d.items()} for a, d in acc.items()}


def _epoch_seconds(manifest: dict) -> dict[str, float]:
    """Seconds per epoch per architecture from the manifest's training times, else fallbacks."""
    out = dict(EPOCH_SECONDS)
    for e in manifest.get("checkpoints", {}).values():
        if e.get("train_seconds") and e.get("recipe", {}).get("epochs"):
            out[e["model"]] = e["train_seconds"] / e["recipe"]["epochs"]
    return out


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _cached(out: Path, ckpt: Path) -> set[str]:
    """Analyses of ``ckpt`` already finished in ``out/raw`` (by its SHA-256 prefix)."""
    from landscape.store.provenance import file_sha256
    if not ckpt.is_file() or not (out / "raw").is_dir():
        return set()
    sha = file_sha256(ckpt)[:10]
    done: set[str] = set()
    for d in (out / "raw").glob(f"*-{sha}"):
        t = d / "timings.json"
        if t.is_file():
            done |= set(json.loads(t.read_text()))
    return done


def plan(ckpt_dir: Path, out: Path, budget: str,
         reference: Path = REFERENCE) -> tuple[str, float]:
    """The plan as text and its estimated seconds (training of missing checkpoints, then the
    analyses not found in ``out``'s cache)."""
    man_path = ckpt_dir / "manifest.json"
    manifest = json.loads(man_path.read_text()) if man_path.is_file() else {"checkpoints": {}}
    epoch_s, measured = _epoch_seconds(manifest), measured_seconds(reference)
    paths = demo_checkpoints(ckpt_dir)
    lines, total = [], 0.0
    missing = [p for p in paths if not p.is_file()]
    if missing:
        lines.append(f"train {len(missing)} of {len(paths)} demo checkpoints into {ckpt_dir}:")
        for p in missing:
            arch = _arch(p)
            est = RECIPES[arch]["epochs"] * epoch_s[arch]
            total += est
            lines.append(f"  {p.stem:18s} {RECIPES[arch]['epochs']} epochs   about {_minutes(est)}")
    else:
        lines.append(f"all {len(paths)} demo checkpoints present in {ckpt_dir} (no training)")
    scale = 1.0 if budget == "quick" else 10.0
    lines.append(f"analyze {len(paths)} checkpoints (budget {budget}): {', '.join(ANALYSES)}")
    for i, p in enumerate(paths):
        arch = _arch(p)
        done = _cached(out, p)
        left = [a for a in ANALYSES if a not in done]
        ref = measured.get(arch, {})
        est = scale * sum(ref.get(a, ANALYZE_SECONDS[arch] / len(ANALYSES)) for a in left)
        total += est
        state = "cached" if not left else f"about {_minutes(est)}" + (
            f" ({len(done)} of {len(ANALYSES)} cached)" if done else "")
        lines.append(f"  model {i + 1} of {len(paths)}: {p.stem:18s} {state}")
    from demo_checkpoints import VARIANT_SEEDS, VARIANTS, checkpoint_name
    extra = [(v, s) for v in VARIANTS for s in VARIANT_SEEDS[v]
             if (ckpt_dir / f"{checkpoint_name(v, s)}.pt").is_file()]
    if extra:
        est = sum(scale * sum(measured.get(VARIANTS[v]["model"], {}).get(
            a, ANALYZE_SECONDS[VARIANTS[v]["model"]] / len(ANALYSES)) for a in VARIANTS[v]["only"])
            for v, _s in extra)
        total += est
        lines.append(f"  {len(extra)} extra checkpoints (data size: hessian only; matched "
                     f"training: evaluation only) about {_minutes(est)}")
    source = (f"analysis times measured by the reference run {reference}"
              if measured else "rough analysis times")
    lines.append(f"estimated time on a 2-core CPU: about {_minutes(total)} ({source}; more "
                 "when the machine is busy)")
    lines.append(f"report: {out / 'report.html'}")
    return "\n".join(lines), total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoints", default=str(ROOT / "checkpoints" / "demo"),
                    help="folder of the demo checkpoints (trained here if missing)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "demo"),
                    help="report folder (default runs/demo, not tracked by git)")
    ap.add_argument("--budget", default="quick", help="analysis budget preset")
    args = ap.parse_args()
    ckpts, out = Path(args.checkpoints), Path(args.out)
    text, _ = plan(ckpts, out, args.budget)
    print("make demo: plan\n" + text, flush=True)
    t0 = time.perf_counter()
    train_demo(ckpts)
    print(f"demo checkpoints ready in {time.perf_counter() - t0:.0f} s", flush=True)
    from landscape.cli import main as cli
    cards = out.parent / f"{out.name}-variants.toml"
    extra = variant_cards(ckpts, cards)
    print(f"{len(extra)} extra checkpoints (data size, matched training) from {cards}"
          if extra else "no extra checkpoints: the data-size and matched-training rows will "
          "say not measured", flush=True)
    rc = cli(["analyze", *[str(p) for p in demo_checkpoints(ckpts)], "--data", "fashion-mnist",
              "--budget", args.budget, "--no-adapt", "--out", str(out),
              *(["--models", str(cards)] if extra else [])])
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; report: {out / 'report.html'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
