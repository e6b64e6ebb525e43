"""Train the demo trio (tiny ResNet, ViT, AlterNet) on Fashion-MNIST on the CPU.

Each model is trained by the same recipe through ``landscape.train`` and written to
``OUT/<name>.pt`` (plus its run folder with per-epoch checkpoints for trajectory analyses).
Finished models are reused; an interrupted run resumes at the last finished epoch.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import models  # noqa: E402
from landscape import checkpoint  # noqa: E402
from landscape.data import load_dataset  # noqa: E402
from landscape.train import TrainConfig, evaluate, train  # noqa: E402

DEMO_MODELS = ("resnet_tiny", "vit_tiny", "alternet_tiny")
# The recipe: fixed so the three models see the same images in the same order.
RECIPE = dict(train_samples=None, epochs=4, batch_size=128, lr=2e-3, weight_decay=5e-2,
              warmup_epochs=0.5, seed=0)


def train_demo(out: Path, names=DEMO_MODELS, recipe: dict = RECIPE, progress: bool = True) -> dict:
    """Train (or reuse) each demo model; return {name: {"test_acc", "test_loss", "seconds"}}."""
    tr = load_dataset("fashion-mnist", "train", subset=recipe["train_samples"], seed=recipe["seed"])
    te = load_dataset("fashion-mnist", "test")
    results = {}
    for name in names:
        final = out / f"{name}.pt"
        t0 = time.perf_counter()
        if final.exists():
            model, info = checkpoint.load(final)
            metrics = info.metrics or {}
            if "test_acc" not in metrics:
                metrics = {f"test_{k}": v for k, v in evaluate(model, te).items()}
        else:
            torch.manual_seed(recipe["seed"])
            model = models.create(name, num_classes=10, in_chans=1, img_size=28)
            cfg = TrainConfig(epochs=recipe["epochs"], batch_size=recipe["batch_size"],
                              lr=recipe["lr"], weight_decay=recipe["weight_decay"],
                              warmup_epochs=recipe["warmup_epochs"], seed=recipe["seed"],
                              flip=True, pad=2)
            metrics = train(model, tr, te, cfg, out / "runs" / name, progress=progress,
                            info={"recipe": recipe})
            shutil.copyfile(out / "runs" / name / "model.pt", final)
        n_params = sum(p.numel() for p in model.parameters())
        results[name] = {"test_acc": metrics["test_acc"], "test_loss": metrics["test_loss"],
                         "params": n_params, "seconds": time.perf_counter() - t0}
        print(f"{name:14s} params={n_params:7d} test_acc={metrics['test_acc']:.4f} "
              f"test_nll={metrics['test_loss']:.4f} ({results[name]['seconds']:.0f} s)", flush=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "checkpoints" / "demo"), help="checkpoint folder")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args()
    train_demo(Path(args.out), progress=not args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
