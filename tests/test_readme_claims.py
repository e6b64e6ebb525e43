"""The README's claims table is the committed reference report's (experiments/readme_claims)."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import readme_claims as R  # noqa: E402


def test_claims_markdown_rows_from_a_summary():
    summary = {"claims": [
        {"id": "fourier-msa-vit", "claim": "MSAs are low-pass: ViT", "quantity": "ΔlogA change",
         "effect": -0.25, "interval": [-0.3, -0.2], "n": 5, "n_detail": "5 checkpoints",
         "verdict": "agrees", "family": "vit", "pairs": [5, 5],
         "dropped": ["a: b0: no high frequency on a 4×4 map"], "extra": {"seed_level": True}},
        {"id": "flatness-hybrid", "claim": "flat: hybrid", "quantity": "Δ λmax", "effect": 2.0,
         "interval": [1.0, 3.0], "n": 2, "verdict": "inconclusive", "family": "hybrid",
         "pairs": [0, 1], "dropped": [], "extra": {"seed_level": False}},
        {"id": "stage-lesion", "claim": "lesion", "quantity": "acc", "effect": None,
         "interval": None, "n": 0, "n_detail": "", "verdict": "not measured", "family": "",
         "pairs": None, "dropped": []}]}
    rows = R.claims_markdown(summary).splitlines()
    assert rows[2] == ("| MSAs are low-pass (`fourier-msa-vit`) | ViT | ΔlogA change | "
                       "-0.25 [-0.3, -0.2] | 5 | 5/5 | **agrees** (1 dropped) |")
    assert rows[3] == ("| flat (`flatness-hybrid`) | hybrid | Δ λmax | 2 [1, 3] (one checkpoint: "
                       "units only) | 2 | 0/1 | **inconclusive** |")
    assert rows[4] == "| lesion (`stage-lesion`) | — | acc | — | 0 | — | **not measured** |"
    readme = f"a\n{R.BEGIN}\nold\n{R.END}\nb\n"
    assert R.render(readme, summary) == f"a\n{R.BEGIN}\n{R.claims_markdown(summary)}\n{R.END}\nb\n"


def test_committed_summary_parses_and_its_claims_are_this_versions():
    from landscape.claims import claims_to_json, evaluate_claims
    summary = json.loads((ROOT / "figures/demo/summary.json").read_text())
    assert [c["id"] for c in claims_to_json(evaluate_claims(summary, n_boot=50))] == \
        [c["id"] for c in summary["claims"]]


def test_readme_table_matches_the_committed_reference_report():
    summary = json.loads((ROOT / "figures/demo/summary.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert R.render(readme, summary) == readme, "run: python experiments/readme_claims.py"
