"""Surface plans: how grid points are evaluated, and the measurement that picks one.

A :class:`Plan` fixes every choice that changes the numbers or the speed of a surface: data
batch size, grid points per data pass (vmap), channels_last, torch.compile, BN folding,
first-layer reuse and CPU workers. :func:`measure_plan` picks the unset ones by timing candidate
plans on a :class:`PlanTarget` (the evaluator); it is pure: the clock is injected and everything
it learns comes from the target's ``apply``/``run`` calls, so a test drives it with a stub and a
fake clock. The chosen plan is stored in the result file and reused on resume.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

VMAP_CANDIDATES = (4,)
PLAN_KEYS = ("batch_size", "points_per_pass", "channels_last", "compile", "fold_bn",
             "first_layer", "workers")


@dataclass
class Plan:
    """How points are evaluated.

    ``batch_size`` images per forward; ``points_per_pass`` grid points per data pass (1 = loop,
    >1 = ``torch.func.vmap``); ``channels_last`` memory format; ``compile`` torch.compile;
    ``fold_bn``: every ``nn.Sequential`` (Conv2d, BatchNorm2d) pair replaced during evaluation by
    one conv refolded from the perturbed tensors at each point (loop path only); ``first_layer``:
    the first layer's output computed as ``W0 x + a D1 x + b D2 x`` from three terms computed
    once for all points (loop path only); ``workers``: grid points evaluated at the same time
    by that many threads, each on its own model replica with one intra-op thread (CPU only).
    ``measured``: the timings behind an automatic plan (``seconds_per_point`` among them).
    """
    batch_size: int
    points_per_pass: int = 1
    channels_last: bool = False
    compile: bool = False
    fold_bn: bool = False
    measured: dict[str, float] = field(default_factory=dict)
    workers: int = 1
    first_layer: bool = False

    def key(self) -> dict[str, Any]:
        """The choices (what a resume must reuse), without the measurements."""
        return {k: getattr(self, k) for k in PLAN_KEYS}

    @staticmethod
    def from_key(key: Mapping[str, Any], measured: Mapping[str, float] | None = None) -> Plan:
        """The plan recorded by :meth:`key` (missing keys of older files: their defaults)."""
        return Plan(int(key["batch_size"]), int(key.get("points_per_pass", 1)),
                    bool(key.get("channels_last", False)), bool(key.get("compile", False)),
                    bool(key.get("fold_bn", False)), dict(measured or {}),
                    int(key.get("workers", 1)), bool(key.get("first_layer", False)))

    def label(self) -> str:
        return ",".join(f"{k}={getattr(self, k)}" for k in PLAN_KEYS if k != "compile")


class PlanTarget(Protocol):
    """What :func:`measure_plan` needs from an evaluator."""
    n: int  # images
    conv_heavy: bool  # channels_last worth trying
    can_fold: bool  # has (Conv2d, BatchNorm2d) pairs
    can_reuse_first: bool  # first-layer reuse applies
    max_workers: int  # > 1: CPU workers may be tried

    def apply(self, plan: Plan) -> None: ...
    def run(self, n_points: int, limit: int) -> None: ...  # evaluate on all workers
    def run_local(self, n_points: int, limit: int) -> None: ...  # on this thread only


class _Planner:
    """Times candidate plans (seconds per point per image), walking each option in turn."""

    def __init__(self, target: PlanTarget, request: Mapping[str, Any], n_points: int | None,
                 clock: Callable[[], float], rounds: int, budget_fraction: float) -> None:
        self.t, self.req, self.n_points = target, dict(request), n_points
        self.clock, self.rounds, self.fraction = clock, rounds, budget_fraction
        self.best: dict[tuple, float] = {}
        self.measured: dict[str, float] = {}
        self.t_start = clock()

    # a candidate is (batch, points_per_pass, channels_last, fold_bn, first_layer, workers)
    @staticmethod
    def plan(c: tuple, compile: bool = False) -> Plan:
        return Plan(c[0], c[1], c[2], compile, c[3], workers=c[5], first_layer=c[4])

    def affordable(self, c: tuple, fraction: float | None = None, passes: int = 2) -> bool:
        """Would timing ``c`` (``passes`` passes) stay within the measurement budget?"""
        if self.n_points is None or not self.best:
            return True
        per_img = min(self.best.values())
        n = self.t.n
        cost = per_img * c[1] * c[5] * (min(n, c[0]) + (passes - 1) * min(n, max(c[0], 256)))
        budget = (fraction or self.fraction) * per_img * n * self.n_points
        return self.clock() - self.t_start + cost <= budget

    def _timed(self, fn: Callable[[], Any]) -> float:
        t = self.clock()
        fn()
        return self.clock() - t

    def warm(self, c: tuple) -> bool:
        """Apply ``c`` and run one batch (allocations); False if the model cannot run it."""
        try:
            self.t.apply(self.plan(c))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.t.run(c[1] * c[5], min(c[0], self.t.n))
            return True
        except Exception:  # noqa: BLE001 - e.g. a model that vmap cannot batch
            self.measured[f"{self.plan(c).label()}:error"] = float("nan")
            return False

    def time(self, c: tuple, local: bool = False) -> float:
        """One timed pass of ``c`` (already applied); the best time per point per image kept."""
        n_img = min(self.t.n, max(c[0], 256 if c[5] == 1 else 512))
        pts = c[1] * (1 if local else c[5])
        run = self.t.run_local if local else self.t.run
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v = self._timed(lambda: run(pts, n_img)) / pts / n_img
        key = c[:5] + (1,) if local else c
        self.best[key] = min(self.best.get(key, math.inf), v)
        self.measured[self.plan(key).label()] = self.best[key]
        return v

    def trial(self, c: tuple) -> bool:
        """Warm and time ``c`` once; False when it cannot run."""
        if not self.warm(c):
            return False
        self.time(c)
        return True

    def batch_size(self, cl: bool) -> int:
        """Sizes (powers of two from 32, and the data size) walked from the one nearest 128
        outwards, each way while the time per image falls; the two best timed again."""
        if self.req.get("batch_size") is not None:
            return int(self.req["batch_size"])
        sizes, b = [], 32
        while b < self.t.n:
            sizes.append(b)
            b *= 2
        sizes.append(self.t.n)
        c = lambda i: (sizes[i], 1, cl, False, False, 1)  # noqa: E731
        i0 = min(range(len(sizes)), key=lambda i: abs(math.log2(sizes[i] / 128)))
        self.warm(c(i0))
        self.time(c(i0))  # always timed: a model that cannot run says why
        for step in (-1, 1):
            i = i0
            while 0 <= i + step < len(sizes):
                nxt = c(i + step)
                if nxt not in self.best and not (self.affordable(nxt) and self.trial(nxt)):
                    break
                if self.best[nxt] >= self.best[c(i)]:
                    break
                i += step
        for _ in range(self.rounds - 1):
            for k in sorted(self.best, key=self.best.get)[:2]:
                if self.affordable(k):
                    self.t.apply(self.plan(k))
                    self.time(k)
        return min(self.best, key=self.best.get)[0]

    def duel(self, a: tuple, b: tuple, keep_b: float) -> bool:
        """Time ``a`` and ``b`` interleaved ``rounds`` times; True when ``b`` is at most
        ``keep_b`` times ``a``'s best time (``a`` must be runnable)."""
        if not self.warm(b):
            return False
        self.warm(a)
        for _ in range(self.rounds):
            self.t.apply(self.plan(a))
            self.time(a)
            self.t.apply(self.plan(b))
            self.time(b)
        return self.best[b] <= keep_b * self.best[a]

    def option(self, name: str, base: tuple, idx: int, possible: bool, keep: float) -> tuple:
        """Decide one boolean option (index ``idx`` of the candidate) by request or by a duel."""
        if self.req.get(name) is not None:
            return base[:idx] + (bool(self.req[name]),) + base[idx + 1:]
        on = base[:idx] + (True,) + base[idx + 1:]
        if possible and self.affordable(on) and self.duel(base, on, keep):
            return on
        return base

    def workers(self, base: tuple) -> tuple:
        """``max_workers`` one-thread workers against one, timed interleaved (local pass on
        this thread for the single worker); kept when at least 5 % faster per point."""
        if self.req.get("workers") is not None:
            return base[:5] + (int(self.req["workers"]),)
        w = self.t.max_workers
        many = base[:5] + (w,)
        if w < 2 or self.req.get("compile") or not self.affordable(many, 0.08, passes=6):
            return base
        try:
            self.t.apply(self.plan(many))
            self.t.run(base[1] * w, min(self.t.n, max(base[0], 512)))
            self.t.run_local(base[1], min(self.t.n, max(base[0], 512)))
            for i in range(max(4, self.rounds)):
                self.time(many)
                self.time(many, local=True)
                if i >= 1 and not 0.85 <= self.best[many] / self.best[base] <= 1.0:
                    break  # clear either way: stop paying for the measurement
        except Exception:  # noqa: BLE001 - e.g. a model that cannot be deep-copied
            self.measured[f"workers={w}:error"] = float("nan")
            return base
        return many if self.best[many] < 0.95 * self.best[base] else base

    def points_per_pass(self, base: tuple) -> tuple:
        """vmap over ``VMAP_CANDIDATES`` points (one worker, no fold/reuse), kept when 5 %
        faster."""
        if self.req.get("points_per_pass") is not None:
            return (base[0], int(self.req["points_per_pass"])) + base[2:]
        if base[5] != 1:
            return base
        for kk in VMAP_CANDIDATES:
            c = (max(8, base[0] // kk), kk, base[2], False, False, 1)
            if self.affordable(c) and self.duel(base, c, 0.95):
                return c
        return base

    def measure(self) -> Plan:
        r = self.req
        cl_opts = [bool(r["channels_last"])] if r.get("channels_last") is not None else \
            ([False, True] if self.t.conv_heavy else [False])
        cl = cl_opts[-1]  # sweep batch sizes in the likelier winner
        bs = self.batch_size(cl)
        c = (bs, 1, cl, False, False, 1)
        if c not in self.best:
            self.warm(c)
            self.time(c)
        if len(cl_opts) > 1:
            c = self.option("channels_last", (bs, 1, False, False, False, 1), 2, True, 1.0)
        # folding removes a pass over the activations: kept unless measured 2 % slower
        c = self.option("fold_bn", c, 3, self.t.can_fold, 1.02)
        c = self.option("first_layer", c, 4, self.t.can_reuse_first, 0.98)
        c = self.workers(c)
        if c[5] > 1 and c[0] > 32 and r.get("batch_size") is None:  # one thread per point
            half = (max(32, c[0] // 2),) + c[1:]
            if self.affordable(half, 0.08, passes=6) and self.warm(half):
                for _ in range(2):
                    self.time(half)
                    self.t.apply(self.plan(c))
                    self.time(c)
                    self.t.apply(self.plan(half))
                if self.best[half] < self.best[c]:
                    c = half
        c = self.points_per_pass(c)
        if c not in self.best:
            self.warm(c)
            self.time(c)
        self.measured["seconds_per_point"] = self.best[c] * self.t.n
        self.measured["measure_seconds"] = self.clock() - self.t_start
        return dataclasses.replace(self.plan(c, bool(r.get("compile"))), measured=self.measured)


def measure_plan(target: PlanTarget, request: Mapping[str, Any], n_points: int | None = None,
                 clock: Callable[[], float] = time.perf_counter, rounds: int = 2,
                 budget_fraction: float = 0.03) -> Plan:
    """The fastest plan for ``target`` among the options ``request`` leaves unset (None).

    Batch sizes first (see :meth:`_Planner.batch_size`), then channels_last (conv-heavy models),
    BN folding, first-layer reuse, CPU workers and vmap, each against the current best, timed
    interleaved so a busy machine disturbs both alike. With ``n_points`` the measurement stops
    exploring once it would exceed ``budget_fraction`` of the estimated run (the first batch
    size is always timed). ``plan.measured["seconds_per_point"]`` is the estimate per point.
    """
    return _Planner(target, request, n_points, clock, rounds, budget_fraction).measure()
