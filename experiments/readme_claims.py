"""Regenerate the README's claims table from a report's ``summary.json``.

The table sits between ``<!-- claims:begin -->`` and ``<!-- claims:end -->`` in README.md; this
script rewrites that block from the claims that ``landscape analyze`` computed (one row per family:
effect, 95% interval, n, pair count, verdict, dropped evidence), so the README never disagrees with
the report. ``--rederive`` recomputes the claims from the summary's sections with this version's
rules and writes them back into the summary first (for a summary of the current schema).
``--check`` exits 1 when the README's block differs (the test suite runs it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- claims:begin -->", "<!-- claims:end -->"
FAMILY = {"vit": "ViT", "hybrid": "hybrid", "cnn": "CNN", "": "—"}


def _num(x: Any) -> str:
    if x is None:
        return "—"
    x = float(x)
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def claims_markdown(summary: dict) -> str:
    """One markdown row per claim row (one per family): claim, family, measured quantity (its
    units), effect [95% CI], n, checkpoint pairs pointing the paper's way, verdict, and how many
    pieces of evidence the rule dropped (named in the report)."""
    lines = ["| claim | family | measured quantity | effect [95% CI] | n | pairs the paper's way | "
             "verdict |", "|---|---|---|---|---|---|---|"]
    for c in summary.get("claims", []):
        eff = (f"{_num(c['effect'])} [{_num(c['interval'][0])}, {_num(c['interval'][1])}]"
               if c.get("effect") is not None and c.get("interval") else "—")
        if c.get("effect") is not None and not (c.get("extra") or {}).get("seed_level", True):
            eff += " (one checkpoint: units only)"
        pairs = f"{c['pairs'][0]}/{c['pairs'][1]}" if c.get("pairs") else "—"
        dropped = len(c.get("dropped") or [])
        verdict = f"**{c['verdict']}**" + (f" ({dropped} dropped)" if dropped else "")
        lines.append(f"| {c['claim'].split(':')[0]} (`{c['id']}`) | "
                     f"{FAMILY.get(c.get('family', ''), c.get('family') or '—')} | "
                     f"{c['quantity']} | {eff} | {c.get('n', 0)} | {pairs} | {verdict} |")
    return "\n".join(lines)


def render(readme: str, summary: dict) -> str:
    """``readme`` with its claims block replaced by the table of ``summary``."""
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"README has no {BEGIN} ... {END} block")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{claims_markdown(summary)}\n{END}{tail}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("summary", nargs="?", default=str(ROOT / "figures/demo/summary.json"))
    ap.add_argument("--readme", default=str(ROOT / "README.md"))
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    ap.add_argument("--rederive", action="store_true",
                    help="recompute the summary's claims with this version's rules first")
    args = ap.parse_args()
    summary = json.loads(Path(args.summary).read_text())
    if args.rederive:
        sys.path.insert(0, str(ROOT))
        from landscape.claims import claims_to_json, evaluate_claims
        from landscape.provenance import write_json
        summary["claims"] = claims_to_json(evaluate_claims(summary))
        write_json(args.summary, summary)
    readme = Path(args.readme).read_text()
    new = render(readme, summary)
    if args.check:
        if new != readme:
            print(f"{args.readme}'s claims table differs from {args.summary}", file=sys.stderr)
            return 1
        return 0
    Path(args.readme).write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
