"""The README's claims table is the committed reference report's (experiments/readme_claims)."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import readme_claims as R  # noqa: E402


def test_claims_markdown_rows_from_a_summary():
    summary = {"claims": [
        {"id": "fourier-msa", "claim": "MSAs are low-pass", "quantity": "dlogA change",
         "effect": -0.25, "interval": [-0.3, -0.2], "n": 9, "n_detail": "9 checkpoints",
         "verdict": "agrees"},
        {"id": "stage-lesion", "claim": "lesion", "quantity": "acc", "effect": None,
         "interval": None, "n": 0, "n_detail": "", "verdict": "not measured"}]}
    rows = R.claims_markdown(summary).splitlines()
    assert rows[2] == ("| MSAs are low-pass (`fourier-msa`) | dlogA change | -0.25 [-0.3, -0.2] | "
                       "9 (9 checkpoints) | **agrees** |")
    assert rows[3] == "| lesion (`stage-lesion`) | acc | — | 0 | **not measured** |"
    readme = f"a\n{R.BEGIN}\nold\n{R.END}\nb\n"
    assert R.render(readme, summary) == f"a\n{R.BEGIN}\n{R.claims_markdown(summary)}\n{R.END}\nb\n"


def test_readme_table_matches_the_committed_reference_report():
    summary = json.loads((ROOT / "figures/demo/summary.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert R.render(readme, summary) == readme, "run: python experiments/readme_claims.py"
