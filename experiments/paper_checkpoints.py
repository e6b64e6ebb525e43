"""Checkpoints for SCALE=paper: the paper's released CIFAR-100 files where present, else trained.

For each of ResNet-50, ViT-Ti and AlterNet-50 this writes ``OUT/<name>.pt``: a symlink to the
released file (``resnet_50_cifar100_*.pth.tar``, ``vit_ti_cifar100_*.pth.tar``; AlterNet has no
release) when ``OUT`` or ``--released DIR`` holds it, otherwise the result of ``landscape train``
with the paper's recipe (configs/cifar100_{general,vit}.yaml of the paper's repository):
CNNs SGD lr 0.1, momentum 0.9, wd 5e-4, batch 128, 200 epochs (cosine here instead of the
multi-step schedule); ViTs AdamW lr 1.25e-4, wd 0.05, batch 96, 300 epochs, 5 warmup epochs,
label smoothing 0.1, mixup 0.8 and cutmix 0.8 (RandAugment, random erasing and stochastic depth
are not implemented). Meant for GPUs: `landscape train` picks the GPU automatically.
CIFAR-100 is downloaded (checksum verified) into the data cache when missing.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

RECIPES = {
    "resnet50": ["--optimizer", "sgd", "--lr", "0.1", "--weight-decay", "5e-4",
                 "--batch-size", "128", "--epochs", "200", "--warmup-epochs", "1"],
    "alternet50": ["--optimizer", "sgd", "--lr", "0.1", "--weight-decay", "5e-4",
                   "--batch-size", "128", "--epochs", "200", "--warmup-epochs", "1"],
    "vit_ti": ["--optimizer", "adamw", "--lr", "1.25e-4", "--weight-decay", "0.05",
               "--batch-size", "96", "--epochs", "300", "--warmup-epochs", "5",
               "--label-smoothing", "0.1", "--mixup", "0.8", "--cutmix", "0.8"],
}
RELEASED = {"resnet50": "resnet_50_cifar100_", "vit_ti": "vit_ti_cifar100_", "alternet50": None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="checkpoints/paper", help="folder for <name>.pt")
    ap.add_argument("--released", default=None, help="folder holding the released .pth.tar files")
    ap.add_argument("--epochs-scale", type=float, default=1.0,
                    help="multiply every recipe's epochs")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    search = [Path(args.released)] if args.released else []
    search.append(out)
    for name, recipe in RECIPES.items():
        target = out / f"{name}.pt"
        if target.exists():
            print(f"{name}: {target} exists")
            continue
        prefix = RELEASED[name]
        found = [f for d in search for f in sorted(d.glob(f"{prefix}*.pth.tar"))] if prefix else []
        if found:
            os.symlink(found[0].resolve(), target)
            print(f"{name}: using the released {found[0]}")
            continue
        recipe = list(recipe)
        i = recipe.index("--epochs")
        recipe[i + 1] = str(max(1, round(int(recipe[i + 1]) * args.epochs_scale)))
        run = out / "runs" / name
        cmd = [sys.executable, "-m", "landscape", "train", "--model", name, "--data", "cifar100",
               "--download", "--out", str(run), *recipe]
        print(" ".join(cmd), flush=True)
        subprocess.check_call(cmd)
        os.symlink((run / "model.pt").resolve(), target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
