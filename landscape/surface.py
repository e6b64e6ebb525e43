"""Loss surfaces: loss and accuracy at ``theta0 + x*d1 (+ y*d2)`` over a grid, resumable HDF5.

Evaluation (:class:`SurfaceEvaluator`): the model is put in eval mode (BN uses its running
statistics, dropout off); the images are preloaded once as tensors on the model's device (and
augmented once with a seed when asked, so every grid point sees the same augmented images);
the perturbed parameters are written in place, ``p = theta0 + x*d1 + y*d2`` from resident
copies of ``theta0`` and the directions (no deepcopy, no state_dict reload); the forward runs
under ``torch.inference_mode``; loss sums and correct counts stay on the device and each chunk
of points costs one host synchronization. Several grid points can share one data pass through
``torch.func.functional_call`` + ``vmap`` (``points_per_pass > 1``). On a CPU, ``workers > 1``
evaluates that many points at once in threads, each on its own copy of the model with one
intra-op thread: small models keep one core busy better than they split one forward over two
(measured on this project's 2-core machine: a 117k-parameter ViT ran up to 1.4x faster). With
``None`` the evaluator measures batch size, memory format, points per pass and workers on a
slice of the data and keeps the fastest (the chosen plan is stored in the result file and reused on resume so that
a resumed run computes bitwise the same numbers).

Storage (:class:`SurfaceFile`): the reference tool's dataset names ``xcoordinates``,
``ycoordinates``, ``<split>_loss``, ``<split>_acc``; 2-D arrays are indexed ``[iy, ix]`` (shape
``(ny, nx)``, what ``plt.contour(*np.meshgrid(x, y), Z)`` expects; identical to the reference
for square grids). ``<split>_done`` marks finished points (unfinished points are NaN; a
diverged point is inf/NaN *and* done). With ``wd > 0``: ``<split>_loss_l2_paper`` =
NLL + wd * sum_p ||p||_2 and ``<split>_loss_l2_half`` = NLL + wd * 0.5 * ||theta||^2. The
file is small (directions live in a separate file) and is rewritten atomically (temporary file,
fsync, rename) after every chunk of points, so a kill at any moment, SIGKILL included, leaves
either the previous or the next consistent file: a restart loses at most the points in flight.
Chunks are a fixed partition of the grid (in row-major point order), so the computation of a
point never depends on what ran before it and a resumed or distributed run writes the same
numbers as an uninterrupted one.

Distribution: chunks are sharded over ranks by :mod:`landscape.distributed`; after each round
every rank's results are gathered to the writer (rank 0), which alone writes the file.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import distributed as dist
from .directions import Direction
from .errors import LandscapeError

FORMAT = "landscape-surface"
FORMAT_VERSION = 1
BATCH_CANDIDATES = (32, 64, 128, 256, 512)
VMAP_CANDIDATES = (4,)
METRICS = ("loss", "acc", "l2_paper", "l2_half")


def parse_grid(spec: str) -> np.ndarray:
    """``"min:max:num"`` -> ``np.linspace(min, max, num)`` (the reference's ``--x`` syntax);
    finite bounds, checked by :func:`landscape.validate.grid_spec`."""
    from .validate import grid_spec
    return np.linspace(*grid_spec(spec))


@dataclass
class Plan:
    """How points are evaluated: data batch size, points per pass (1 = loop, >1 = vmap),
    channels_last memory format, torch.compile, and ``fold_bn``: every ``nn.Sequential``
    (Conv2d, BatchNorm2d) pair replaced during evaluation by one conv whose weights are
    refolded from the perturbed tensors at each point (same function, one pass less over the
    activations; loop path only). ``workers``: grid points evaluated at the same time by that
    many threads, each on its own replica of the model with one intra-op thread (CPU only: on a
    few cores small models keep one core busier than they keep two)."""
    batch_size: int
    points_per_pass: int = 1
    channels_last: bool = False
    compile: bool = False
    fold_bn: bool = False
    measured: dict[str, float] = field(default_factory=dict)
    workers: int = 1

    def key(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "points_per_pass": self.points_per_pass,
                "channels_last": self.channels_last, "compile": self.compile,
                "fold_bn": self.fold_bn, "workers": self.workers}


def _timeit(fn: Callable[[], Any], reps: int = 2) -> float:
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _one_thread() -> None:
    """Thread-pool initializer: one intra-op thread for this thread. ATen sets a thread's
    OpenMP/MKL thread count lazily from the process default at its first parallel op: trigger
    that first, then set this thread's own count (the caller restores the process default)."""
    torch.get_num_threads()
    torch.set_num_threads(1)


class SurfaceEvaluator:
    """Evaluates loss/accuracy/L2 at points ``theta0 + x*d1 + y*d2`` of one model on one dataset.

    ``directions``: one or two :data:`Direction` dicts (names absent from a dict do not move;
    a name may be a buffer in ``states`` mode). ``augment(x, generator) -> x`` is applied once
    to the preloaded images (fixed seed ``aug_seed``). ``batch_size``/``points_per_pass``/
    ``channels_last`` ``None`` = measured by :meth:`prepare`. Nothing happens before
    :meth:`prepare`; :meth:`restore` puts ``theta0`` back.
    """

    def __init__(self, model: nn.Module, directions: Sequence[Direction], images: torch.Tensor,
                 labels: torch.Tensor, *, augment: Optional[Callable[..., torch.Tensor]] = None,
                 aug_seed: int = 0, batch_size: Optional[int] = None,
                 points_per_pass: Optional[int] = None, channels_last: Optional[bool] = None,
                 compile: bool = False, fold_bn: Optional[bool] = None, l2: bool = True,
                 workers: Optional[int] = None) -> None:
        if not 1 <= len(directions) <= 2:
            raise LandscapeError("a surface needs one or two directions")
        self.model = model
        self.directions = list(directions)
        self.images = images
        self.labels = labels
        self.augment = augment
        self.aug_seed = aug_seed
        self.req = dict(batch_size=batch_size, points_per_pass=points_per_pass,
                        channels_last=channels_last, compile=compile, fold_bn=fold_bn,
                        workers=workers)
        if workers is not None and workers < 1:
            raise LandscapeError(f"workers must be >= 1, got {workers}")
        self.plan: Optional[Plan] = None
        self.l2 = l2
        self._prepared = False
        self._children: list["SurfaceEvaluator"] = []
        self._pool: Any = None
        self._shared_data: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    # ------------------------------------------------------------------ setup
    def prepare(self, plan: Optional[Plan] = None, n_points: Optional[int] = None) -> Plan:
        """Eval mode, data on the device, resident theta0/directions, plan (given or measured;
        with ``n_points`` the measurement stays within ~3 % of the estimated run time)."""
        model = self.model
        p0 = next(model.parameters())
        self.device, self.dtype = p0.device, p0.dtype
        self._was_training = model.training
        model.eval()
        tensors = dict(model.named_parameters())
        tensors.update(dict(model.named_buffers()))
        self.names = sorted(set().union(*[set(d) for d in self.directions]),
                            key=list(tensors).index)
        for n in self.names:
            if n not in tensors:
                raise LandscapeError(f"direction names tensor {n!r} that the model does not have")
        self._tensors = tensors
        if self._shared_data is not None:  # a worker replica: the parent's prepared images
            x, self._y = self._shared_data
        else:
            x = self.images.to(self.device, self.dtype)
            if self.augment is not None:
                g = torch.Generator().manual_seed(int(self.aug_seed))
                x = torch.cat([self.augment(x[i:i + 256].cpu(), g).to(self.device)
                               for i in range(0, len(x), 256)])
            self._y = self.labels.to(self.device)
        self._x_plain = x
        self.n = len(self._y)
        has_conv = any(p.dim() == 4 for p in model.parameters()) and x.dim() == 4
        self._has_conv = has_conv
        self._set_channels_last(False)
        self._param_names = [n for n, _ in model.named_parameters()]
        self._prepared = True
        if plan is None:
            plan = self._measure_plan(n_points=n_points)
        self._apply_plan(plan)
        return plan

    @torch.no_grad()
    def _set_channels_last(self, on: bool) -> None:
        fmt = torch.channels_last if on else torch.contiguous_format
        if hasattr(self, "_theta0"):  # back to theta0 before changing layouts
            for n in self.names:
                self._tensors[n].copy_(self._theta0[n])
        if self._has_conv:
            self.model.to(memory_format=fmt)
        self._x = self._x_plain.contiguous(memory_format=fmt) if self._x_plain.dim() == 4 \
            else self._x_plain
        tensors = dict(self.model.named_parameters())
        tensors.update(dict(self.model.named_buffers()))
        self._tensors = tensors

        def lay(t: torch.Tensor) -> torch.Tensor:
            return t.contiguous(memory_format=fmt) if t.dim() == 4 else t.contiguous()

        if not hasattr(self, "_theta0"):
            self._theta0 = {n: tensors[n].detach().clone() for n in self.names}
            self._dirs = [{n: d[n].detach().to(self.device, tensors[n].dtype) if n in d
                           else torch.zeros_like(tensors[n]) for n in self.names}
                          for d in self.directions]
        self._theta0 = {n: lay(t) for n, t in self._theta0.items()}
        self._dirs = [{n: lay(t) for n, t in d.items()} for d in self._dirs]
        pnames = {n for n, _ in self.model.named_parameters()}
        self._fixed_l2 = [p.detach() for n, p in self.model.named_parameters() if n not in self.names]
        self._moving_params = [n for n in self.names if n in pnames]

    def _conv_bn_pairs(self) -> list[tuple[nn.Sequential, int, nn.Conv2d, nn.BatchNorm2d]]:
        out = []
        for mod in self.model.modules():
            if isinstance(mod, nn.Sequential):
                ch = list(mod)
                for i in range(len(ch) - 1):
                    c, b = ch[i], ch[i + 1]
                    if (type(c) is nn.Conv2d and type(b) is nn.BatchNorm2d and b.track_running_stats
                            and b.running_var is not None and c.out_channels == b.num_features):
                        out.append((mod, i, c, b))
        return out

    def _install_fold(self, on: bool) -> None:
        for seq, i, conv, bn in getattr(self, "_fold_pairs", []):
            seq[i], seq[i + 1] = conv, bn
        self._fold_pairs, self._folded = [], []
        if not on:
            return
        for seq, i, conv, bn in self._conv_bn_pairs():
            f = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, conv.dilation, conv.groups, True, conv.padding_mode)
            f.weight = nn.Parameter(torch.empty_like(conv.weight), requires_grad=False)
            f.bias = nn.Parameter(torch.empty(conv.out_channels, dtype=conv.weight.dtype,
                                              device=conv.weight.device), requires_grad=False)
            seq[i], seq[i + 1] = f, nn.Identity()
            self._fold_pairs.append((seq, i, conv, bn))
            self._folded.append(f)
        self._refold()

    @torch.no_grad()
    def _refold(self) -> None:
        for (seq, i, conv, bn), f in zip(self._fold_pairs, self._folded):
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight
            torch.mul(conv.weight, scale.view(-1, 1, 1, 1), out=f.weight)
            b = -bn.running_mean * scale
            if bn.bias is not None:
                b = b + bn.bias
            if conv.bias is not None:
                b = b + conv.bias * scale
            f.bias.copy_(b)

    def _apply_plan(self, plan: Plan) -> None:
        self._install_fold(False)
        self._set_workers(plan)
        self.plan = plan
        self._set_channels_last(plan.channels_last)
        if plan.fold_bn and plan.points_per_pass > 1:
            raise LandscapeError("fold_bn works with points_per_pass=1 only")
        self._install_fold(plan.fold_bn)
        self._forward = self.model
        if plan.compile:
            self._forward = torch.compile(self.model)

    def _set_workers(self, plan: Plan) -> None:
        """Start (or stop) the replicas and threads of ``plan.workers``."""
        w = int(plan.workers)
        if w > 1 and (plan.compile or self.device.type != "cpu"):
            raise LandscapeError("workers > 1 is for CPU evaluation without torch.compile")
        sub = dataclasses.replace(plan, workers=1, measured={})  # what each replica runs
        if len(self._children) != w - 1:
            self._stop_workers()
            if w > 1:
                self._set_channels_last(False)  # theta0 in place, plain layout: copy that
                for _ in range(w - 1):
                    c = SurfaceEvaluator(copy.deepcopy(self.model), self.directions, self.images,
                                         self.labels, l2=self.l2)
                    c._shared_data = (self._x_plain, self._y)
                    self._children.append(c)
                before = torch.get_num_threads()
                self._pool = ThreadPoolExecutor(w, thread_name_prefix="surface",
                                                initializer=_one_thread)
                barrier = threading.Barrier(w, timeout=60)
                list(self._pool.map(lambda _: barrier.wait(), range(w)))  # all w threads up
                torch.set_num_threads(before)  # the process default and this thread: as before
        for c in self._children:
            if c._prepared:
                c._apply_plan(sub)
            else:
                c.prepare(sub)

    def _stop_workers(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for c in self._children:
            c.restore()
        self._children = []

    def _measure_plan(self, rounds: int = 2, n_points: Optional[int] = None,
                      budget_fraction: float = 0.03) -> Plan:
        """Pick batch size, channels_last and points per pass by timing (time per point per image).

        Batch sizes (powers of two from 32, and the data size), each timed on ``max(b, 256)``
        images, are searched from the one nearest 128 outwards, each way only while the time per
        image keeps falling (on the CPUs and GPUs measured it has one minimum, so the large,
        expensive sizes are timed only when the trend points there); the two best are timed again
        and the minimum kept (a busy machine disturbs all alike). channels_last is tried only for
        conv-dominated models, vmap over ``VMAP_CANDIDATES`` points once (it rarely pays on a
        CPU), the winner kept only when 5 % faster. With ``n_points`` the measurement stops
        exploring once its time would exceed ``budget_fraction`` of the estimated run (the
        first candidate, batch 128, is always timed).
        """
        import warnings
        r = self.req
        measured: dict[str, float] = {}
        best: dict[tuple[int, int, bool, bool], float] = {}
        t_start = time.perf_counter()

        def affordable(c: tuple[int, int, bool, bool], fraction: float = budget_fraction) -> bool:
            """Would timing ``c`` (warm-up + one timing) stay within the budget?"""
            if n_points is None or not best:
                return True
            per_img = min(best.values())
            cost = per_img * c[1] * (min(self.n, c[0]) + min(self.n, max(c[0], 256)))
            budget = fraction * per_img * self.n * n_points
            return time.perf_counter() - t_start + cost <= budget

        def time_one(c: tuple[int, int, bool, bool]) -> float:
            self._apply_plan(Plan(c[0], c[1], c[2], False, c[3]))
            n_img = min(self.n, max(c[0], 256))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = _timeit(lambda: self._evaluate_chunk(np.zeros((c[1], 2)), limit=n_img), 1)
            v = t / c[1] / n_img
            best[c] = min(best.get(c, math.inf), v)
            measured[f"batch_size={c[0]},points_per_pass={c[1]},channels_last={c[2]},fold_bn={c[3]}"] = best[c]
            return v

        def try_one(c: tuple[int, int, bool, bool]) -> bool:
            self._apply_plan(Plan(c[0], c[1], c[2], False, c[3]))
            try:  # warm-up on one batch (allocations, oneDNN primitives)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._evaluate_chunk(np.zeros((c[1], 2)), limit=min(c[0], self.n))
                return True
            except Exception:  # e.g. a model that vmap cannot batch
                measured[f"{c}:error"] = float("nan")
                return False

        conv_params = sum(p.numel() for p in self.model.parameters() if p.dim() == 4)
        conv_heavy = self._has_conv and conv_params > 0.5 * sum(
            p.numel() for p in self.model.parameters())
        cl_opts = [bool(r["channels_last"])] if r["channels_last"] is not None else \
            ([False, True] if conv_heavy else [False])
        cl = cl_opts[-1]  # sweep batch sizes in the likelier winner (channels_last for conv nets)
        if r["batch_size"] is not None:
            bs = int(r["batch_size"])
        else:
            sizes, b = [], 32
            while b < self.n:
                sizes.append(b)
                b *= 2
            sizes.append(self.n)

            def visit(i: int) -> bool:
                c = (sizes[i], 1, cl, False)
                if c not in best and affordable(c) and try_one(c):
                    time_one(c)
                return c in best

            i0 = min(range(len(sizes)), key=lambda i: abs(math.log2(sizes[i] / 128)))
            try_one((sizes[i0], 1, cl, False))
            time_one((sizes[i0], 1, cl, False))  # always timed: a model that cannot run says why
            for step in (-1, 1):  # walk each way while the time per image falls
                i = i0
                while 0 <= i + step < len(sizes) and visit(i + step) and \
                        best[(sizes[i + step], 1, cl, False)] < best[(sizes[i], 1, cl, False)]:
                    i += step
            for _ in range(rounds - 1):
                for c in sorted(best, key=best.get)[:2]:
                    if affordable(c):
                        time_one(c)
            bs = min(best, key=best.get)[0]
        if len(cl_opts) > 1 and affordable((bs, 2, cl, False)):
            for c in cl_opts:
                try_one((bs, 1, c, False))
            for _ in range(rounds):
                for c in cl_opts:
                    time_one((bs, 1, c, False))
            cl = min(cl_opts, key=lambda c: best[(bs, 1, c, False)])
        elif (bs, 1, cl, False) not in best:
            try_one((bs, 1, cl, False))
            time_one((bs, 1, cl, False))
        fold = False
        if r.get("fold_bn") is not None:
            fold = bool(r["fold_bn"])
        elif self._conv_bn_pairs() and affordable((bs, 2, cl, True)):
            c = (bs, 1, cl, True)
            if try_one(c):
                for _ in range(rounds):
                    time_one((bs, 1, cl, False))
                    time_one(c)
                # folding removes a pass over the activations: keep it unless measured slower
                fold = best[c] <= 1.02 * best[(bs, 1, cl, False)]
        workers = 1
        if r["workers"] is not None:
            workers = int(r["workers"])
        elif self.device.type == "cpu" and not r["compile"] and torch.get_num_threads() > 1:
            workers = self._measure_workers((bs, 1, cl, fold), best, measured, affordable, rounds)
            if workers > 1 and bs > 32:  # one thread per point may like smaller batches
                half = (max(32, bs // 2), 1, cl, fold)
                w2 = self._measure_workers(half, best, measured, affordable, 1, workers)
                if w2 > 1 and best[half + (w2,)] < best[(bs, 1, cl, fold, workers)]:
                    bs = half[0]
        k = 1
        if r["points_per_pass"] is not None:
            k = int(r["points_per_pass"])
        elif workers == 1:
            base = (bs, 1, cl, fold)
            for kk in VMAP_CANDIDATES:
                c = (max(8, bs // kk), kk, cl, False)
                if not affordable(c):
                    continue
                if base not in best:
                    time_one(base)
                if try_one(c) and time_one(c) < 0.95 * best[base]:
                    time_one(base)
                    time_one(c)
                    if best[c] < 0.95 * best[base]:
                        bs, k, fold = c[0], kk, False
                        break
        measured["measure_seconds"] = time.perf_counter() - t_start
        return Plan(int(bs), int(k), bool(cl), bool(r["compile"]), bool(fold), measured,
                    int(workers))

    def _measure_workers(self, base: tuple, best: dict, measured: dict, affordable: Callable,
                         rounds: int, w: Optional[int] = None) -> int:
        """``w`` (default: the intra-op thread count) one-thread workers on the ``base`` plan
        (batch, points per pass, channels_last, fold_bn) against one worker on the same plan,
        timed interleaved; returns w when at least 5 % faster per point, else 1."""
        import warnings
        w = w or min(torch.get_num_threads(), os.cpu_count() or 1)
        bs, k, cl, fold = base
        if w < 2 or not affordable((bs, 6 * k * (w + 1), cl, fold), 0.08):
            return 1
        key = base + (w,)
        n_img = min(self.n, max(bs, 512))  # longer than the batch-size trials: threads warm up
        pw, p1 = np.zeros((k * w, 2)), np.zeros((k, 2))
        try:
            self._apply_plan(Plan(bs, k, cl, False, fold, workers=w))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # the same replicas and threads throughout: the first passes of a new thread
                # pay for its memory (allocator arenas, first touch), so warm up on full passes
                run_w = lambda: self._evaluate_chunk(pw, limit=n_img)  # noqa: E731
                run_1 = lambda: self._evaluate_local(p1, limit=n_img)  # noqa: E731 - this thread
                run_w()
                run_1()
                t1 = math.inf
                for i in range(max(4, rounds)):  # interleaved: a busy machine disturbs both alike
                    best[key] = min(best.get(key, math.inf), _timeit(run_w, 1) / len(pw) / n_img)
                    t1 = min(t1, _timeit(run_1, 1) / len(p1) / n_img)
                    if i >= 1 and not 0.85 <= best[key] / t1 <= 1.0:
                        break  # clear either way: stop paying for the measurement
        except Exception:  # noqa: BLE001 - e.g. a model that cannot be deep-copied
            measured[f"workers={w}:error"] = float("nan")
            self._apply_plan(Plan(bs, k, cl, False, fold))
            return 1
        best[base] = min(best.get(base, math.inf), t1)
        ref = best[base]
        self._apply_plan(Plan(bs, k, cl, False, fold))
        measured[f"batch_size={bs},points_per_pass={k},channels_last={cl},fold_bn={fold},workers={w}"] = best[key]
        return w if best[key] < 0.95 * ref else 1

    # ------------------------------------------------------------------ evaluation
    def _batches(self, limit: Optional[int] = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.n if limit is None else min(limit, self.n)
        bs = self.plan.batch_size
        for i in range(0, n, bs):
            j = min(i + bs, n)
            yield self._x[i:j], self._y[i:j]

    @torch.no_grad()
    def _set_point(self, x: float, y: float) -> None:
        for n in self.names:
            p = self._tensors[n]
            torch.add(self._theta0[n], self._dirs[0][n], alpha=x, out=p)
            if len(self._dirs) > 1:
                p.add_(self._dirs[1][n], alpha=y)

    def _l2(self, moving: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.l2:  # not asked for: NaN, no work
            nan = torch.full((), float("nan"), dtype=torch.float64, device=self.device)
            return nan, nan
        ts = list(moving) + self._fixed_l2
        norms = torch.stack([t.double().norm() for t in ts])
        return norms.sum(), 0.5 * (norms ** 2).sum()

    def evaluate(self, points: np.ndarray) -> np.ndarray:
        """Rows ``[nll, accuracy, sum_p ||p||, 0.5 ||theta||^2]`` (float64) for points (K, 2);
        the last two are NaN when the evaluator was built with ``l2=False``."""
        if not self._prepared:
            self.prepare()
        return self._evaluate_chunk(np.asarray(points, dtype=np.float64).reshape(-1, 2))

    def _evaluate_chunk(self, points: np.ndarray, limit: Optional[int] = None) -> np.ndarray:
        if self._children and len(points) > 1:
            evs = [self, *self._children]
            parts = [np.arange(i, len(points), len(evs)) for i in range(len(evs))]
            futs = [self._pool.submit(e._evaluate_local, points[idx], limit)
                    for e, idx in zip(evs, parts) if len(idx)]
            out = np.empty((len(points), 4), dtype=np.float64)
            for f, idx in zip(futs, parts):
                out[idx] = f.result()
            return out
        if self._pool is not None:  # one point: still on a one-thread worker (same numbers)
            return self._pool.submit(self._evaluate_local, points, limit).result()
        return self._evaluate_local(points, limit)

    def _evaluate_local(self, points: np.ndarray, limit: Optional[int] = None) -> np.ndarray:
        k = self.plan.points_per_pass
        out = []
        with torch.inference_mode():
            for s in range(0, len(points), k):
                pts = points[s:s + k]
                if k == 1 or len(pts) == 1 and k == 1:
                    out.append(self._loop_point(pts[0], limit))
                else:
                    out.append(self._vmap_points(pts, limit))
            vals = torch.cat(out).cpu().numpy()  # one host sync for the chunk
        n = self.n if limit is None else min(limit, self.n)
        vals[:, 0] /= n
        vals[:, 1] /= n
        return vals

    def _loop_point(self, pt: np.ndarray, limit: Optional[int]) -> torch.Tensor:
        self._set_point(float(pt[0]), float(pt[1]))
        if self._folded:
            self._refold()
        loss = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.float64, device=self.device)
        for xb, yb in self._batches(limit):
            logits = self._forward(xb)
            loss += F.cross_entropy(logits.float() if logits.dtype in (torch.float16, torch.bfloat16)
                                    else logits, yb, reduction="sum").double()
            correct += (logits.argmax(1) == yb).sum()
        l2p, l2h = self._l2([self._tensors[n] for n in self._moving_params])
        return torch.stack([loss, correct, l2p, l2h]).unsqueeze(0)

    def _vmap_points(self, pts: np.ndarray, limit: Optional[int]) -> torch.Tensor:
        from torch.func import functional_call, vmap
        K = len(pts)
        stacked = {}
        for n in self.names:
            t0 = self._theta0[n]
            buf = torch.empty((K, *t0.shape), dtype=t0.dtype, device=t0.device)
            for i, (x, y) in enumerate(pts):
                torch.add(t0, self._dirs[0][n], alpha=float(x), out=buf[i])
                if len(self._dirs) > 1:
                    buf[i].add_(self._dirs[1][n], alpha=float(y))
            stacked[n] = buf
        fixed = {n: t for n, t in self._tensors.items() if n not in stacked}
        model = self.model

        def f(params: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
            return functional_call(model, (params, fixed), (xb,))

        fv = vmap(f, in_dims=(0, None))
        loss = torch.zeros(K, dtype=torch.float64, device=self.device)
        correct = torch.zeros(K, dtype=torch.float64, device=self.device)
        for xb, yb in self._batches(limit):
            logits = fv(stacked, xb)  # (K, B, C)
            B = logits.shape[1]
            ce = F.cross_entropy(logits.reshape(K * B, -1).float()
                                 if logits.dtype in (torch.float16, torch.bfloat16)
                                 else logits.reshape(K * B, -1), yb.repeat(K), reduction="none")
            loss += ce.view(K, B).double().sum(1)
            correct += (logits.argmax(2) == yb).sum(1)
        if not self.l2:
            nan = torch.full((K,), float("nan"), dtype=torch.float64, device=self.device)
            return torch.stack([loss, correct, nan, nan], 1)
        pn = [stacked[n].flatten(1).double().norm(dim=1) for n in self._moving_params]
        fixed_n = torch.stack([t.double().norm() for t in self._fixed_l2]) if self._fixed_l2 \
            else torch.zeros(1, dtype=torch.float64, device=self.device)
        moving_n = torch.stack(pn, 1) if pn else torch.zeros(K, 1, dtype=torch.float64,
                                                              device=self.device)
        l2p = moving_n.sum(1) + fixed_n.sum()
        l2h = 0.5 * ((moving_n ** 2).sum(1) + (fixed_n ** 2).sum())
        return torch.stack([loss, correct, l2p, l2h], 1)

    @torch.no_grad()
    def restore(self) -> None:
        """Parameters back to theta0 (bitwise), contiguous layout, original train/eval mode."""
        if not self._prepared:
            return
        self._stop_workers()
        self._install_fold(False)
        for n in self.names:
            self._tensors[n].copy_(self._theta0[n])
        if self._has_conv:
            self.model.to(memory_format=torch.contiguous_format)
        self.model.train(self._was_training)


# ---------------------------------------------------------------------------------------------
# Result file
# ---------------------------------------------------------------------------------------------

def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=lambda o: o.tolist() if hasattr(o, "tolist")
                      else str(o))


def _diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [k for k in keys if _json(a.get(k)) != _json(b.get(k))]


@dataclass
class SurfaceResult:
    """Raw surface numbers as read from a file; arrays are (nx,) or (ny, nx) indexed [iy, ix]."""
    path: str
    xcoordinates: np.ndarray
    ycoordinates: Optional[np.ndarray]
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any]

    @property
    def shape(self) -> tuple[int, ...]:
        return surface_shape(self.xcoordinates, self.ycoordinates)


def surface_shape(x: np.ndarray, y: Optional[np.ndarray]) -> tuple[int, ...]:
    return (len(x),) if y is None else (len(y), len(x))


def grid_points(x: np.ndarray, y: Optional[np.ndarray]) -> np.ndarray:
    """Flat (P, 2) array of grid points in the files' row-major order (iy major, ix minor)."""
    if y is None:
        return np.stack([x, np.zeros_like(x)], 1)
    X, Y = np.meshgrid(x, y)  # (ny, nx)
    return np.stack([X.ravel(), Y.ravel()], 1)


class SurfaceFile:
    """The surface HDF5 file: created, validated against an identity, updated atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.attrs: dict[str, Any] = {}
        self.datasets: dict[str, np.ndarray] = {}
        self.dataset_attrs: dict[str, dict[str, Any]] = {}

    @staticmethod
    def read(path: str | Path) -> "SurfaceFile":
        import h5py
        sf = SurfaceFile(path)
        try:
            with h5py.File(path, "r") as f:
                sf.attrs = {k: (v.decode() if isinstance(v, bytes) else v)
                            for k, v in f.attrs.items()}
                for k in f.keys():
                    sf.datasets[k] = np.asarray(f[k])
                    sf.dataset_attrs[k] = dict(f[k].attrs.items())
        except OSError as e:
            raise LandscapeError(f"{path} is not a readable HDF5 surface file ({e})") from None
        return sf

    def open(self, identity: Mapping[str, Any], x: np.ndarray, y: Optional[np.ndarray],
             split: str, eval_identity: Mapping[str, Any], wd: float,
             attrs: Mapping[str, Any]) -> None:
        """Load or create; refuse (LandscapeError) a file made with other settings."""
        if self.path.exists():
            from .provenance import resume_guard
            with resume_guard(self.path, "surface file"):
                old = SurfaceFile.read(self.path)
                if old.attrs.get("format") != FORMAT:
                    raise LandscapeError(f"{self.path} exists and is not a landscape surface "
                                         "file; choose another --out")
                old_id = json.loads(old.attrs.get("identity", "{}"))
            bad = _diff(old_id, dict(identity))
            if bad:
                raise LandscapeError(f"{self.path} was computed with other settings ({', '.join(bad)} "
                                     "differ); use another --out or delete the file")
            key = f"{split}_loss"
            if key in old.datasets:
                old_eval = json.loads(old.dataset_attrs[key].get("eval", "{}"))
                bad = _diff(old_eval, dict(eval_identity))
                if bad:
                    raise LandscapeError(f"{self.path} holds {split} results computed with other "
                                         f"settings ({', '.join(bad)} differ); use another --out "
                                         "or delete the file")
            self.attrs, self.datasets, self.dataset_attrs = old.attrs, old.datasets, old.dataset_attrs
        else:
            self.attrs = {"format": FORMAT, "format_version": FORMAT_VERSION,
                          "identity": _json(dict(identity))}
            self.attrs.update({k: (v if isinstance(v, (int, float, str)) else _json(v))
                               for k, v in attrs.items()})
            self.datasets["xcoordinates"] = np.asarray(x, dtype=np.float64)
            if y is not None:
                self.datasets["ycoordinates"] = np.asarray(y, dtype=np.float64)
        shape = surface_shape(x, y)
        names = [f"{split}_loss", f"{split}_acc"]
        if wd > 0:
            names += [f"{split}_loss_l2_paper", f"{split}_loss_l2_half"]
        for nm in names:
            if nm not in self.datasets:
                self.datasets[nm] = np.full(shape, np.nan)
        if f"{split}_done" not in self.datasets:
            self.datasets[f"{split}_done"] = np.zeros(shape, dtype=np.uint8)
        self.dataset_attrs.setdefault(f"{split}_loss", {})["eval"] = _json(dict(eval_identity))
        self.dataset_attrs[f"{split}_loss"]["wd"] = float(wd)

    def stored_plan(self, split: str) -> Optional[dict[str, Any]]:
        a = self.dataset_attrs.get(f"{split}_loss", {})
        return json.loads(a["plan"]) if "plan" in a else None

    def set_plan(self, split: str, plan: Plan) -> None:
        self.dataset_attrs[f"{split}_loss"]["plan"] = _json(plan.key())
        self.dataset_attrs[f"{split}_loss"]["plan_measurements"] = _json(plan.measured)

    def done(self, split: str) -> np.ndarray:
        return self.datasets[f"{split}_done"].ravel().astype(bool)

    def put(self, split: str, idx: np.ndarray, vals: np.ndarray, wd: float) -> None:
        """Store rows [nll, acc, l2_paper_norm, l2_half] at flat indices ``idx``."""
        def setflat(name: str, v: np.ndarray) -> None:
            a = self.datasets[name]
            flat = a.reshape(-1)
            flat[idx] = v
        setflat(f"{split}_loss", vals[:, 0])
        setflat(f"{split}_acc", vals[:, 1])
        if wd > 0:
            setflat(f"{split}_loss_l2_paper", vals[:, 0] + wd * vals[:, 2])
            setflat(f"{split}_loss_l2_half", vals[:, 0] + wd * vals[:, 3])
        setflat(f"{split}_done", np.ones(len(idx), dtype=np.uint8))

    def flush(self) -> None:
        """Atomic rewrite: temporary file, fsync, rename."""
        import h5py
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with h5py.File(tmp, "w", track_order=True) as f:
            for k, v in self.attrs.items():
                f.attrs[k] = v
            for k in sorted(self.datasets):
                ds = f.create_dataset(k, data=self.datasets[k], track_times=False)
                for ak, av in self.dataset_attrs.get(k, {}).items():
                    ds.attrs[ak] = av
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)


def load_surface(path: str | Path) -> SurfaceResult:
    """Read a surface file (ours or the reference tool's) into a :class:`SurfaceResult`."""
    sf = SurfaceFile.read(path)
    ds = dict(sf.datasets)
    x = ds.pop("xcoordinates", None)
    if x is None:
        raise LandscapeError(f"{path} has no xcoordinates dataset")
    y = ds.pop("ycoordinates", None)
    return SurfaceResult(str(path), x, y, ds, sf.attrs)


# ---------------------------------------------------------------------------------------------
# Directions file
# ---------------------------------------------------------------------------------------------

def write_directions_file(path: str | Path, directions: Sequence[Direction],
                          attrs: Mapping[str, Any]) -> None:
    """Directions to their own HDF5 file (``xdirection/<name>``, ``ydirection/<name>``), atomically."""
    import h5py
    from .directions import save_directions
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        save_directions(f, directions, {k: (v if isinstance(v, (int, float, str)) else _json(v))
                                        for k, v in attrs.items()})
    os.replace(tmp, path)


def read_directions_file(path: str | Path, model: nn.Module) -> tuple[list[Direction], dict[str, Any]]:
    """Directions from :func:`write_directions_file` on the model's device and dtypes."""
    import h5py
    from .directions import load_directions
    tensors = dict(model.named_parameters())
    tensors.update(dict(model.named_buffers()))
    dev = next(model.parameters()).device
    try:
        with h5py.File(path, "r") as f:
            dirs = load_directions(f, dev, {n: t.dtype for n, t in tensors.items()})
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except OSError as e:
        raise LandscapeError(f"cannot read directions file {path} ({e})") from None
    for d in dirs:
        for n, t in d.items():
            if n not in tensors or tensors[n].shape != t.shape:
                raise LandscapeError(f"directions file {path} does not fit this model ({n})")
    return dirs, attrs


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

def compute_surface(model: nn.Module, directions: Sequence[Direction], images: torch.Tensor,
                    labels: torch.Tensor, xcoords: np.ndarray, ycoords: Optional[np.ndarray],
                    path: str | Path, *, split: str = "test", identity: Optional[Mapping[str, Any]] = None,
                    eval_identity: Optional[Mapping[str, Any]] = None, wd: float = 0.0,
                    augment: Optional[Callable[..., torch.Tensor]] = None, aug_seed: int = 0,
                    batch_size: Optional[int] = None, points_per_pass: Optional[int] = None,
                    channels_last: Optional[bool] = None, compile: bool = False,
                    fold_bn: Optional[bool] = None, workers: Optional[int] = None,
                    points_per_flush: Optional[int] = None, attrs: Optional[Mapping[str, Any]] = None,
                    progress: bool = True) -> Optional[SurfaceResult]:
    """Evaluate the surface into ``path`` (resuming a partial file); returns the result on the
    writer rank (None on the others). Call from every rank under torchrun.

    ``identity`` (checkpoint hash, directions config, ...) must match an existing file's;
    ``eval_identity`` (data, samples, augmentation, wd, ...) must match the split's results.
    ``points_per_flush`` fixes the chunk (default: points_per_pass, at least 1; the chunk
    partition is part of the plan so it is the same on resume).
    """
    from tqdm import tqdm
    x = np.asarray(xcoords, dtype=np.float64)
    y = None if ycoords is None else np.asarray(ycoords, dtype=np.float64)
    if y is not None and len(directions) < 2:
        raise LandscapeError("a 2-D grid needs two directions")
    identity = dict(identity or {})
    identity.update({"xcoordinates": x.tolist(), "ycoordinates": None if y is None else y.tolist(),
                     "ndirections": len(directions)})
    eval_identity = dict(eval_identity or {})
    eval_identity.update({"n_samples": int(len(labels)), "wd": float(wd), "augment": augment is not None,
                          "aug_seed": int(aug_seed), "dtype": str(next(model.parameters()).dtype)})
    requested = {"batch_size": batch_size, "points_per_pass": points_per_pass,
                 "channels_last": channels_last, "compile": compile, "fold_bn": fold_bn,
                 "workers": workers}
    sf = SurfaceFile(path)
    err: Optional[str] = None
    stored = None
    if dist.is_writer():
        try:
            sf.open(identity, x, y, split, eval_identity, wd, dict(attrs or {}))
            stored = sf.stored_plan(split)
            if stored is not None:
                clash = [k for k, v in requested.items() if v is not None and k != "compile"
                         and v != stored.get(k, 1 if k == "workers" else False)] + (["compile"] if compile != stored["compile"] else [])
                if clash:
                    err = (f"{path} holds {split} results computed with {', '.join(clash)} = "
                           f"{', '.join(str(stored.get(k, 1 if k == 'workers' else False)) for k in clash)}; resume with the same "
                           "values (or leave them automatic), or use another --out")
        except LandscapeError as e:
            err = str(e)
    err = dist.broadcast_object(err)
    if err:
        raise LandscapeError(err)
    stored = dist.broadcast_object(stored)
    ev = SurfaceEvaluator(model, directions, images, labels, augment=augment, aug_seed=aug_seed,
                          batch_size=batch_size, points_per_pass=points_per_pass,
                          channels_last=channels_last, compile=compile, fold_bn=fold_bn,
                          l2=wd > 0, workers=workers)
    try:
        if stored is not None:
            plan = Plan(stored["batch_size"], stored["points_per_pass"], stored["channels_last"],
                        stored["compile"], stored.get("fold_bn", False),
                        workers=int(stored.get("workers", 1)))
            ev.prepare(plan)
        else:
            n_todo = int((~sf.done(split)).sum()) if dist.is_writer() else 0
            plan = ev.prepare(n_points=max(1, n_todo // dist.world_size())) \
                if dist.is_writer() else None
            plan = dist.broadcast_object(plan)
            if not dist.is_writer():
                ev.prepare(plan)
        chunk = int(points_per_flush or plan.points_per_pass * plan.workers)
        if dist.is_writer():
            if stored is None:
                sf.set_plan(split, plan)
                sf.dataset_attrs[f"{split}_loss"]["points_per_flush"] = chunk
            else:
                chunk = int(sf.dataset_attrs[f"{split}_loss"].get("points_per_flush", chunk))
            sf.flush()
        chunk = dist.broadcast_object(chunk)
        pts = grid_points(x, y)
        P = len(pts)
        chunks = [np.arange(s, min(s + chunk, P)) for s in range(0, P, chunk)]
        done = sf.done(split) if dist.is_writer() else None
        todo = dist.broadcast_object(None if done is None else
                                     [c for c, idx in enumerate(chunks) if not done[idx].all()])
        mine = todo[dist.rank()::dist.world_size()]
        rounds = math.ceil(len(todo) / dist.world_size())
        bar = tqdm(total=P, initial=P - sum(len(chunks[c]) for c in todo), unit="pt",
                   desc=f"surface {split}", disable=not (progress and dist.is_writer()),
                   dynamic_ncols=True)
        for r in range(rounds):
            c = mine[r] if r < len(mine) else None
            res = None if c is None else ev.evaluate(pts[chunks[c]])
            got = dist.gather_to_writer((c, res))
            if dist.is_writer():
                for cc, vals in got:
                    if cc is None:
                        continue
                    sf.put(split, chunks[cc], vals, wd)
                    bar.update(len(chunks[cc]))
                sf.flush()
        bar.close()
    finally:
        ev.restore()
    dist.barrier()
    return load_surface(path) if dist.is_writer() else None
