"""The typed, versioned summary schema: round trip, typed access, refusal of other versions."""
import json

import pytest

from landscape.claims import evaluate_claims
from landscape.errors import LandscapeError
from landscape.reporting.report import write_report
from landscape.summary import SUMMARY_VERSION, ModelSummary, Summary, as_summary, read_summary

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
    assert s.sections == {"hessian": {"a": {"top_eigenvalues": [2.0, 1.0]}}}
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
    # Hessian evidence of a CNN and a ViT: the effects are known by hand (flatness: mean ViT
    # lambda_max 2 minus mean CNN 5; negative eigenvalues: mean max(-lmin, 0) / lmax per batch,
    # (0.5 + 0.5/3) / 2 - (1/4 + 1/6) / 2 = 0.125), so a claim that misread either form fails.
    raw = {**RAW, "models": [*RAW["models"], {"label": "b", "arch": "vit_tiny", "seed": 0,
                                              "family": "vit"}],
           "hessian": {"a": {"per_batch": {"lambda_max": [4.0, 6.0], "lambda_min": [-1.0, -1.0]}},
                       "b": {"per_batch": {"lambda_max": [1.0, 3.0],
                                           "lambda_min": [-0.5, -0.5]}}}}
    typed = Summary.from_json(raw)
    for form in (raw, typed, json.loads(json.dumps(typed.to_json()))):
        got = {c["id"]: c for c in (c.to_dict() for c in evaluate_claims(form, n_boot=20))}
        assert got["flatness"]["effect"] == pytest.approx(-3.0) and got["flatness"]["n"] == 2
        assert got["negative-eigenvalues"]["effect"] == pytest.approx(0.125)
        assert got["flatness"]["extra"]["bootstrap"]["seed"] == 3
        assert got["robustness"]["verdict"] == "not measured"
