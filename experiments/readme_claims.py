"""Regenerate the README's claims table and the paragraph under it from a ``summary.json``.

The table sits between ``<!-- claims:begin -->`` and ``<!-- claims:end -->`` in README.md, the
paragraph that reads it between ``<!-- claims-text:begin -->`` and ``<!-- claims-text:end -->``;
this script rewrites both from the claims that ``landscape analyze`` computed (one row per family
or architecture: effect, 95% interval, exact test, n, verdict, fragility, dropped evidence), so the
README never disagrees with the report and no sentence about a verdict is written by hand.
``--rederive`` recomputes the claims from the summary's sections with this version's
rules and writes them back into the summary first (for a summary of the current schema).
``--check`` exits 1 when the README's block differs (the test suite runs it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from landscape.reporting.report_claims import FAMILY, interval_text, test_text

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- claims:begin -->", "<!-- claims:end -->"
TEXT_BEGIN, TEXT_END = "<!-- claims-text:begin -->", "<!-- claims-text:end -->"


def claims_markdown(summary: dict) -> str:
    """One markdown row per claim row: claim, family, measured quantity (its units), effect
    [95% CI] (a ratio of geometric means with the raw difference beside for a log-ratio row),
    the exact test (Mann-Whitney AUC and p, or the sign test and p), n, and the verdict with
    "fragile", the blocks that carry it and how many pieces of evidence the rule dropped."""
    lines = ["| claim | family | measured quantity | effect [95% CI] | exact test | n | verdict |",
             "|---|---|---|---|---|---|---|"]
    for c in summary.get("claims", []):
        dropped = len(c.get("dropped") or [])
        notes = (["fragile"] if c.get("fragile") else []) + (
            [f"carried by {', '.join(c['carried_by'])}"] if c.get("carried_by") else []) + (
            [f"{dropped} dropped"] if dropped else [])
        verdict = f"**{c['verdict']}**" + (f" ({'; '.join(notes)})" if notes else "")
        lines.append(f"| {c['claim'].split(':')[0]} (`{c['id']}`) | "
                     f"{FAMILY.get(c.get('family', ''), c.get('family') or '—')} | "
                     f"{c['quantity']} | {interval_text(c)} | {test_text(c, short=True)} | "
                     f"{c.get('n', 0)} | {verdict} |")
    return "\n".join(lines)


def _names(rows: list[dict]) -> str:
    return ", ".join(f"`{c['id']}`" for c in rows)


def claims_paragraph(summary: dict) -> str:
    """The paragraph under the table, generated from the rows: how many rows and checkpoints,
    the rows per verdict (with effect, interval and test for those that agree or disagree), the
    fragile ones and why, the rows that n caps at inconclusive, the blocks that carry a row, and
    the not-measured rows with their reasons."""
    claims = list(summary.get("claims", []))
    models = summary.get("models") or []
    by: dict[str, list[dict]] = {}
    for c in claims:
        by.setdefault(c["verdict"], []).append(c)
    head = (f"What the table says ({len(claims)} rows from {len(models)} checkpoints; generated "
            "by `experiments/readme_claims.py` from the rows, not written by hand):")
    out: list[str] = []
    for verdict in ("agrees", "disagrees"):
        rows = by.get(verdict, [])
        if rows:
            out.append(f"*{verdict}* ({len(rows)}): " + "; ".join(
                f"`{c['id']}` {interval_text(c)}, {test_text(c, short=True)}" for c in rows) + ".")
    capped = [c for c in by.get("inconclusive", []) if (c.get("test") or {}).get("note")]
    other = [c for c in by.get("inconclusive", []) if c not in capped]
    if other:
        out.append(f"*inconclusive* ({len(other)}): {_names(other)}.")
    if capped:
        n = sorted({"+".join(map(str, (c.get("test") or {}).get("n") or [])) for c in capped})
        out.append(f"*inconclusive, where n cannot reach p < 0.05 and not every checkpoint "
                   f"points one way* ({len(capped)}; checkpoints {', '.join(n)}): "
                   + "; ".join(f"`{c['id']}` {interval_text(c)}, {test_text(c, short=True)}"
                               for c in capped) + ".")
    fragile = [c for c in claims if c.get("fragile")]
    if fragile:
        def flips(c: dict) -> str:
            return ", ".join(f"without {k}: {v}" for k, v in (c.get("leave_one_out") or {}).items()
                             if v != c["verdict"])
        out.append("*fragile* (dropping one checkpoint changes the verdict): " + "; ".join(
            f"`{c['id']}` {c['verdict']} ({flips(c)})" for c in fragile) + ".")
    carried = [c for c in claims if c.get("carried_by")]
    if carried:
        out.append("*carried by one block* (without it the verdict changes or the interval no "
                   "longer excludes 0 on the row's side): " + "; ".join(
                       f"`{c['id']}` by {', '.join(c['carried_by'])}" for c in carried) + ".")
    nm = by.get("not measured", [])
    if nm:
        out.append(f"*not measured* ({len(nm)}): " + "; ".join(
            f"`{c['id']}` ({c.get('detail') or 'no evidence'})" for c in nm) + ".")
    return head + "\n\n" + "\n".join(f"- {line}" for line in out)


def _replace(text: str, begin: str, end: str, body: str) -> str:
    if begin not in text or end not in text:
        raise SystemExit(f"README has no {begin} ... {end} block")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def render(readme: str, summary: dict) -> str:
    """``readme`` with its claims table (and, where the README has its markers, the paragraph
    under it) replaced from ``summary``."""
    out = _replace(readme, BEGIN, END, claims_markdown(summary))
    if TEXT_BEGIN in out or TEXT_END in out:
        out = _replace(out, TEXT_BEGIN, TEXT_END, claims_paragraph(summary))
    return out


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
        from landscape.store.provenance import write_json
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
