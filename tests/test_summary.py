"""The typed, versioned summary schema: round trip, typed access, refusal of other versions."""
import json

import pytest

from landscape.claims import evaluate_claims
from landscape.errors import LandscapeError
from landscape.reporting.report import write_report
from landscape.summary import SUMMARY_VERSION, ModelSummary, Summary, as_summary, read_summary
from landscape.summary_sections import HessianEntry

RAW = {"schema_version": SUMMARY_VERSION,
       "models": [{"label": "a", "arch": "resnet_tiny", "seed": 0, "family": "cnn",
                   "params": 10, "test_acc": 0.9, "note": "kept"}],
       "settings": {"seed": 3, "budget": "quick"},
       "hessian": {"a": {"top_eigenvalues": [2.0, 1.0]}},
       "versions": {"torch": "2.13.0"}, "created": "2026-12-01T00:00:00+00:00"}


def test_parse_gives_typed_fields_and_round_trips():
    s = Summary.from_json(RAW)
    assert isinstance(s.models[0], ModelSummary)
    assert s.models[0].label == "a" and s.models[0].params == 10 and s.labels() == ["a"]
    assert s.models[0].extra == {"note": "kept"}
    assert s.sections == {"hessian": {"a": HessianEntry(top_eigenvalues=(2.0, 1.0))}}
    assert s.hessian is s.sections["hessian"] and s.model("a") is s.models[0]
    assert s.settings["seed"] == 3 and s["settings"]["budget"] == "quick"
    back = s.to_json()
    assert back["hessian"] == RAW["hessian"] and back["models"][0]["note"] == "kept"
    assert Summary.from_json(json.loads(json.dumps(back))) == s
    assert as_summary(s) is s


@pytest.mark.parametrize("version", [None, 0, SUMMARY_VERSION + 1])
def test_other_versions_are_refused_with_one_clear_line(version, tmp_path):
    old = {k: v for k, v in RAW.items() if k != "schema_version"}
    if version is not None:
        old["schema_version"] = version
    with pytest.raises(LandscapeError, match=f"this landscape reads version {SUMMARY_VERSION}: "
                                             "run `landscape analyze` again"):
        Summary.from_json(old)
    with pytest.raises(LandscapeError, match="schema"):
        evaluate_claims(old)
    with pytest.raises(LandscapeError, match="schema"):
        write_report(tmp_path, old)
    p = tmp_path / "summary.json"
    p.write_text(json.dumps(old))
    with pytest.raises(LandscapeError, match=str(p)):
        read_summary(p)


def test_malformed_summaries_are_refused():
    with pytest.raises(LandscapeError, match="label"):
        Summary.from_json({"schema_version": SUMMARY_VERSION, "models": [{"arch": "x"}]})
    with pytest.raises(LandscapeError, match="hessian must be a JSON object"):
        Summary.from_json({"schema_version": SUMMARY_VERSION, "hessian": [1, 2]})


def test_claims_read_the_typed_summary_and_the_json_alike():
    # Hessian evidence of a CNN and a ViT: the effects are known by hand. Both are positive
    # scale quantities, compared as ratios of geometric means (one checkpoint a side) with the
    # raw difference beside: flatness 2 / 5 = 0.4 (mean ViT lambda_max 2, CNN 5; difference -3);
    # lambda ratio: median per checkpoint of max(-lmin, 0) / lmax, ViT (0.5 + 0.5/3) / 2 = 1/3,
    # CNN (1/4 + 1/6) / 2 = 5/24: ratio 1.6, difference 0.125. A misread form fails.
    raw = {**RAW, "models": [*RAW["models"], {"label": "b", "arch": "vit_tiny", "seed": 0,
                                              "family": "vit"}],
           "hessian": {"a": {"per_batch": {"lambda_max": [4.0, 6.0], "lambda_min": [-1.0, -1.0]}},
                       "b": {"per_batch": {"lambda_max": [1.0, 3.0],
                                           "lambda_min": [-0.5, -0.5]}}}}
    typed = Summary.from_json(raw)
    for form in (raw, typed, json.loads(json.dumps(typed.to_json()))):
        got = {c["id"]: c for c in (c.to_dict() for c in evaluate_claims(form, n_boot=20))}
        assert got["flatness-vit"]["effect"] == pytest.approx(0.4)
        assert got["flatness-vit"]["raw"]["effect"] == pytest.approx(-3.0)
        assert got["lambda-ratio-vit"]["effect"] == pytest.approx(1.6)
        assert got["lambda-ratio-vit"]["raw"]["effect"] == pytest.approx(0.125)
        assert got["flatness-vit"]["extra"]["bootstrap"]["seed"] == 3
        assert all(c["verdict"] == "not measured" for i, c in got.items()
                   if i.startswith("robustness"))


def test_sections_are_typed_all_the_way_down():
    from landscape.summary_sections import Block, BlocksEntry, HessianEntry, PerBatch
    raw = {**RAW, "hessian": {"a": {"top_eigenvalues": [2.0, 1.0],
                                    "per_batch": {"lambda_max": [2.0, 3.0],
                                                  "lambda_min": [-1.0, None],
                                                  "negative_top_k": [1, 0], "top_k": 5}}},
           "fourier": {"a": {"readout": "paper", "blocks": [
               {"name": "input", "kind": "input", "depth": 0.0, "grid": 8, "freq": 0.75,
                "freq_label": "3π/4", "groups": [1.0, 2.0], "dlogA_hf": 1.5}]}}}
    s = Summary.from_json(raw)
    h = s.entries("hessian")["a"]
    assert isinstance(h, HessianEntry) and isinstance(h.per_batch, PerBatch)
    assert h.per_batch.lambda_min == (-1.0, None) and h.per_batch.top_k == 5
    f = s.entries("fourier")["a"]
    assert isinstance(f, BlocksEntry) and isinstance(f.blocks[0], Block)
    assert f.blocks[0].grid == 8 and f.blocks[0].extra == {}
    assert f.blocks[0].value == 1.5 and f.blocks[0].measure == "dlogA_hf"
    assert f.to_json() == raw["fourier"]["a"] and h.to_json() == raw["hessian"]["a"]
    assert s.entries("surface") == {}


@pytest.mark.parametrize("section, entry, field", [
    ("hessian", {"per_batch": {"lambda_max": "big"}}, "hessian.a.per_batch.lambda_max"),
    ("hessian", {"per_batch": [1]}, "hessian.a.per_batch"),
    ("surface", {"planes": [{"increase": [1, "x"]}]}, r"surface.a.planes\[0\].increase\[1\]"),
    ("fourier", {"blocks": {"x": 1}}, "fourier.a.blocks"),
    ("robustness", {"groups": {"acc": [[0.5], 3]}}, r"robustness.a.groups.acc\[1\]"),
    ("lesion", {"baseline_acc": "high"}, "lesion.a.baseline_acc"),
])
def test_malformed_entries_are_refused_naming_the_field(section, entry, field):
    with pytest.raises(LandscapeError, match=f"summary: {field} must be"):
        Summary.from_json({**RAW, section: {"a": entry}})


def test_version_1_is_refused():
    assert SUMMARY_VERSION == 2
    with pytest.raises(LandscapeError, match="schema version 1; this landscape reads version 2"):
        Summary.from_json({**RAW, "schema_version": 1})


@pytest.mark.parametrize("section, key", [("fourier", "dlogA_hf"), ("variance", "variance"),
                                          ("lesion", "acc")])
def test_block_value_is_read_from_its_sections_key_and_written_back_under_it(section, key):
    from landscape.summary_sections import Block
    rows = [{"name": "a", "kind": "conv", "depth": 0.5, key: 0.25, "grid": [4, 4]},
            {"name": "b", "kind": "msa", "depth": 1.0, "grid": [4, 2]},  # no value, h != w
            {"name": "c", "kind": "msa", "depth": 1.5, key: -1.0, "same_grid": True}]
    s = Summary.from_json({**RAW, section: {"a": {"blocks": rows}}})
    a, b, c = s.entries(section)["a"].blocks
    assert isinstance(a, Block) and (a.value, a.measure, a.grid) == (0.25, key, 4)
    assert b.value is None and b.measure is None and b.grid is None  # absent: None, not 0
    assert b.extra == {"grid": [4, 2]} and (c.value, c.same_grid) == (-1.0, True)
    back = s.to_json()[section]["a"]["blocks"]
    assert back[0] == {**rows[0], "grid": 4} and back[1] == rows[1] and back[2] == rows[2]
    assert "value" not in back[0] and "measure" not in back[0]
    assert Summary.from_json(json.loads(json.dumps(s.to_json()))) == s


def test_typed_entries_and_model_fields_are_refused_when_malformed():
    with pytest.raises(LandscapeError, match=r"summary: fourier.a.blocks\[0\].dlogA_hf must be"):
        Summary.from_json({**RAW, "fourier": {"a": {"blocks": [{"dlogA_hf": "high"}]}}})
    with pytest.raises(LandscapeError, match=r"summary: models\[0\].test_acc must be a number"):
        Summary.from_json({**RAW, "models": [{"label": "a", "test_acc": "90%"}]})
    with pytest.raises(LandscapeError, match="hessian.a.spectrum.count must be an integer"):
        Summary.from_json({**RAW, "hessian": {"a": {"spectrum": {"count": 2.5}}}})


def test_summary_built_from_entries_equals_the_parsed_file():
    from landscape.summary_sections import Block, BlocksEntry, CkaEntry, HessianEntry
    entries = {"fourier": {"a": BlocksEntry(blocks=(Block(name="x", depth=0.0, value=1.5,
                                                          measure="dlogA_hf"),))},
               "hessian": {"a": HessianEntry(trace=None, trace_note="not computed")},
               "cka": {"a": CkaEntry(within_stage_mean=0.5, stages=(0, 1))}}
    built = Summary(models=(ModelSummary("a", family="cnn", data_fraction=1.0),),
                    settings={"seed": 3}, sections=entries)
    text = json.dumps(built.to_json())
    assert json.loads(text)["fourier"]["a"]["blocks"] == [{"name": "x", "depth": 0.0,
                                                          "dlogA_hf": 1.5}]
    assert "trace" not in json.loads(text)["hessian"]["a"]  # None is written as absent
    assert Summary.from_json(json.loads(text)) == built
    assert built.hessian["a"].trace is None and built.model("a").data_fraction == 1.0
    with pytest.raises(LandscapeError, match="unknown section 'spectra'"):
        Summary(sections={"spectra": {}})
