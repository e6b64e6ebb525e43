"""Train the demo checkpoints (tiny ResNet, ViT, AlterNet; five seeds each) on Fashion-MNIST.

Each model is trained through ``landscape.train`` by the recipe in ``RECIPES`` and written to
``OUT/<name>_s<seed>.pt`` (its run folder with per-epoch checkpoints goes to ``OUT/runs/``, which
is not committed). ``OUT/manifest.json`` records, per checkpoint, its sha256, test accuracy and NLL
on the 10,000 Fashion-MNIST test images, the recipe and the training time. Finished checkpoints
are reused; an interrupted run resumes at the last finished epoch.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import landscape_models as models  # noqa: E402
import torch  # noqa: E402

from landscape.data import load_dataset  # noqa: E402
from landscape.loading import checkpoint  # noqa: E402
from landscape.train import TrainConfig, evaluate, train  # noqa: E402

DEMO_MODELS = ("resnet_tiny", "vit_tiny", "alternet_tiny")
DEMO_SEEDS = (0, 1, 2, 3, 4)
# One recipe per architecture (AdamW, linear warm-up + cosine, pad-2 crop + horizontal flip, full
# 60,000-image training set). The ViT needs the longest schedule: at 15 epochs it reached
# 86.3-86.9% (train loss 0.38, under-fitted); AlterNet at 8 epochs reached 90.5-91.0%.
_COMMON = dict(batch_size=128, weight_decay=5e-2, warmup_epochs=1.0, pad=2, flip=True)
RECIPES = {
    "resnet_tiny": dict(_COMMON, epochs=8, lr=2e-3),
    "alternet_tiny": dict(_COMMON, epochs=12, lr=2e-3),
    "vit_tiny": dict(_COMMON, epochs=30, lr=1e-3),
}
TARGET_ACC = {"resnet_tiny": 0.91, "alternet_tiny": 0.91, "vit_tiny": 0.87}

# Extra checkpoints for the claims the main fifteen cannot test (written beside them, tagged
# ``<variant>_s<seed>``). A variant is a model trained by its full-data recipe with one change:
# * data size (paper Fig. 4: more data suppresses the ViT's negative eigenvalues): the same recipe
#   (same epochs, hence fewer optimizer steps) on a seeded stratified 10% / 30% subset of the
#   60,000 training images (``data_fraction``; the subset seed is the training seed);
# * matched training (AlterNet vs ResNet): AlterNet with ResNet's recipe (8 epochs, same schedule).
# ``only``: what ``make demo`` analyzes of each (the data-size rows need the Hessian spectrum,
# the matched-training row only the test accuracy; every model entry gets its train/test NLL).
VARIANTS = {
    "vit_tiny_d10": dict(model="vit_tiny", data_fraction=0.1, only=["hessian"]),
    "vit_tiny_d30": dict(model="vit_tiny", data_fraction=0.3, only=["hessian"]),
    "resnet_tiny_d10": dict(model="resnet_tiny", data_fraction=0.1, only=["hessian"]),
    "resnet_tiny_d30": dict(model="resnet_tiny", data_fraction=0.3, only=["hessian"]),
    "alternet_tiny_e8": dict(model="alternet_tiny", recipe=dict(RECIPES["resnet_tiny"]),
                             only=[]),
}
VARIANT_SEEDS = {"vit_tiny_d10": (0, 1, 2), "vit_tiny_d30": (0, 1, 2),
                 "resnet_tiny_d10": (0, 1, 2), "resnet_tiny_d30": (0, 1, 2),
                 "alternet_tiny_e8": (0, 1, 2, 3, 4)}


def recipe_of(name: str) -> dict:
    """The training recipe of a demo model or variant (a variant's data fraction included)."""
    if name in RECIPES:
        return RECIPES[name]
    v = VARIANTS[name]
    r = dict(v.get("recipe") or RECIPES[v["model"]])
    if v.get("data_fraction"):
        r["data_fraction"] = v["data_fraction"]
    return r


def model_of(name: str) -> str:
    return VARIANTS[name]["model"] if name in VARIANTS else name


def finalize(src: Path, final: Path, tag: str, recipe: dict, test) -> dict:
    """Write ``final`` from the run's ``model.pt`` with the name and training recipe recorded in
    its ``extra`` (analyses read the weight decay from it); return its test metrics."""
    model, info = checkpoint.load(src)
    checkpoint.save(final, model, dataset=info.dataset, mean=info.mean, std=info.std,
                    seed=info.seed, epoch=info.epoch, metrics=info.metrics,
                    extra={"name": tag, "weight_decay": recipe["weight_decay"],
                           "augment": {"pad": recipe["pad"], "flip": recipe["flip"]},
                           "recipe": recipe})
    return evaluate(model, test)


def checkpoint_name(name: str, seed: int) -> str:
    return f"{name}_s{seed}"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _manifest(out: Path):
    """The manifest, read and rewritten under an exclusive lock (several trainers may share it)."""
    man_path = out / "manifest.json"
    with open(out / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = json.loads(man_path.read_text()) if man_path.exists() else {"checkpoints": {}}
        yield manifest
        man_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def train_demo(out: Path, names=DEMO_MODELS, seeds=DEMO_SEEDS, progress: bool = True,
               tags: Sequence[str] | None = None) -> dict:
    """Train (or reuse) every demo checkpoint (or only ``tags``); write and return the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    todo = [(n, s) for s in seeds for n in names]
    if tags:
        todo = [(n, s) for n, s in todo if checkpoint_name(n, s) in tags]
    tr = te = None
    for i, (name, seed) in enumerate(todo):
        tag = checkpoint_name(name, seed)
        with _manifest(out) as manifest:
            entry = manifest["checkpoints"].get(tag)
        final = out / f"{tag}.pt"
        if (final.exists() and entry and entry.get("sha256") == sha256(final)
                and entry.get("recipe") == recipe_of(name)):
            if checkpoint.load(final)[1].extra.get("name") == tag:
                continue
            te = te or load_dataset("fashion-mnist", "test")
            finalize(final, final, tag, recipe_of(name), te)  # record name and recipe
            with _manifest(out) as manifest:
                manifest["checkpoints"][tag]["sha256"] = sha256(final)
            continue
        if tr is None:
            tr = load_dataset("fashion-mnist", "train")
            te = load_dataset("fashion-mnist", "test")
        recipe = recipe_of(name)
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        model = models.create(model_of(name), num_classes=10, in_chans=1, img_size=28)
        data = tr
        if recipe.get("data_fraction"):
            data = load_dataset("fashion-mnist", "train", subset=recipe["data_fraction"],
                                seed=seed)
        cfg = TrainConfig(epochs=recipe["epochs"], batch_size=recipe["batch_size"],
                          lr=recipe["lr"], weight_decay=recipe["weight_decay"],
                          warmup_epochs=recipe["warmup_epochs"], seed=seed,
                          flip=recipe["flip"], pad=recipe["pad"], save_every=0)
        if progress:
            print(f"training {tag} ({i + 1} of {len(todo)})", file=sys.stderr, flush=True)
        train(model, data, None, cfg, out / "runs" / tag, progress=progress,
              info={"recipe": recipe, "run_name": tag})
        seconds = time.perf_counter() - t0
        ev = finalize(out / "runs" / tag / "model.pt", final, tag, recipe, te)
        entry = {
            "model": model_of(name), "seed": seed, "file": final.name, "sha256": sha256(final),
            "train_images": len(data), "train_nll": evaluate(model, data)["loss"],
            "params": sum(p.numel() for p in model.parameters()),
            "test_acc": ev["acc"], "test_nll": ev["loss"], "test_images": len(te),
            "train_seconds": round(seconds, 1), "threads": torch.get_num_threads(),
            "recipe": recipe, "torch": torch.__version__}
        with _manifest(out) as manifest:
            manifest["checkpoints"][tag] = entry
        print(f"{tag:18s} test_acc={ev['acc']:.4f} test_nll={ev['loss']:.4f} "
              f"({seconds:.0f} s)", flush=True)
    with _manifest(out) as manifest:
        return manifest


def variant_cards(ckpt_dir: Path, card_file: Path) -> list[Path]:
    """Write a model card file for the variant checkpoints present in ``ckpt_dir`` (each with
    the analyses ``VARIANTS`` names) and return their paths; nothing is written without one."""
    lines, paths = [], []
    for v, spec in VARIANTS.items():
        for seed in VARIANT_SEEDS[v]:
            p = ckpt_dir / f"{checkpoint_name(v, seed)}.pt"
            if p.is_file():
                paths.append(p)
                only = ", ".join(f'"{a}"' for a in spec["only"])
                lines += [f"[{p.stem}]", f'path = "{p.resolve()}"', f"only = [{only}]", ""]
    if paths:
        card_file.parent.mkdir(parents=True, exist_ok=True)
        card_file.write_text("# written by experiments/demo.py: the extra demo checkpoints\n"
                             + "\n".join(lines))
    return paths


def demo_checkpoints(out: Path, names=DEMO_MODELS, seeds=DEMO_SEEDS) -> list[Path]:
    """Paths of the demo checkpoints, model-major (every seed of the first model first)."""
    return [out / f"{checkpoint_name(n, s)}.pt" for n in names for s in seeds]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "checkpoints" / "demo"), help="checkpoint folder")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--tags", nargs="*", help="train only these (e.g. vit_tiny_s2); default all")
    ap.add_argument("--variants", nargs="*", metavar="VARIANT",
                    help=f"train these extra variants instead ({', '.join(VARIANTS)}; no name: "
                         "all), each with its seeds in VARIANT_SEEDS")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.variants is not None:
        for v in args.variants or list(VARIANTS):
            if v not in VARIANTS:
                ap.error(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
            man = train_demo(Path(args.out), names=(v,), seeds=VARIANT_SEEDS[v],
                             progress=not args.quiet, tags=args.tags)
        return 0
    man = train_demo(Path(args.out), progress=not args.quiet, tags=args.tags)
    low = [t for t, e in man["checkpoints"].items()
           if t in {checkpoint_name(n, s) for n in DEMO_MODELS for s in DEMO_SEEDS}
           and e["test_acc"] < TARGET_ACC[e["model"]]]
    if low:
        print(f"below the target accuracy: {', '.join(low)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
