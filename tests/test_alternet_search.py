"""The AlterNet build-up search: rules, stopping, logging and resume with a fake trainer."""
from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.alternet_search import (
    SCHEMA,
    SearchConfig,
    baseline_pattern,
    better,
    heads_per_stage,
    next_slot,
    parse_pattern,
    pattern_str,
    run_search,
    split_validation,
    spread,
    stage_slots,
    with_msa,
)
from landscape.errors import LandscapeError

ROOT = Path(__file__).resolve().parents[1]


class FakeTrainer:
    """Deterministic scores: NLL = 1 - sum of the effects of the MSA units in the pattern
    (+ 0.001 * seed); accuracy = 0.5 + the same sum. Effects are per (stage, position)."""

    def __init__(self, effects: dict[tuple[int, int], float], fail_after: int | None = None):
        self.effects = effects
        self.calls: list[tuple[str, int]] = []
        self.kwargs: list[dict] = []
        self.fail_after = fail_after

    def gain(self, pattern) -> float:
        return sum(self.effects.get((s, i), 0.01) for s, st in enumerate(pattern)
                   for i, u in enumerate(st) if u == "M")

    def __call__(self, pattern, model_kwargs, seed):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls.append((pattern_str(pattern), seed))
        self.kwargs.append(model_kwargs)
        g = self.gain(pattern)
        return {"acc": 0.5 + g + 0.002 * seed, "nll": 1.0 - g + 0.001 * seed,
                "params": 1000 + 10 * pattern_str(pattern).count("M")}


def counter_clock():
    c = itertools.count()
    return lambda: float(next(c))


def test_pattern_helpers():
    assert stage_slots(4) == [3, 1]
    assert stage_slots(3) == [2]
    assert stage_slots(3, keep_first=False) == [2, 0]
    assert stage_slots(1) == []
    assert parse_pattern("cc,cM") == ("CC", "CM")
    assert parse_pattern([["C", "C"], "CM"]) == ("CC", "CM")
    assert pattern_str(("CC", "CM")) == "CC,CM"
    assert with_msa(("CCCC", "CC"), 0, 3) == ("CCCM", "CC")
    assert baseline_pattern((2, 3)) == ("CC", "CCC")
    assert next_slot(("CCCC", "CM"), 1) == (0, 3)
    assert next_slot(("CM", "CM"), 1) is None
    assert heads_per_stage(4, 3, 2) == (3, 6, 12, 24)
    with pytest.raises(LandscapeError):
        parse_pattern("CX")
    with pytest.raises(LandscapeError):
        baseline_pattern((2, 0))


def test_better_and_spread():
    assert better(0.9, 1.0, "nll") and not better(1.0, 0.9, "nll")
    assert better(0.6, 0.5, "acc") and not better(0.5, 0.6, "acc")
    assert not better(0.95, 1.0, "nll", min_delta=0.1)
    assert not better(float("nan"), 1.0, "nll")
    s = spread([1.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == pytest.approx(np.sqrt(2.0)) and s["min"] == 1.0


def test_rule1_alternate_from_the_end_when_every_step_helps(tmp_path):
    tr = FakeTrainer({})
    res = run_search(tr, baseline_pattern((4, 4, 4)), SearchConfig(), tmp_path / "s.json",
                     clock=counter_clock())
    assert res.sequence == ["CCCC,CCCC,CCCC", "CCCC,CCCC,CCCM", "CCCC,CCCC,CMCM",
                            "CCCC,CCCM,CMCM", "CCCC,CMCM,CMCM", "CCCM,CMCM,CMCM",
                            "CMCM,CMCM,CMCM"]
    assert all(c["accepted"] for c in res.candidates)
    assert res.final_pattern == ("CMCM", "CMCM", "CMCM")
    assert res.stop_reason == "no stage can take another MSA block"
    # the strided first unit of a stage is never replaced (keep_first)
    assert all(p[0] == "C" for p in res.final_pattern)


def test_rule2_revert_and_try_an_earlier_stage(tmp_path):
    # An MSA at the end of the last stage hurts; the end of stage 1 helps, its next slot hurts.
    tr = FakeTrainer({(2, 3): -0.05, (1, 3): 0.02, (1, 1): -0.01, (0, 3): 0.03})
    res = run_search(tr, baseline_pattern((4, 4, 4)), SearchConfig(), tmp_path / "s.json",
                     clock=counter_clock())
    seq = [(c["pattern"], c["accepted"], c["parent"]) for c in res.candidates]
    assert seq == [("CCCC,CCCC,CCCC", True, None),
                   ("CCCC,CCCC,CCCM", False, 0),   # hurts: reverted
                   ("CCCC,CCCM,CCCC", True, 0),    # rule 2: end of the earlier stage, from 0
                   ("CCCC,CMCM,CCCC", False, 2),   # rule 1 in that stage: hurts, reverted
                   ("CCCM,CCCM,CCCC", True, 2),    # rule 2 again: end of stage 0
                   ("CMCM,CCCM,CCCC", True, 4)]    # rule 1 in stage 0 (default effect helps)
    assert res.final_pattern == ("CMCM", "CCCM", "CCCC")
    assert res.candidates[2]["rule"].startswith("2")
    # the reverted MSA never comes back: no later candidate has an M at (2, 3)
    assert all(c["pattern"].split(",")[2] == "CCCC" for c in res.candidates[2:])


def test_rule2_with_accuracy_metric_and_min_delta(tmp_path):
    tr = FakeTrainer({(1, 1): 0.005})
    cfg = SearchConfig(metric="acc", min_delta=0.008)
    res = run_search(tr, baseline_pattern((2, 2)), cfg, tmp_path / "s.json")
    # (1,1) improves accuracy by 0.005 < min_delta: rejected; then (0,1) by 0.01: accepted
    assert [(c["pattern"], c["accepted"]) for c in res.candidates] == [
        ("CC,CC", True), ("CC,CM", False), ("CM,CC", True)]


def test_rule3_heads_grow_by_stage_and_reach_the_trainer(tmp_path):
    heads = heads_per_stage(3)
    assert heads == (1, 2, 4)
    tr = FakeTrainer({})
    cfg = SearchConfig(model_kwargs={"heads": list(heads)})
    res = run_search(tr, baseline_pattern((2, 2, 2)), cfg, None)
    for kw, (pat, _) in zip(tr.kwargs, tr.calls, strict=True):
        assert kw == {"heads": [1, 2, 4], "pattern": pat}
    assert res.model_kwargs == {"heads": [1, 2, 4], "pattern": "CM,CM,CM"}
    # the final kwargs build the registry AlterNet, whose MSA units get wider and more heads
    import landscape_models as models
    m = models.create("alternet_tiny", num_classes=10, in_chans=1, img_size=28,
                      **res.model_kwargs)
    msa = [b for b in models.blocks(m) if b.kind == "msa"]
    assert [b.stage for b in msa] == [0, 1, 2]
    got_heads = [b.module.attn.heads for b in msa]
    widths = [b.module.attn.heads * b.module.attn.dim_head for b in msa]
    assert got_heads == [1, 2, 4]
    assert widths[0] < widths[1] < widths[2]
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_stopping_rules(tmp_path):
    hurts = {(s, i): -0.1 for s in range(3) for i in range(4)}
    res = run_search(FakeTrainer(hurts), baseline_pattern((4, 4, 4)),
                     SearchConfig(patience=2), None)
    assert len(res.candidates) == 3 and res.stop_reason.startswith("2 consecutive")
    res = run_search(FakeTrainer(hurts), baseline_pattern((4, 4, 4)), SearchConfig(), None)
    assert len(res.candidates) == 4 and res.stop_reason == "no earlier stage left to try"
    assert res.final_pattern == baseline_pattern((4, 4, 4))
    res = run_search(FakeTrainer({}), baseline_pattern((4, 4, 4)),
                     SearchConfig(max_candidates=3), None)
    assert len(res.candidates) == 3 and res.stop_reason.startswith("max_candidates")
    res = run_search(FakeTrainer({}), baseline_pattern((2, 2, 2)), SearchConfig(min_stage=1),
                     None)
    assert res.final_pattern == ("CC", "CM", "CM")
    with pytest.raises(LandscapeError):
        run_search(FakeTrainer({}), ("CM",), SearchConfig(), None)
    with pytest.raises(LandscapeError):
        run_search(FakeTrainer({}), ("CC",), SearchConfig(metric="err"), None)


def test_log_schema_and_written_after_each_candidate(tmp_path):
    path = tmp_path / "s.json"
    seen: list[int] = []

    class Watching(FakeTrainer):
        def __call__(self, pattern, model_kwargs, seed):
            if path.exists():  # the log on disk holds every candidate decided so far
                seen.append(len(json.loads(path.read_text())["candidates"]))
            return super().__call__(pattern, model_kwargs, seed)

    tr = Watching({(2, 1): -0.1})
    res = run_search(tr, baseline_pattern((2, 2, 2)), SearchConfig(seeds=(0, 1)), path,
                     clock=counter_clock())
    # before candidate i's first seed, i candidates are on disk
    assert seen == [0, 0, 1, 1, 2, 2, 3, 3]
    log = json.loads(path.read_text())
    assert log["schema"] == SCHEMA and log["status"] == "finished"
    assert log["baseline"] == "CC,CC,CC" and log["search"]["seeds"] == [0, 1]
    assert log["final"]["pattern"] == pattern_str(res.final_pattern) == "CM,CM,CC"
    assert log["final"]["sequence"] == ["CC,CC,CC", "CC,CM,CC", "CM,CM,CC"]
    for c in log["candidates"]:
        for key in ("index", "pattern", "params", "acc", "nll", "acc_mean", "nll_mean",
                    "acc_spread", "nll_spread", "time_s", "seeds", "accepted", "reason", "rule",
                    "parent", "stage", "slot", "model_kwargs", "score"):
            assert key in c, key
        assert c["seeds"] == [0, 1] and len(c["acc"]) == 2
        assert c["nll_mean"] == pytest.approx(np.mean(c["nll"]))
        assert c["nll_spread"]["std"] == pytest.approx(np.std(c["nll"], ddof=1))
        assert c["time_s"] == 2.0  # two trainings of one clock tick each
    assert [c["accepted"] for c in log["candidates"]] == [True, False, True, True]
    assert len(log["runs"]) == 8 and {"key", "pattern", "seed", "acc", "nll", "params",
                                      "time_s"} <= set(log["runs"][0])


@pytest.mark.parametrize("fail_after", [1, 3, 6])
def test_resume_after_kill_gives_the_same_log(tmp_path, fail_after):
    effects = {(2, 3): -0.05, (1, 3): 0.02, (1, 1): -0.01}
    base = baseline_pattern((4, 4, 4))
    cfg = SearchConfig(seeds=(0, 1))
    ref_path = tmp_path / "ref.json"
    ref = FakeTrainer(effects)
    run_search(ref, base, cfg, ref_path, clock=counter_clock())

    path = tmp_path / "s.json"
    first = FakeTrainer(effects, fail_after=fail_after)
    with pytest.raises(KeyboardInterrupt):
        run_search(first, base, cfg, path, clock=counter_clock())
    assert len(first.calls) == fail_after
    partial = json.loads(path.read_text())
    assert partial["status"] == "running" and len(partial["runs"]) == fail_after

    second = FakeTrainer(effects)
    run_search(second, base, cfg, path, clock=counter_clock())
    # nothing finished before the kill is trained again; together they did the reference's work
    assert not set(first.calls) & set(second.calls)
    assert first.calls + second.calls == ref.calls
    a, b = json.loads(path.read_text()), json.loads(ref_path.read_text())
    a.pop("meta"), b.pop("meta")
    assert a == b

    # a third start retrains nothing
    third = FakeTrainer(effects)
    run_search(third, base, cfg, path, clock=counter_clock())
    assert third.calls == []


def test_resume_refuses_other_settings(tmp_path):
    path = tmp_path / "s.json"
    run_search(FakeTrainer({}), baseline_pattern((2, 2)), SearchConfig(), path)
    with pytest.raises(LandscapeError, match="other settings"):
        run_search(FakeTrainer({}), baseline_pattern((2, 2)), SearchConfig(metric="acc"), path)
    with pytest.raises(LandscapeError, match="other settings"):
        run_search(FakeTrainer({}), baseline_pattern((2, 2)), SearchConfig(), path,
                   trainer_info={"epochs": 9})


def test_buildup_plot_from_the_log(tmp_path):
    from landscape.reporting.plots.alternet import plot_buildup
    path = tmp_path / "s.json"
    run_search(FakeTrainer({(2, 1): -0.1}), baseline_pattern((2, 2, 2)),
               SearchConfig(seeds=(0, 1)), path)
    files = plot_buildup(path, tmp_path / "fig" / "buildup")
    assert [f.suffix for f in files] == [".png", ".pdf"] and all(f.stat().st_size for f in files)


def _image_data(n: int, seed: int = 0):
    from landscape.data import ImageData
    g = torch.Generator().manual_seed(seed)
    return ImageData(images=torch.randn(n, 1, 28, 28, generator=g),
                     labels=torch.randint(0, 10, (n,), generator=g), num_classes=10,
                     name="synthetic", split="train", mean=(0.0,), std=(1.0,))


def test_split_validation_is_a_seeded_partition():
    d = _image_data(50)
    tr, va = split_validation(d, 10, seed=3)
    assert len(tr) == 40 and len(va) == 10
    assert sorted(np.concatenate([tr.indices, va.indices]).tolist()) == list(range(50))
    tr2, va2 = split_validation(d, 10, seed=3)
    assert np.array_equal(va.indices, va2.indices)
    assert torch.equal(va.images, d.images[torch.as_tensor(va.indices)])
    with pytest.raises(LandscapeError):
        split_validation(d, 50, seed=0)


def test_registry_trainer_end_to_end_tiny(tmp_path):
    from landscape.alternet_search import RegistryTrainer, compare_models
    from landscape.train import TrainConfig
    torch.set_num_threads(1)
    tr, va = split_validation(_image_data(48), 16, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=16, save_every=0, augment=False)
    trainer = RegistryTrainer("alternet_tiny", tr, va, cfg, tmp_path / "runs")
    scfg = SearchConfig(model_kwargs={"heads": [1, 2, 4]})
    res = run_search(trainer, baseline_pattern((1, 1, 2)), scfg, tmp_path / "s.json",
                     trainer_info=trainer.info())
    assert [c["pattern"] for c in res.candidates] == ["C,C,CC", "C,C,CM"]
    c = res.candidates[1]
    assert 0 <= c["acc_mean"] <= 1 and np.isfinite(c["nll_mean"]) and c["params"] > 0
    assert (tmp_path / "runs" / "alternet_tiny" / "C-C-CM" / "seed0" / "model.pt").exists()
    cmp = compare_models(trainer, {"final": ("alternet_tiny", res.model_kwargs)}, va, [0])
    # the comparison reloads the search's finished run: same validation numbers
    run = [r for r in json.loads((tmp_path / "s.json").read_text())["runs"]
           if r["pattern"] == pattern_str(res.final_pattern)][0]
    assert cmp["final"]["val_nll"][0] == pytest.approx(run["nll"])
    assert cmp["final"]["test_nll"][0] == pytest.approx(run["nll"])


def test_cli_help_and_settings(capsys):
    from landscape.cli import build_parser
    from landscape.commands.alternet import settings_from_args
    parser = build_parser()
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["alternet-search", "--help"])
    assert e.value.code == 0
    assert "--metric" in capsys.readouterr().out
    args = parser.parse_args(["alternet-search", "--baseline", "resnet_tiny", "--data",
                              "fashion-mnist", "--subset", "2000", "--epochs", "2", "--metric",
                              "acc", "--seeds", "0", "1", "--out", "x"])
    st = settings_from_args(args)
    assert st.subset == 2000 and st.metric == "acc" and st.seeds == (0, 1)
    assert st.train["epochs"] == 2 and st.compare == ("vit_tiny",)
    from landscape.cli import main
    assert main(["alternet-search", "--baseline", "vgg", "--out", "x", "--epochs", "0"]) == 2


def _load_experiment(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


def test_study_step_budget():
    ds = _load_experiment("data_size_study")
    # fixed step budget: 470 steps of 128 on 1200 / 6000 / 18000 / 60000 images
    assert [ds.epochs_for_budget(n, 128, 470) for n in (1200, 6000, 18000, 60000)] == [47, 10, 3, 1]
    assert ds.epochs_for_budget(100, 128, 5) == 5 and ds.epochs_for_budget(10**6, 128, 5) == 1
