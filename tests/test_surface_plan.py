"""The surface planner is pure: driven by a stub target and a fake clock, it picks the plan the
stubbed timings say is fastest, never times what a request pins, and walks batch sizes downhill."""
import dataclasses

import pytest

from landscape.surface import PLAN_KEYS, Plan, measure_plan


class Stub:
    """A PlanTarget whose runs advance a virtual clock by ``cost(plan)`` per point per image."""

    def __init__(self, cost, n=1024, conv_heavy=False, can_fold=False, can_reuse_first=False,
                 max_workers=1):
        self.cost, self.n, self.now, self.plan = cost, n, 0.0, None
        self.conv_heavy, self.can_fold = conv_heavy, can_fold
        self.can_reuse_first, self.max_workers = can_reuse_first, max_workers
        self.applied = []

    def clock(self):
        return self.now

    def apply(self, plan):
        self.plan = plan
        self.applied.append(plan)

    def run(self, n_points, limit):
        self.now += self.cost(self.plan) * n_points * limit

    def run_local(self, n_points, limit):
        self.now += self.cost(dataclasses.replace(self.plan, workers=1)) * n_points * limit


FREE = dict.fromkeys(PLAN_KEYS)
FREE["compile"] = False


@pytest.mark.parametrize("by_batch, chosen, untimed", [
    ({32: 3, 64: 1, 128: 2, 256: 4, 512: 5, 1024: 6}, 64, {512, 1024}),  # minimum below 128
    ({32: 9, 64: 8, 128: 7, 256: 6, 512: 5, 1024: 4}, 1024, {32}),        # keeps falling upwards
])
def test_batch_search_walks_downhill(by_batch, chosen, untimed):
    t = Stub(lambda p: by_batch[p.batch_size] * 1e-6)
    plan = measure_plan(t, FREE, clock=t.clock)
    timed = {p.batch_size for p in t.applied}
    assert plan.batch_size == chosen and {chosen, 128} <= timed and not timed & untimed


def test_plan_follows_the_timings_and_requests_pin_options():
    def cost(p):
        c = 1e-6 * (1 + abs(p.batch_size - 256) / 1024)
        c *= 0.9 if p.fold_bn else 1.0
        c *= 0.9 if p.first_layer else 1.0
        c *= 0.7 if p.workers == 2 else 1.0
        c *= 1.2 if p.channels_last else 1.0
        return c
    kw = dict(conv_heavy=True, can_fold=True, can_reuse_first=True, max_workers=2)
    t = Stub(cost, **kw)
    plan = measure_plan(t, FREE, clock=t.clock)
    assert plan.key() == {"batch_size": 256, "points_per_pass": 1, "channels_last": False,
                          "compile": False, "fold_bn": True, "first_layer": True, "workers": 2}
    assert plan.measured["seconds_per_point"] == pytest.approx(cost(plan) * 1024)
    again = Stub(cost, **kw)
    assert measure_plan(again, FREE, clock=again.clock).key() == plan.key()  # a pure function
    # every option pinned: only the pinned plan is ever applied
    pins = {"batch_size": 64, "points_per_pass": 1, "channels_last": True, "compile": False,
            "fold_bn": False, "first_layer": False, "workers": 1}
    t = Stub(cost, **kw)
    assert measure_plan(t, pins, clock=t.clock).key() == pins
    assert {tuple(sorted(p.key().items())) for p in t.applied} == {tuple(sorted(pins.items()))}


def test_vmap_kept_only_when_faster():
    fast = Stub(lambda p: 1e-6 * (0.5 if p.points_per_pass > 1 else 1.0))
    assert measure_plan(fast, FREE, clock=fast.clock).points_per_pass == 4
    slow = Stub(lambda p: 1e-6 * (1.5 if p.points_per_pass > 1 else 1.0))
    assert measure_plan(slow, FREE, clock=slow.clock).points_per_pass == 1


def test_plan_key_round_trip():
    p = Plan(64, 1, True, False, True, {"seconds_per_point": 2.0}, 2, True)
    assert Plan.from_key(p.key(), p.measured) == p
