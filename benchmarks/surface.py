"""Loss-surface speed: ours against the reference tool's per-point procedure, same points.

* baseline: loss-landscape (tomgoldstein) ``crunch`` at its defaults, written faithfully: batch
  128, its DataLoader with ``num_workers=2`` (``--threads 2``; the workers start anew at every
  point); per point ``set_weights`` builds ``p.data = w + (dx*x + dy*y)`` from host copies of
  theta0 and the directions; ``eval_loss`` iterates the DataLoader over the raw uint8 images
  (ToTensor + Normalize per image), ``.item()`` per batch; the HDF5 file is opened once and its
  loss arrays are rewritten and flushed after every point. ``baseline0``: the same with
  ``num_workers=0`` (on a few cores the faster of the two; the headline compares against it).
* floor: one forward pass per point at the best single-process batch size (plain eager
  ``inference_mode`` forward over the preloaded images; a reference, not a bound: ours may beat
  it with workers, BN folding or first-layer reuse).
* ours: ``compute_surface`` end to end over the whole grid with the automatic plan (plan
  measurement, evaluation, crash-safe HDF5 writes), and per round one chunk of points (the
  chunk that holds the round's point) evaluated and written with that plan.

Rounds are interleaved (floor, baseline, baseline0, ours, at the same grid point) so a busy
machine disturbs all alike; every side gets one sample per round and medians are compared. The
losses of all sides at each round's point must agree within 1e-5 (relative to max(1, |loss|):
float32 sums at a loss of a few hundred differ by 1e-7 relative) before any ratio is printed.
The storage line reports bytes written (``wchar``) to set up and fill an 11x11 and a 101x101
file one point per chunk: the cost per chunk should not grow with the grid.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FMNIST = Path("/usr/share/datasets/fashion-mnist")
MEAN, STD = 0.2860, 0.3530
AGREE = 1e-5


def load_raw(n: int) -> tuple[np.ndarray, np.ndarray]:
    """First ``n`` Fashion-MNIST test images (uint8, N x 28 x 28) and labels."""
    with gzip.open(FMNIST / "t10k-images-idx3-ubyte.gz") as f:
        imgs = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FMNIST / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return imgs[:n].copy(), labels[:n].copy()


class RawDataset(torch.utils.data.Dataset):
    """torchvision-style dataset: PIL-free ToTensor + Normalize per item, as the reference."""

    def __init__(self, imgs: np.ndarray, labels: np.ndarray) -> None:
        self.imgs, self.labels = imgs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.imgs[i]).unsqueeze(0).float().div(255)  # ToTensor
        return (x - MEAN) / STD, int(self.labels[i])  # Normalize


class Baseline:
    """The reference's crunch loop; its HDF5 file and DataLoader are created once."""

    def __init__(self, model: nn.Module, imgs: np.ndarray, labels: np.ndarray, d1: dict, d2: dict,
                 h5path: Path, n_points: int, workers: int) -> None:
        import h5py
        self.model = model
        self.names = [n for n, _ in model.named_parameters()]
        self.w = [p.data.detach().cpu().clone() for p in model.parameters()]  # get_weights
        self.dx = [d1[n].numpy() if n in d1 else np.zeros(tuple(w.shape), np.float32)
                   for n, w in zip(self.names, self.w, strict=True)]
        self.dy = [d2[n].numpy() if n in d2 else np.zeros(tuple(w.shape), np.float32)
                   for n, w in zip(self.names, self.w, strict=True)]
        self.loader = torch.utils.data.DataLoader(RawDataset(imgs, labels), batch_size=128,
                                                  shuffle=False, num_workers=workers)
        self.f = h5py.File(h5path, "w")
        self.losses, self.accs = -np.ones(n_points), -np.ones(n_points)
        self.f["train_loss"], self.f["train_acc"] = self.losses, self.accs

    def point(self, count: int, cx: float, cy: float) -> float:
        """Evaluate and store grid point ``count``; returns its loss."""
        # set_weights
        changes = [d0 * cx + d1 * cy for (d0, d1) in zip(self.dx, self.dy, strict=True)]
        for p, w0, d in zip(self.model.parameters(), self.w, changes, strict=True):
            p.data = w0 + torch.Tensor(d).type(type(w0))
        criterion = nn.CrossEntropyLoss()  # evaluation.eval_loss
        correct, total_loss, total = 0, 0.0, 0
        self.model.eval()
        with torch.no_grad():
            for inputs, targets in self.loader:
                bs = inputs.size(0)
                total += bs
                outputs = self.model(inputs)
                total_loss += criterion(outputs, targets).item() * bs
                _, predicted = torch.max(outputs.data, 1)
                correct += predicted.eq(targets).sum().item()
        self.losses[count] = total_loss / total
        self.accs[count] = 100.0 * correct / total
        self.f["train_loss"][:] = self.losses
        self.f["train_acc"][:] = self.accs
        self.f.flush()
        return float(self.losses[count])

    def close(self) -> None:
        for p, w0 in zip(self.model.parameters(), self.w, strict=True):
            p.data = w0
        self.f.close()


def wchar() -> int:
    """Bytes this process has passed to write calls so far."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar"))


def storage_line(tmp: Path, grids: tuple[int, ...] = (11, 101)) -> str:
    """Bytes written to create and fill 11x11 and 101x101 files, one point per chunk."""
    from landscape import surface as S
    out = []
    for n in grids:
        xs = np.linspace(-1, 1, n)
        sf = S.SurfaceFile(tmp / f"io{n}.h5")
        sf.open({}, xs, xs, "test", {}, {})
        w0 = wchar()
        sf.setup("test", S.Plan(1), 1, 0.0)
        sf.begin()
        w1 = wchar()
        vals = np.random.default_rng(0).random((1, 4))
        for c in range(n * n):
            sf.put("test", c, vals, 0.0)
        sf.close()
        w2 = wchar()
        out.append(f"{n}x{n}: set-up {w1 - w0:,} B (file {os.path.getsize(sf.path):,} B), "
                   f"{n * n:,} chunks {w2 - w1:,} B = {(w2 - w1) / (n * n):.1f} B/chunk")
    return "storage, bytes written (loss+acc, one point per chunk): " + "; ".join(out)


def build(name: str) -> nn.Module:
    import landscape_models as models
    torch.manual_seed(0)
    return models.create(name, num_classes=10, in_chans=1, img_size=28)


def bench_model(name: str, args: argparse.Namespace, imgs: np.ndarray, labels: np.ndarray,
                tmp: Path) -> dict:
    from landscape import surface as S
    from landscape.surface import directions as D
    model = build(name).eval()
    x = ((torch.from_numpy(imgs.copy()).float().div(255) - MEAN) / STD).unsqueeze(1)
    y = torch.from_numpy(labels)
    d1, d2 = D.random_direction(model, 1), D.random_direction(model, 2)
    xs = np.linspace(-1, 1, args.grid)
    pts = S.grid_points(xs, xs)
    P = len(pts)
    t = time.perf_counter()
    e2e = S.compute_surface(model, [d1, d2], x, y, xs, xs, tmp / f"{name}_e2e.h5", progress=False)
    t_e2e = time.perf_counter() - t
    e2e_loss = e2e.arrays["test_loss"].reshape(-1)
    sf = S.SurfaceFile(tmp / f"{name}_e2e.h5")
    plan = S.SurfaceFile.read(sf.path).stored_plan("test")
    chunk = int(S.SurfaceFile.read(sf.path).dataset_attrs["test_loss"]["points_per_flush"])
    ours_file = S.SurfaceFile(tmp / f"{name}_rounds.h5")
    ours_file.open({}, xs, xs, "test", {}, {})
    ours_file.setup("test", plan, chunk, 0.0)
    ours_file.begin()
    ev = S.SurfaceEvaluator(model, [d1, d2], x, y, l2=False)
    base = Baseline(model, imgs, labels, d1, d2, tmp / f"{name}_ref.h5", P, args.baseline_workers)
    base0 = Baseline(model, imgs, labels, d1, d2, tmp / f"{name}_ref0.h5", P, 0)
    sizes = [b for b in (64, 128, 256, 512) if b < len(x)] + [len(x)]
    floor = {b: [] for b in sizes}
    times = {"baseline": [], "baseline0": [], "ours": []}
    losses = []
    ev.prepare(plan)  # theta0 captured before the baselines move the weights
    ev.restore()
    rng = np.random.default_rng(0)
    for i in rng.choice(P, args.rounds, replace=False):
        with torch.inference_mode():
            for b in sizes:
                model(x[:b])
                t = time.perf_counter()
                for s in range(0, len(x), b):
                    model(x[s:s + b])
                floor[b].append(time.perf_counter() - t)
        row = {"point": int(i), "e2e": float(e2e_loss[i])}
        for key, side in (("baseline", base), ("baseline0", base0)):
            t = time.perf_counter()
            row[key] = side.point(int(i), *pts[i])
            times[key].append(time.perf_counter() - t)
        c = int(i) // chunk
        idx = np.arange(c * chunk, min((c + 1) * chunk, P))
        ev.apply(plan)
        t = time.perf_counter()
        vals = ev.evaluate(pts[idx])
        ours_file.put("test", c, vals, 0.0)
        times["ours"].append((time.perf_counter() - t) / len(idx))
        ev.restore()
        row["ours"] = float(vals[list(idx).index(i), 0])
        losses.append(row)
    base.close()
    base0.close()
    ours_file.close()
    med = {k: float(np.median(v)) for k, v in times.items()}
    fl_b = min(floor, key=lambda b: np.median(floor[b]))
    fl = float(np.median(floor[fl_b]))
    worst = max(abs(r[k] - r["baseline"]) / max(1.0, abs(r["baseline"]))
                for r in losses for k in ("baseline0", "ours", "e2e"))
    ours_pp = t_e2e / P
    res = {"params": sum(p.numel() for p in model.parameters()), "plan": plan.key(),
           "rounds": args.rounds, "medians_s_per_point": med, "floor_s": fl, "floor_batch": fl_b,
           "e2e_s": t_e2e, "e2e_s_per_point": ours_pp, "max_loss_diff": worst, "losses": losses}
    print(f"\n[{name}] {res['params']} params, {P} points, {args.rounds} interleaved rounds, "
          f"plan {plan.label()}")
    print(f"  floor (one forward pass per point at the best single-process batch size, {fl_b}): "
          f"{fl:.3f} s/pass (median)")
    print(f"  baseline ({args.baseline_workers} loader workers): {med['baseline']:.3f} s/point; "
          f"baseline0 (0 workers): {med['baseline0']:.3f} s/point (medians)")
    print(f"  ours end to end: {t_e2e:.1f} s for {P} points = {ours_pp:.3f} s/point (plan "
          f"{plan.measured.get('measure_seconds', 0):.1f} s included); ours per chunk in the "
          f"rounds: {med['ours']:.3f} s/point (median)")
    print(f"  losses at the {args.rounds} round points, largest difference from the baseline "
          f"(relative to max(1, |loss|)): {worst:.2e} (limit {AGREE:g})")
    if not worst <= AGREE:
        print("  REFUSED: the sides disagree; no ratio printed")
        res["refused"] = True
        return res
    res.update(speedup_e2e_vs_baseline0=med["baseline0"] / ours_pp,
               speedup_e2e_vs_baseline=med["baseline"] / ours_pp,
               speedup_rounds_vs_baseline0=med["baseline0"] / med["ours"],
               ours_e2e_over_floor=ours_pp / fl)
    print(f"  HEADLINE ours (end to end) vs baseline0: {res['speedup_e2e_vs_baseline0']:.2f}x "
          f"(target >= 1.5x{'' if res['speedup_e2e_vs_baseline0'] >= 1.5 else ': missed'}); "
          f"per-chunk medians: {res['speedup_rounds_vs_baseline0']:.2f}x")
    print(f"  ours (end to end) vs baseline ({args.baseline_workers} workers): "
          f"{res['speedup_e2e_vs_baseline']:.2f}x;  ours / floor: {res['ours_e2e_over_floor']:.2f}")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 rounds instead of --rounds")
    ap.add_argument("--models", nargs="+", default=["resnet_tiny", "vit_tiny"])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--grid", type=int, default=11, help="points per axis (default 11)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--baseline-workers", type=int, default=2,
                    help="DataLoader workers of the baseline (default 2, the reference's "
                         "--threads default); baseline0 always uses 0")
    ap.add_argument("--storage-grids", type=int, nargs="+", default=[11, 101],
                    help="points per axis of the storage line's files (default 11 101)")
    ap.add_argument("--json", default=None, help="write the numbers here")
    args = ap.parse_args()
    if args.quick:
        args.rounds = 3
    warnings.filterwarnings("ignore")
    imgs, labels = load_raw(args.samples)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.samples} images, "
          f"{args.grid}x{args.grid} grid, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        print(storage_line(Path(tmp), tuple(args.storage_grids)))
        for name in args.models:
            results[name] = bench_model(name, args, imgs, labels, Path(tmp))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
