"""Evaluation of loss/accuracy/L2 at grid points ``theta0 + x*d1 (+ y*d2)`` of one model.

The model is put in eval mode (BN uses its running statistics, dropout off); the images are
preloaded once as tensors on the model's device (and augmented once with a seed when asked, so
every grid point sees the same augmented images); the perturbed parameters are written in
place, ``p = theta0 + x*d1 + y*d2`` from resident copies of ``theta0`` and the directions (no
deepcopy, no state_dict reload); the forward runs under ``torch.inference_mode``; loss sums and
correct counts stay on the device and each chunk of points costs one host synchronization.
Several grid points can share one data pass through ``torch.func.functional_call`` + ``vmap``
(``points_per_pass > 1``). On a CPU, ``workers > 1`` evaluates that many points at once in
threads, each on its own copy of the model with one intra-op thread. BN folding and first-layer
reuse come from :mod:`landscape.surface.layers`; the plan from :mod:`landscape.surface.plan`.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import LandscapeError
from .batched import l2_terms, stacked_points, start_pool, vmap_sums
from .directions import Direction
from .layers import BNFolder, FirstLayerReuse, conv_bn_pairs, first_layer, first_layer_bytes
from .plan import Plan, measure_plan

FIRST_LAYER_MAX_BYTES = 512 * 2 ** 20


def _images(x: torch.Tensor, augment: Callable[..., torch.Tensor] | None,
            seed: int) -> torch.Tensor:
    """``x`` augmented once (generator seeded with ``seed``) when ``augment`` is given."""
    if augment is None:
        return x
    g = torch.Generator().manual_seed(int(seed))
    return torch.cat([augment(x[i:i + 256].cpu(), g).to(x.device) for i in range(0, len(x), 256)])


class SurfaceEvaluator:
    """Evaluates loss/accuracy/L2 at points ``theta0 + x*d1 + y*d2`` of one model on one dataset.

    ``directions``: one or two :data:`Direction` dicts (names absent from a dict do not move;
    a name may be a buffer in ``states`` mode). ``augment(x, generator) -> x`` is applied once
    to the preloaded images (seed ``aug_seed``). Options left ``None`` are measured by
    :meth:`prepare`, before which nothing happens; :meth:`restore` puts ``theta0`` back."""

    def __init__(self, model: nn.Module, directions: Sequence[Direction], images: torch.Tensor,
                 labels: torch.Tensor, *, augment: Callable[..., torch.Tensor] | None = None,
                 aug_seed: int = 0, batch_size: int | None = None,
                 points_per_pass: int | None = None, channels_last: bool | None = None,
                 compile: bool = False, fold_bn: bool | None = None, l2: bool = True,
                 workers: int | None = None, first_layer: bool | None = None) -> None:
        if not 1 <= len(directions) <= 2:
            raise LandscapeError("a surface needs one or two directions")
        if workers is not None and workers < 1:
            raise LandscapeError(f"workers must be >= 1, got {workers}")
        self.model, self.directions = model, list(directions)
        self.images, self.labels = images, labels
        self.augment, self.aug_seed = augment, aug_seed
        self.request = dict(batch_size=batch_size, points_per_pass=points_per_pass,
                            channels_last=channels_last, compile=compile, fold_bn=fold_bn,
                            workers=workers, first_layer=first_layer)
        self.plan: Plan | None = None
        self.l2, self._prepared = l2, False
        self.replicas: list[SurfaceEvaluator] = []
        self.pool: ThreadPoolExecutor | None = None
        self._shared_data: tuple[torch.Tensor, torch.Tensor] | None = None
        self._fold, self._reuse = BNFolder(), FirstLayerReuse()
        self._theta0: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ setup
    def prepare(self, plan: Plan | None = None, n_points: int | None = None,
                clock: Callable[[], float] | None = None) -> Plan:
        """Eval mode, data on the device, resident theta0/directions, plan (given or measured;
        with ``n_points`` the measurement stays within ~3 % of the estimated run time)."""
        model = self.model
        p0 = next(model.parameters())
        self.device, self.dtype = p0.device, p0.dtype
        self._was_training = model.training
        model.eval()
        tensors = self._named_tensors()
        self.names = sorted(set().union(*[set(d) for d in self.directions]),
                            key=list(tensors).index)
        for n in self.names:
            if n not in tensors:
                raise LandscapeError(f"direction names tensor {n!r} that the model does not have")
        if self._shared_data is not None:  # a worker replica: the parent's prepared images
            x, self._y = self._shared_data
        else:
            x = _images(self.images.to(self.device, self.dtype), self.augment, self.aug_seed)
            self._y = self.labels.to(self.device)
        self._x_plain = x
        self.n = len(self._y)
        params = list(model.parameters())
        self._has_conv = any(p.dim() == 4 for p in params) and x.dim() == 4
        conv = sum(p.numel() for p in params if p.dim() == 4)
        self.conv_heavy = self._has_conv and conv > 0.5 * sum(p.numel() for p in params)
        self.can_fold = bool(conv_bn_pairs(model))
        self._first = first_layer(model, x[:1])
        self.can_reuse_first = self._first is not None and first_layer_bytes(
            model, x, self._first[0], self.n) <= FIRST_LAYER_MAX_BYTES
        cpu = self.device.type == "cpu"
        self.max_workers = min(torch.get_num_threads(), os.cpu_count() or 1) if cpu else 1
        self._set_layout(False)
        self._prepared = True
        if plan is None:
            plan = measure_plan(self, self.request, n_points, clock=clock or time.perf_counter)
        self.apply(plan)
        return plan

    def _named_tensors(self) -> dict[str, torch.Tensor]:
        tensors = dict(self.model.named_parameters())
        tensors.update(dict(self.model.named_buffers()))
        return tensors

    @torch.no_grad()
    def _set_layout(self, channels_last: bool) -> None:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        for n in self._theta0:  # back to theta0 before changing layouts
            self._tensors[n].copy_(self._theta0[n])
        if self._has_conv:
            self.model.to(memory_format=fmt)
        x = self._x_plain
        self._x = x.contiguous(memory_format=fmt) if x.dim() == 4 else x
        self._tensors = self._named_tensors()

        def lay(t: torch.Tensor) -> torch.Tensor:
            return t.contiguous(memory_format=fmt) if t.dim() == 4 else t.contiguous()

        if not self._theta0:
            t = self._tensors
            self._theta0 = {n: t[n].detach().clone() for n in self.names}
            self._dirs = [{n: d[n].detach().to(self.device, t[n].dtype) if n in d
                           else torch.zeros_like(t[n]) for n in self.names}
                          for d in self.directions]
        self._theta0 = {n: lay(t) for n, t in self._theta0.items()}
        self._dirs = [{n: lay(t) for n, t in d.items()} for d in self._dirs]
        moving = set(self.names)
        self._fixed_l2 = [p.detach() for n, p in self.model.named_parameters() if n not in moving]
        pnames = {n for n, _ in self.model.named_parameters()}
        self._moving_params = [n for n in self.names if n in pnames]

    def apply(self, plan: Plan) -> None:
        """Switch to ``plan`` (layout, folding, reuse, workers); parameters stay at theta0."""
        if (plan.fold_bn or plan.first_layer) and plan.points_per_pass > 1:
            raise LandscapeError("fold_bn and first_layer work with points_per_pass=1 only")
        if plan.first_layer and self._first is None:
            raise LandscapeError("first_layer: this model's input does not go to a Conv2d/Linear "
                                 "first")
        self._reuse.remove()
        self._fold.remove()
        self._set_workers(plan)
        self.plan = plan
        self._set_layout(plan.channels_last)
        if plan.first_layer:
            name, layer = self._first
            if plan.fold_bn:
                self._fold.install(self.model, skip=layer)
            self._reuse.install(self.model, name, self._x, self._dirs, plan.batch_size)
        elif plan.fold_bn:
            self._fold.install(self.model)
        self._forward = torch.compile(self.model) if plan.compile else self.model

    def _set_workers(self, plan: Plan) -> None:
        """Start (or stop) the replicas and threads of ``plan.workers``."""
        w = int(plan.workers)
        if w > 1 and (plan.compile or self.device.type != "cpu"):
            raise LandscapeError("workers > 1 is for CPU evaluation without torch.compile")
        sub = dataclasses.replace(plan, workers=1, measured={})  # what each replica runs
        if len(self.replicas) != w - 1:
            self._stop_workers()
            if w > 1:
                self._set_layout(False)  # theta0 in place, plain layout: copy that
                for _ in range(w - 1):
                    c = SurfaceEvaluator(copy.deepcopy(self.model), self.directions, self.images,
                                         self.labels, l2=self.l2)
                    c._shared_data = (self._x_plain, self._y)
                    self.replicas.append(c)
                self.pool = start_pool(w)
        for c in self.replicas:
            if c._prepared:
                c.apply(sub)
            else:
                c.prepare(sub)

    def _stop_workers(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
        for c in self.replicas:
            c.restore()
        self.replicas = []

    # ------------------------------------------------------------------ PlanTarget
    def run(self, n_points: int, limit: int) -> None:
        """Evaluate ``n_points`` points (on every worker) over the first ``limit`` images."""
        self._evaluate_chunk(np.zeros((n_points, 2)), limit)

    def run_local(self, n_points: int, limit: int) -> None:
        """As :meth:`run` on this thread only."""
        self._evaluate_local(np.zeros((n_points, 2)), limit)

    # ------------------------------------------------------------------ evaluation
    def _batches(self, limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.n if limit is None else min(limit, self.n)
        bs = self.plan.batch_size
        for i in range(0, n, bs):
            j = min(i + bs, n)
            yield self._x[i:j], self._y[i:j]

    @torch.no_grad()
    def set_point(self, x: float, y: float) -> None:
        """Write ``theta0 + x*d1 + y*d2`` into the model's tensors."""
        for n in self.names:
            p = self._tensors[n]
            torch.add(self._theta0[n], self._dirs[0][n], alpha=x, out=p)
            if len(self._dirs) > 1:
                p.add_(self._dirs[1][n], alpha=y)

    def evaluate(self, points: np.ndarray) -> np.ndarray:
        """Rows ``[nll, accuracy, sum_p ||p||, 0.5 ||theta||^2]`` (float64) for points (K, 2);
        the last two are NaN when the evaluator was built with ``l2=False``."""
        if not self._prepared:
            self.prepare()
        return self._evaluate_chunk(np.asarray(points, dtype=np.float64).reshape(-1, 2))

    def _evaluate_chunk(self, points: np.ndarray, limit: int | None = None) -> np.ndarray:
        if self.replicas and len(points) > 1:
            evs = [self, *self.replicas]
            parts = [np.arange(i, len(points), len(evs)) for i in range(len(evs))]
            futs = [self.pool.submit(e._evaluate_local, points[idx], limit)
                    for e, idx in zip(evs, parts, strict=True) if len(idx)]
            out = np.empty((len(points), 4), dtype=np.float64)
            for f, idx in zip(futs, parts, strict=False):
                out[idx] = f.result()
            return out
        if self.pool is not None:  # one point: still on a one-thread worker (same numbers)
            return self.pool.submit(self._evaluate_local, points, limit).result()
        return self._evaluate_local(points, limit)

    def _evaluate_local(self, points: np.ndarray, limit: int | None = None) -> np.ndarray:
        k = self.plan.points_per_pass
        with torch.inference_mode():
            out = [self._loop_point(points[s], limit) if k == 1 else
                   self._vmap_points(points[s:s + k], limit) for s in range(0, len(points), k)]
            vals = torch.cat(out).cpu().numpy()  # one host sync for the chunk
        n = self.n if limit is None else min(limit, self.n)
        vals[:, :2] /= n
        return vals

    def _loop_point(self, pt: np.ndarray, limit: int | None) -> torch.Tensor:
        self.set_point(float(pt[0]), float(pt[1]))
        self._fold.refold()
        self._reuse.set_point(float(pt[0]), float(pt[1]))
        loss = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.float64, device=self.device)
        for xb, yb in self._batches(limit):
            logits = self._forward(xb)
            low = logits.dtype in (torch.float16, torch.bfloat16)
            loss += F.cross_entropy(logits.float() if low else logits, yb,
                                    reduction="sum").double()
            correct += (logits.argmax(1) == (yb.argmax(1) if yb.dim() == 2 else yb)).sum()
        norms = [self._tensors[n].double().norm().view(1) for n in self._moving_params]
        l2 = l2_terms(norms, self._fixed_l2, 1, self.l2, self.device)
        return torch.cat([torch.stack([loss, correct]).unsqueeze(0), l2], 1)

    def _vmap_points(self, pts: np.ndarray, limit: int | None) -> torch.Tensor:
        K = len(pts)
        stacked = stacked_points(self._theta0, self._dirs, self.names, pts)
        fixed = {n: t for n, t in self._tensors.items() if n not in stacked}
        loss, correct = vmap_sums(self.model, stacked, fixed, self._batches(limit), K)
        norms = [stacked[n].flatten(1).double().norm(dim=1) for n in self._moving_params]
        l2 = l2_terms(norms, self._fixed_l2, K, self.l2, self.device)
        return torch.cat([torch.stack([loss, correct], 1), l2], 1)

    @torch.no_grad()
    def restore(self) -> None:
        """Parameters back to theta0 (bitwise), layers and layout as before, train/eval mode."""
        if not self._prepared:
            return
        self._stop_workers()
        self._reuse.remove()
        self._fold.remove()
        for n in self.names:
            self._tensors[n].copy_(self._theta0[n])
        if self._has_conv:
            self.model.to(memory_format=torch.contiguous_format)
        self.model.train(self._was_training)
