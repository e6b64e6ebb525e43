"""FLOPs of the SCALE=paper work, measured per image, and a GPU time estimate per make target.

Measures with ``torch.utils.flop_counter.FlopCounterMode`` (matmul/conv FLOPs, CPU, batch 2) for
ResNet-50, ViT-Ti and AlterNet-50 at 32x32: one forward, one training step (forward + backward of
the cross-entropy) and one Hessian-vector product (``HessianOperator``, double backward, the
mode ``analyze`` uses). Multiplies them by what each target runs with the ``paper`` budget (the
Lanczos counts are the ``max_iter`` caps, so the Hessian figures are upper bounds) and divides by
an assumed sustained GPU throughput (``--tflops``): by default 30% of an H100 SXM's FP32 peak
(67 TFLOP/s, not the 989 TFLOP/s BF16 tensor-core figure: the analyses run in float32).
ESTIMATES, not GPU measurements.

    python experiments/paper_flops.py [--tflops 20]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import landscape_models as models  # noqa: E402

from landscape.analyze.config import BUDGETS, AnalyzeConfig  # noqa: E402
from landscape.curvature import HessianOperator  # noqa: E402

NAMES = ("resnet50", "vit_ti", "alternet50")
TRAIN, TEST = 50_000, 10_000  # CIFAR-100
H100_FP32_TFLOPS = 67.0  # H100 SXM, FP32 without tensor cores (dense BF16: 989)


def count(fn) -> float:
    with FlopCounterMode(display=False) as c:
        fn()
    return float(c.get_total_flops())


def per_image(name: str, batch: int = 2) -> dict[str, float]:
    """Forward, training-step and Hessian-vector-product FLOPs per image."""
    torch.manual_seed(0)
    net = models.create(name, num_classes=100, in_chans=3, img_size=32)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 100, (batch,))
    net.eval()
    with torch.no_grad():
        fwd = count(lambda: net(x))
    net.train()
    step = count(lambda: F.cross_entropy(net(x), y).backward())
    net.eval()
    op = HessianOperator(net, [(x, y)], wd=5e-4, mode="double_backward")
    v = torch.randn(op.shape[0])
    op.matvec(v)  # builds the retained graph once
    hvp = count(lambda: op.matvec(v))
    op.free()
    return {"fwd": fwd / batch, "step": step / batch, "hvp": hvp / batch,
            "residual_blocks": sum(b.branch is not None for b in models.blocks(net))}


def analyze_work(f: dict[str, float], only: list[str]) -> float:
    """FLOPs of `landscape analyze --budget paper --only ...` for one model."""
    c = AnalyzeConfig(**BUDGETS["paper"])
    eval_imgs = c.eval_samples or TEST
    total = eval_imgs * f["fwd"]
    feats = c.samples or TEST
    if "hessian" in only:
        n_batches = c.spectrum_batches or int(0.1 * TRAIN / c.spectrum_batch_size)
        total += n_batches * c.lanczos_max_iter * c.spectrum_batch_size * f["hvp"]
        products = 2 * c.lanczos_max_iter + c.trace_products + c.density_probes * c.density_steps
        total += c.curvature_samples * products * f["hvp"]
    if "surface" in only:
        points = int(c.surface_grid.split(":")[2]) * int(c.surface_ygrid.split(":")[2])
        total += c.surface_planes * points * min(c.surface_samples, TRAIN) * f["fwd"]
    for a, passes in (("fourier", 1), ("variance", 1), ("robustness", c.robustness_freqs + 1),
                      ("cka", 1), ("lesion", f["residual_blocks"] + 1)):
        if a in only:
            n = (c.lesion_samples or TEST) if a == "lesion" else feats
            total += passes * min(n, TEST) * f["fwd"]
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tflops", type=float, default=H100_FP32_TFLOPS * 0.3,
                    help="assumed sustained TFLOP/s (default: 30%% of an H100's FP32 peak)")
    args = ap.parse_args()
    flops = {n: per_image(n) for n in NAMES}
    rate = args.tflops * 1e12
    print("| model | forward GFLOP/img | train step GFLOP/img | HVP GFLOP/img |")
    print("|---|---|---|---|")
    for n, f in flops.items():
        print(f"| {n} | {f['fwd'] / 1e9:.2f} | {f['step'] / 1e9:.2f} | {f['hvp'] / 1e9:.2f} |")
    targets = {"fig1": ["surface", "hessian"], "fig1: surfaces only": ["surface"],
               "fig1: Hessian only": ["hessian"], "fig2": ["fourier", "robustness"],
               "fig8": ["fourier"], "fig9": ["variance"], "fig10": ["cka", "lesion"]}
    print(f"\n| target | PFLOP (3 models) | estimated hours at {args.tflops:.3g} TFLOP/s |")
    print("|---|---|---|")
    for t, only in targets.items():
        w = sum(analyze_work(f, only) for f in flops.values())
        print(f"| {t} | {w / 1e15:.3g} | {w / rate / 3600:.3g} |")
    # fig4: vit_ti + resnet50, 4 fractions x 2 seeds, 470 steps of 128, spectrum 5 x 40 x 16.
    f4 = sum(8 * (470 * 128 * flops[n]["step"] + 2000 * flops[n]["fwd"]
                  + 5 * 40 * 16 * flops[n]["hvp"]) for n in ("vit_ti", "resnet50"))
    f7 = 6 * (470 * 128 * flops["vit_ti"]["step"] + 2000 * flops["vit_ti"]["fwd"]
              + 5 * 40 * 16 * flops["vit_ti"]["hvp"])
    train = {"resnet50": 200, "vit_ti": 300, "alternet50": 200}
    # fig12, one build-up candidate (AlterNet-50-sized), 2 seeds: 4 epochs of <= 2000 images,
    # 1000 validation and 2000 test images (experiments/alternet_buildup.py DEMO settings).
    f12 = 2 * (4 * 2000 * flops["alternet50"]["step"] + 3000 * flops["alternet50"]["fwd"])
    for t, w in (("fig4", f4), ("fig7", f7), ("fig12 (one candidate, 2 seeds)", f12)):
        print(f"| {t} | {w / 1e15:.3g} | {w / rate / 3600:.3g} |")
    for n, ep in train.items():
        w = ep * TRAIN * flops[n]["step"] + ep * TEST * flops[n]["fwd"]
        print(f"| train {n} ({ep} epochs; paper-checkpoints) | {w / 1e15:.3g} | "
              f"{w / rate / 3600:.3g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
