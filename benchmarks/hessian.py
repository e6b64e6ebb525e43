"""Benchmark: top-5 Hessian eigenvalues, ours vs PyHessian, and the paper's spectrum workload.

Same model, same batch, same device in one run; every accuracy is against an independent
reference: scipy ``eigsh`` (ARPACK, tol 1e-10) on the Hessian of a float64 copy of the model.

Per model (resnet_tiny, vit_tiny) and batch size (16, 128):
  ours        top_eigenvalues(k=5, "LM", tol 1e-3) on a fresh operator with mode="auto": the
              product-mode measurement is inside the timed run (no cache survives between
              operators) and its share is printed
  pyh-default pyhessian eigenvalues(top_n=5) at its defaults (maxIter=100, tol=1e-3)
  pyh-matched pyhessian at the largest tol in [1e-7, 1e-3] whose five values are all within 1e-3
              of the reference: its default 1e-3 first, then the first matching decade below,
              then 4 bisections in log(tol) (to a factor 1.15; --quick: 2); tolerance and
              products printed
  ratio       pyh-matched time / ours time, printed only when both sides' five values agree
              within 1e-3 (else refused, with the disagreement)
Convergence of both sides is judged by the same rule: every returned pair has
||Hv - lambda v|| <= 1e-3 |lambda| (pyhessian's own stopping rule is a relative change).

The paper's workload: top-5 for consecutive mini-batches of 16, cold starts (our default: the
loss-gradient start) vs warm starts (previous batch's Ritz vectors, chains of 16) vs pyhessian at
the matched tolerance; products, time, and on a 20-batch sample every batch's five values against
eigsh. Also the cost of the most negative eigenvalue in the same run, and why warm starts do not
pay: the overlap of consecutive batches' top-5 spaces and the gradient's share in its own.

    python benchmarks/hessian.py [--quick] [--device cpu] [--checkpoints DIR]

Models: DIR/<name>_s0.pt (default checkpoints/demo) when present, else trained briefly here
(Adam, a few hundred steps; cached under runs/bench/), which is said in the output.
"""
from __future__ import annotations

import argparse
import copy
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from landscape.curvature import HessianOperator, top_eigenvalues  # noqa: E402

FMNIST = Path("/usr/share/datasets/fashion-mnist")
MATCH = 1e-3  # the accuracy both sides must reach (relative, per eigenvalue)


def load_fmnist(n: int = 60000):
    """Normalized Fashion-MNIST train images (N,1,28,28) float32 and labels."""
    try:
        from landscape.data import load_dataset
        d = load_dataset("fashion-mnist", "train", progress=False)
        return d.images[:n], d.labels[:n]
    except Exception as e:  # noqa: BLE001 - data module unavailable: read the IDX files
        print(f"(landscape.data unavailable: {e}; reading IDX)", file=sys.stderr)
        with gzip.open(FMNIST / "train-images-idx3-ubyte.gz") as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
        with gzip.open(FMNIST / "train-labels-idx1-ubyte.gz") as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)
        xt = (torch.from_numpy(x[:n].astype(np.float32)) / 255 - 0.2860) / 0.3530
        return xt, torch.from_numpy(y[:n].astype(np.int64))


def get_model(name: str, x, y, steps: int, device, ckpt_dir: Path):
    """A trained model: ckpt_dir/<name>_s0.pt when present, else a brief Adam run (cached)."""
    import landscape_models as models
    p = ckpt_dir / f"{name}_s0.pt"
    if p.exists():
        from landscape.checkpoint import load
        m, info = load(p, device=device)
        return m.eval(), f"demo checkpoint {p.name}"
    torch.manual_seed(0)
    m = models.create(name, num_classes=10, in_chans=1, img_size=28).to(device)
    cache = ROOT / "runs" / "bench" / f"{name}_{steps}.pt"
    if cache.exists():
        m.load_state_dict(torch.load(cache, map_location=device, weights_only=True))
        return m.eval(), f"NOT the demo checkpoint: trained {steps} Adam steps here (cached)"
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    m.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y), (128,), generator=g)
        loss = F.cross_entropy(m(x[idx].to(device)), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(m.state_dict(), cache)
    for q in m.parameters():
        q.grad = None
    return m.eval(), f"NOT the demo checkpoint: trained {steps} Adam steps here"


def by_magnitude(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v[np.argsort(-np.abs(v), kind="stable")]


def rel_err(vals, ref) -> np.ndarray:
    """Per-eigenvalue relative error, both sides ordered by magnitude (generous to power
    iteration, whose order is not guaranteed)."""
    return np.abs(by_magnitude(vals) - by_magnitude(ref)) / np.abs(by_magnitude(ref))


def timed(fn):
    t0 = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t0


def eigsh_reference(model64, x, y, k: int = 5, which: str = "LM") -> np.ndarray:
    """The k eigenvalues by scipy eigsh (ARPACK, tol 1e-10) on the float64 Hessian."""
    from scipy.sparse.linalg import eigsh
    op = HessianOperator(model64, (x.double(), y), mode="double_backward")
    v0 = np.random.default_rng(12345).standard_normal(op.shape[0])
    w = eigsh(op.to_scipy(), k=k, which=which, tol=1e-10, v0=v0, return_eigenvectors=False)
    op.free()
    return by_magnitude(w) if which == "LM" else np.sort(w)


def pyh(model, x, y, tol: float, cap: int):
    return top_eigenvalues(HessianOperator(model, (x, y), mode="double_backward"), 5, "LM",
                           backend="pyhessian", tol=tol, max_iter=cap, seed=0,
                           return_eigenvectors=False)


def matched_tolerance(model, x, y, ref, cap: int, steps: int = 4):
    """Largest tol in [1e-7, 1e-3] at which pyhessian's five values are all within MATCH of the
    reference: 1e-3 (its default) first; else the first matching decade below it (1e-4, 1e-5,
    ..., 1e-7: the cheap end first) brackets it, then ``steps`` bisections in log(tol) between
    that matching and the failing tolerance above it. Returns (tol or None, result, trials)."""
    trials = []

    def ok(t):
        r = pyh(model, x, y, t, cap)
        err = rel_err(r.eigenvalues, ref)
        trials.append((t, r.n_products, float(err.max())))
        return bool(np.all(err <= MATCH)), r

    hi = 1e-3
    good, r = ok(hi)
    if good:
        return hi, r, trials
    lo, r_lo = None, None
    for t in (1e-4, 1e-5, 1e-6, 1e-7):
        good, r = ok(t)
        if good:
            lo, r_lo = t, r
            break
        hi = t
    if lo is None:
        return None, r, trials
    for _ in range(steps):
        mid = float(np.sqrt(lo * hi))
        good, r = ok(mid)
        if good:
            lo, r_lo = mid, r
        else:
            hi = mid
    return lo, r_lo, trials


def bench_case(model, x, y, cap: int, repeats: int, bisect_steps: int = 4) -> dict:
    """One model and batch: reference, ours (cold, auto mode inside), pyhessian default/matched."""
    model64 = copy.deepcopy(model).double()
    ref, t_ref = timed(lambda: eigsh_reference(model64, x, y))
    tol_m, _, trials = matched_tolerance(model, x, y, ref, cap, bisect_steps)

    def ours():
        op = HessianOperator(model, (x, y))  # mode="auto": measured inside this run
        r = top_eigenvalues(op, 5, "LM", tol=1e-3, seed=0, return_eigenvectors=False)
        return r, op.mode_choice

    runs = {"ours": ours, "pyh_default": lambda: (pyh(model, x, y, 1e-3, 100), None)}
    if tol_m is not None:
        runs["pyh_matched"] = lambda: (pyh(model, x, y, tol_m, cap), None)
    times: dict[str, list[float]] = {k: [] for k in runs}
    last = {}
    for _ in range(repeats):  # interleaved; medians compared
        for key, fn in runs.items():
            last[key], t = timed(fn)
            times[key].append(t)
    rows = {"reference": {"eigenvalues": ref.tolist(), "time_s": t_ref, "method": "eigsh f64"},
            "matched_search": {"tol": tol_m, "trials": trials}}
    for key, (r, choice) in last.items():
        rows[key] = {"time_s": float(np.median(times[key])), "times_s": times[key],
                     "hvps": r.n_products, "eigenvalues": r.eigenvalues.tolist(),
                     "rel_err": rel_err(r.eigenvalues, ref).tolist(),
                     "converged": r.converged, "tol": 1e-3 if key != "pyh_matched" else tol_m}
        if choice is not None:
            rows[key]["mode"] = choice.to_dict()
    o = rows["ours"]
    if "pyh_matched" in rows:
        mt = rows["pyh_matched"]
        gap = float(np.max(np.abs(by_magnitude(o["eigenvalues"]) - by_magnitude(mt["eigenvalues"]))
                           / np.abs(by_magnitude(mt["eigenvalues"]))))
        rows["agreement"] = gap
        rows["ratio"] = mt["time_s"] / o["time_s"] if gap <= MATCH else None
    return rows


def print_case(bs: int, rows: dict, repeats: int) -> None:
    ref = rows["reference"]
    print(f"  batch {bs}: reference (eigsh, float64, tol 1e-10, {ref['time_s']:.1f}s) top-5 "
          f"{np.array2string(np.array(ref['eigenvalues']), precision=5)}")
    ms = rows["matched_search"]
    print("    pyhessian tolerance search (tol: products, max rel err): " + ", ".join(
        f"{t:.2g}: {n}, {e:.1e}" for t, n, e in ms["trials"]))
    print(f"    {'run':12s} {'time s':>8s} {'HVPs':>6s} {'tol':>8s}  {'max rel err':>11s}  "
          f"converged (||Hv-lv|| <= 1e-3|l|)   (median of {repeats} interleaved runs)")
    for key in ("ours", "pyh_default", "pyh_matched"):
        r = rows.get(key)
        if r is None:
            print(f"    {key:12s} no tolerance in [1e-7, 1e-3] matched the reference")
            continue
        note = ""
        if "mode" in r:
            md = r["mode"]
            note = (f"  mode auto -> {md['mode']}, measuring {md['measure_s']:.2f}s of it ("
                    + ", ".join(f"{k} {1e3 * v:.0f} ms/HVP"
                                for k, v in md["seconds_per_product"].items()) + ")")
        print(f"    {key:12s} {r['time_s']:8.2f} {r['hvps']:6d} {r['tol']:8.2g}  "
              f"{max(r['rel_err']):11.2e}  {str(r['converged']):5s}{note}")
    if "ratio" in rows:
        if rows["ratio"] is None:
            print(f"    ratio REFUSED: ours and pyhessian-matched disagree by "
                  f"{rows['agreement']:.2e} (> {MATCH:g})")
        else:
            print(f"    ratio pyhessian-matched / ours = {rows['ratio']:.2f}x "
                  f"(values agree within {rows['agreement']:.1e}); pyhessian-default / ours = "
                  f"{rows['pyh_default']['time_s'] / rows['ours']['time_s']:.2f}x")


def workload_reference(model, x_all, y_all, idx: np.ndarray) -> dict:
    """eigsh float64 top-5 per sample batch, plus why warm starts do not pay: the squared overlap
    of each batch's top-5 eigenvectors with the previous batch's top-5 space, and the share of
    the unit loss gradient inside its own batch's top-5 space."""
    from scipy.sparse.linalg import eigsh
    model64 = copy.deepcopy(model).double()
    refs, overlaps, grad_share, prev = [], [], [], None
    for b in range(len(idx)):
        ii = torch.as_tensor(idx[b])
        op = HessianOperator(model64, (x_all[ii].double(), y_all[ii]), mode="double_backward")
        v0 = np.random.default_rng(12345).standard_normal(op.shape[0])
        w, V = eigsh(op.to_scipy(), k=5, which="LM", tol=1e-10, v0=v0)
        g = op.gradient().numpy()
        op.free()
        o = np.argsort(-np.abs(w))
        refs.append(w[o])
        V = V[:, o]
        grad_share.append(float(np.sum((V.T @ g) ** 2) / np.sum(g ** 2)))
        if prev is not None:
            overlaps.append(np.sum((prev.T @ V) ** 2, axis=0))
        prev = V
    return {"eigenvalues": np.array(refs), "overlap": np.array(overlaps),
            "grad_share": np.array(grad_share)}


def bench_workload(model, x_all, y_all, n_batches: int, n_sample: int, tol_m, cap: int) -> dict:
    """The paper's spectrum workload (top-5 per batch of 16) by cold starts, warm starts and
    pyhessian at its matched tolerance; accuracy of every batch of a sample against eigsh."""
    from landscape.spectrum import SpectrumConfig, max_eigenvalue_spectrum, spectrum_batches
    base = dict(k=5, batch_size=16, n_batches=n_batches, seed=0, tol=1e-3)
    variants = {"cold": SpectrumConfig(**base, negative=False),
                "warm": SpectrumConfig(**base, negative=False, warm_start=True),
                "cold+lambda_min": SpectrumConfig(**base, negative=True)}
    if tol_m is not None:
        variants["pyhessian"] = SpectrumConfig(**{**base, "tol": tol_m}, negative=False,
                                               backend="pyhessian", max_iter=cap)
    out = {}
    idx = spectrum_batches(len(y_all), 16, n_batches, seed=0)
    ref, t_ref = timed(lambda: workload_reference(model, x_all, y_all, idx[:n_sample]))
    out["reference"] = {"time_s": t_ref, "overlap_median": float(np.median(ref["overlap"]))
                        if len(ref["overlap"]) else None,
                        "overlap_quartiles": np.percentile(ref["overlap"], [25, 75]).tolist()
                        if len(ref["overlap"]) else None,
                        "grad_share_median": float(np.median(ref["grad_share"]))}
    for name, cfg in variants.items():
        r, t = timed(lambda cfg=cfg: max_eigenvalue_spectrum(model, x_all, y_all, cfg,
                                                              progress=False))
        errs = np.array([rel_err(r.eigenvalues[b], ref["eigenvalues"][b]).max()
                         for b in range(n_sample)])
        out[name] = {"time_s": t, "hvps": int(r.n_products.sum()),
                     "hvps_per_batch": float(r.n_products.mean()),
                     "sample_max_rel_err": float(errs.max()),
                     "sample_batches_within": int((errs <= MATCH).sum()),
                     "converged_share": float(r.converged.mean()) if name != "pyhessian"
                     else None, "mode": r.extra.get("mode_choice"), **r.summary()}
    return out


def print_workload(w: dict, n_batches: int, n_sample: int) -> None:
    ref = w["reference"]
    print(f"  paper workload: top-5, {n_batches} consecutive batches of 16, tol 1e-3; accuracy on "
          f"the first {n_sample} against eigsh (float64, {ref['time_s']:.0f}s)")
    print(f"    {'run':16s} {'time s':>8s} {'HVPs':>6s} {'HVPs/batch':>10s}  "
          f"{'batches within 1e-3':>19s}  max rel err  negative share")
    for name in ("cold", "warm", "cold+lambda_min", "pyhessian"):
        r = w.get(name)
        if r is None:
            continue
        extra = ""
        if name == "cold+lambda_min":
            extra = (f"  lambda_min<0 in {r['lambda_min_negative_share']:.2f} of batches, median "
                     f"|lambda_min|/lambda_max {r['median_abs_min_over_max']:.3f}")
        print(f"    {name:16s} {r['time_s']:8.1f} {r['hvps']:6d} {r['hvps_per_batch']:10.1f}  "
              f"{r['sample_batches_within']:>12d}/{n_sample:<6d}  {r['sample_max_rel_err']:.1e}"
              f"      {r['negative_share']:.3f}{extra}")
    c, wm = w["cold"], w["warm"]
    print(f"    warm/cold products: {wm['hvps'] / c['hvps']:.2f} (target <= 0.5); lambda_min costs "
          f"{w['cold+lambda_min']['hvps'] / c['hvps'] - 1:+.1%} products")
    if ref["overlap_median"] is not None:
        print(f"    why: squared overlap of a batch's top-5 eigenvectors with the previous batch's "
              f"top-5 space: median {ref['overlap_median']:.2f} (quartiles "
              f"{ref['overlap_quartiles'][0]:.2f}-{ref['overlap_quartiles'][1]:.2f}); the unit "
              f"loss gradient (in the cold start) lies {ref['grad_share_median']:.2f} inside its "
              f"own batch's top-5 space (median)")
    if "pyhessian" in w:
        best = min(c["time_s"], wm["time_s"])
        agree = w["pyhessian"]["sample_batches_within"] == n_sample and \
            c["sample_batches_within"] == n_sample
        ratio = f"{w['pyhessian']['time_s'] / best:.2f}x (target >= 8x)" if agree else \
            "REFUSED (a side misses the 1e-3 reference on a sample batch)"
        print(f"    pyhessian-matched / ours (best of cold, warm) = {ratio}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batch 16 only, 6 workload batches")
    ap.add_argument("--models", default="resnet_tiny,vit_tiny", help="comma-separated names")
    ap.add_argument("--batch-sizes", default=None, help="comma-separated (default 16,128)")
    ap.add_argument("--paper-batches", type=int, default=None,
                    help="consecutive batches in the workload (default 24; quick 6)")
    ap.add_argument("--sample", type=int, default=20, help="workload batches checked by eigsh")
    ap.add_argument("--train-steps", type=int, default=300, help="steps without checkpoints")
    ap.add_argument("--checkpoints", default=str(ROOT / "checkpoints" / "demo"),
                    help="folder with <model>_s0.pt demo checkpoints")
    ap.add_argument("--bisect-steps", type=int, default=None,
                    help="bisections of pyhessian's matched tolerance (default 4; quick 2)")
    ap.add_argument("--cap", type=int, default=1000, help="pyhessian maxIter per eigenvalue")
    ap.add_argument("--device", default="cpu", help="torch device")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timed runs (median)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "hessian.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bss = [int(b) for b in (args.batch_sizes or ("16" if args.quick else "16,128")).split(",")]
    n_paper = args.paper_batches or (6 if args.quick else 24)
    n_sample = min(args.sample, n_paper)
    x_all, y_all = load_fmnist()
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(y_all)))
    results = {"device": str(device), "threads": torch.get_num_threads(),
               "torch": torch.__version__, "models": {}}
    for name in args.models.split(","):
        model, how = get_model(name, x_all, y_all, args.train_steps, device,
                               Path(args.checkpoints))
        n = sum(p.numel() for p in model.parameters())
        print(f"\n== {name}: {n} params, {how}, device {device}, {torch.get_num_threads()} threads",
              flush=True)
        res = {"params": n, "source": how, "batches": {}}
        for bs in bss:
            xb, yb = x_all[perm[:bs]].to(device), y_all[perm[:bs]].to(device)
            rows = bench_case(model, xb, yb, args.cap, args.repeats,
                              args.bisect_steps or (2 if args.quick else 4))
            res["batches"][bs] = rows
            print_case(bs, rows, args.repeats)
        tol_m = res["batches"][16]["matched_search"]["tol"] if 16 in bss else None
        w = bench_workload(model, x_all.to(device), y_all.to(device), n_paper, n_sample, tol_m,
                           args.cap)
        res["workload"] = w
        print_workload(w, n_paper, n_sample)
        results["models"][name] = res
        sys.stdout.flush()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
