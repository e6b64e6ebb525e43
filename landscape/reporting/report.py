"""The run report: one self-contained ``report.html`` and a fixed-width terminal summary.

``write_report(out_dir, summary)`` renders the ``summary.json`` dictionary of ``landscape analyze``
(schema in the module docstring of :mod:`landscape.claims` and the analyze command) into
``out_dir/report.html``: inline CSS, every figure embedded as a base64 ``data:`` URI read from the
PNG files listed in ``summary["figures"]`` (paths relative to ``out_dir``), no scripts and no
network access. Sections, in order and with these ids: models, landscape, hessian, fourier,
variance, robustness, cka, lesion, claims, settings. A section whose numbers and figures are both
missing says "not computed in this run". All text is HTML-escaped.

This module only formats: numbers come from ``summary``, verdicts from :mod:`landscape.claims`.
"""
from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..claims import Claim, evaluate_claims, high_frequency_drop, top_eigenvalue
from ..provenance import atomic_write
from ..summary import Summary, as_summary
from .report_claims import claims_body, loss_statement, test_text
from .report_format import (  # noqa: F401 - re-exported: tests and callers use report.<name>
    _by_model_table,
    _cell,
    _e,
    _figure_html,
    _figures_html,
    _flatten,
    _is_num,
    _kv_table,
    _label_of,
    _missing,
    _model_labels,
    _png_size,
    _section_figures,
    _table,
    fmt_duration,
    fmt_number,
    fmt_params,
    fmt_percent,
)

REPORT_NAME = "report.html"
from .report_format import NOT_COMPUTED, PNG_SIGNATURE  # noqa: E402,F401

#: (section id, heading, summary key holding its numbers, keys of summary["figures"] shown in it)
SECTIONS: tuple[tuple[str, str, str | None, tuple[str, ...]], ...] = (
    ("models", "Models", "models", ("models",)),
    ("landscape", "Loss landscape", "surface", ("landscape", "surface")),
    ("hessian", "Hessian", "hessian", ("hessian", "spectrum", "density")),
    ("fourier", "Fourier analysis of feature maps", "fourier", ("fourier",)),
    ("variance", "Feature-map variance", "variance", ("variance",)),
    ("robustness", "Robustness to band-limited noise", "robustness", ("robustness", "noise")),
    ("cka", "Representation similarity (CKA)", "cka", ("cka", "similarity")),
    ("lesion", "Lesion study", "lesion", ("lesion",)),
    ("claims", "Paper claims", None, ("claims",)),
    ("settings", "Settings and versions", "settings", ("settings",)),
)
SECTION_IDS = tuple(s[0] for s in SECTIONS)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;
 color:#1d232a;background:#fbfbfc;line-height:1.4}
header{background:#243447;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px 0;font-size:1.6em}
header p{margin:2px 0;color:#d6dde6}
nav{padding:8px 28px;background:#e9eef3;border-bottom:1px solid #cfd8e0}
nav a{margin-right:14px;color:#243447;text-decoration:none;font-weight:600}
main{padding:0 28px 40px 28px}
section{margin:26px 0;padding:8px 18px 18px 18px;background:#fff;border:1px solid #dde3e9;
 border-radius:6px}
h2{border-bottom:2px solid #243447;padding-bottom:4px}
table{border-collapse:collapse;margin:10px 0;font-size:.92em}
.tbl{max-width:100%;overflow-x:auto}
th,td{border:1px solid #cfd8e0;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef2f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
p.missing{color:#8a6d3b;background:#fcf8e3;border:1px solid #f0e1b3;padding:8px 12px;
 border-radius:4px;font-style:italic}
.figs{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
.models-row{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:14px;
 align-items:start}
.model-col{min-width:0}
.model-col h3{margin:6px 0;font-size:1.05em}
figure{margin:0;padding:6px;border:1px solid #e3e8ed;border-radius:4px;background:#fff;
 max-width:100%}
figure img{max-width:100%;height:auto;display:block}
.figs figure img{max-width:520px}
.figs figure.wide{flex:1 1 100%}
.figs figure.wide img{max-width:100%}
figcaption{font-size:.8em;color:#56606b;margin-top:3px;word-break:break-all}
.v-agrees{background:#d8f0d8;color:#1e5e1e;font-weight:700}
.v-disagrees{background:#f6d5d5;color:#8b1c1c;font-weight:700}
.v-inconclusive{background:#fcefc7;color:#7a5a00;font-weight:700}
.v-not-measured{background:#e6e6e6;color:#555;font-weight:700}
details{margin:6px 0}
summary{cursor:pointer;color:#243447}
code{font-size:.9em}
.note{color:#56606b;font-size:.9em}
"""


# ----------------------------------------------------------------------------- formatting
def _eval_images(models: Sequence[dict]) -> str:
    """ "2,000 test images" when every model was evaluated on the same number, else ""."""
    ns = {m.get("eval_samples") for m in models}
    n = ns.pop() if len(ns) == 1 else None
    return f"{n:,} test images" if isinstance(n, int) and n > 0 else ""


def _models_body(summary: dict) -> str:
    models = [m for m in summary.get("models") or [] if isinstance(m, dict)]
    if not models:
        return ""
    same_n = _eval_images(models)
    rows = []
    for m in models:
        sha = str(m.get("sha256") or "")
        rows.append([f"<td><b>{_e(m.get('label'))}</b></td>", f"<td>{_e(m.get('arch'))}</td>",
                     f"<td>{_e(m.get('family') or '—')}</td>",
                     f'<td class="num">{_e(fmt_params(m.get("params")))}</td>',
                     f"<td>{_e(m.get('dataset') or '—')}</td>",
                     _cell(m.get("test_acc"), "pct") if same_n or not _is_num(
                         m.get("eval_samples")) else _cell(
                         f"{fmt_percent(m.get('test_acc'))} ({m['eval_samples']:,} images)",
                         "text"),
                     _cell(m.get("test_nll")),
                     f"<td><code>{_e(m.get('checkpoint'))}</code></td>",
                     f'<td><code title="{_e(sha)}">{_e(sha[:12])}</code></td>'])
    on = f" on {same_n}" if same_n else ""
    return _table(["model", "architecture", "family", "parameters", "dataset",
                   f"test accuracy{on}", f"test NLL{on}", "checkpoint", "sha256"], rows)


def _landscape_body(summary: dict) -> str:
    return _by_model_table(summary, "surface", [
        ("centre loss", lambda e: (e.get("center_loss"), "num")),
        ("mean loss increase (within radius)", lambda e: (e.get("mean_loss_increase"), "num")),
        ("radius", lambda e: (e.get("radius"), "num")),
        ("grid", lambda e: ("×".join(str(g) for g in e["grid"]) if e.get("grid") else None,
                            "text")),
    ])


def _trace(e: dict) -> tuple[Any, str]:
    t, se = e.get("trace"), e.get("trace_se")
    if not _is_num(t):
        return (e["trace_note"], "text") if e.get("trace_note") else (None, "num")
    return (f"{fmt_number(t)} ± {fmt_number(se)}" if _is_num(se) else fmt_number(t)), "text"


def _spectrum_size(e: dict) -> tuple[Any, str]:
    """"80 values (16 batches × 16 images)"; the parts that are missing are left out."""
    s = e.get("spectrum") or {}
    n = s.get("count", s.get("n_values"))
    if not _is_num(n):
        return None, "num"
    parts = [f"{int(n):,} values"]
    nb, bs = s.get("n_batches_finished", s.get("n_batches")), s.get("batch_size")
    if _is_num(nb) and _is_num(bs):
        parts.append(f"({int(nb)} batches × {int(bs)} images)")
    elif _is_num(nb):
        parts.append(f"({int(nb)} batches)")
    return " ".join(parts), "text"


def _hessian_body(summary: dict) -> str:
    return _by_model_table(summary, "hessian", [
        ("largest eigenvalue λmax", lambda e: (top_eigenvalue(e), "num")),
        ("top eigenvalues", lambda e: (fmt_number(list(e["top_eigenvalues"])), "text")),
        ("bottom eigenvalues", lambda e: (fmt_number(list(e["bottom_eigenvalues"]))
                                          if e.get("bottom_eigenvalues") else None, "text")),
        ("trace ± s.e.", _trace),
        ("spectral density", lambda e: (e.get("density"), "text")),
        ("negative share of the max-eigenvalue spectrum",
         lambda e: (fmt_percent((e.get("spectrum") or {}).get("negative_share")), "text")),
        ("mean positive eigenvalue", lambda e: ((e.get("spectrum") or {}).get("mean_positive"),
                                                "num")),
        ("spectrum sample", _spectrum_size),
    ])


def _blocks_details(summary: dict, key: str, value_key: str, value_name: str,
                    claim: Claim | None, extra_cols: Sequence[tuple[str, Any]] = ()) -> str:
    """Per-model block tables (collapsible), side by side, plus the claim's per-model counts."""
    sec = summary.get(key)
    if not isinstance(sec, dict) or not sec:
        return ""
    labels = [k for k in _model_labels(summary) if k in sec]
    parts = []
    if claim is not None and claim.per_model:
        rows = [[f"<th>{_e(claim.quantity)}</th>"]
                + [_cell(claim.per_model.get(lab), "text") for lab in labels]]
        parts.append(_table(["quantity"] + labels, rows))
    cols = []
    for lab in labels:
        entry = sec.get(lab) or {}
        blocks = [b for b in entry.get("blocks") or [] if isinstance(b, dict)]
        rows = []
        for b in blocks:
            row = [f"<td>{_e(b.get('name'))}</td>", f"<td>{_e(b.get('kind'))}</td>",
                   f"<td>{_e(b.get('stage'))}</td>", _cell(b.get("depth")),
                   _cell(b.get(value_key))]
            for _, fn in extra_cols:
                try:
                    v, kind = fn(entry, b)
                except (KeyError, TypeError, ValueError):
                    v, kind = None, "num"
                row.append(_cell(v, kind))
            rows.append(row)
        table = _table(["block", "kind", "stage", "depth", value_name]
                       + [n for n, _ in extra_cols], rows)
        cols.append(f'<div class="model-col"><details><summary>{_e(lab)}: {len(blocks)} blocks'
                    f"</summary>{table}</details></div>")
    parts.append('<div class="models-row">' + "".join(cols) + "</div>")
    return "".join(parts)


def _noise_text(e: dict) -> str:
    """The noise as the protocol defines it: the paper's sign noise of amplitude eps in a square
    band (FreqAttack), or the radial band's L2 norm per image."""
    if e.get("protocol") == "paper":
        return (f"sign noise ±{fmt_number(e.get('eps'))} (normalized pixels), square band "
                f"±{fmt_number(e.get('width'))} (paper FreqAttack)")
    return f"L2 norm {fmt_number(e.get('noise_norm'))} per image, radial band"


def _robustness_body(summary: dict) -> str:
    sec = summary.get("robustness")
    if not isinstance(sec, dict) or not sec:
        return ""
    top = _by_model_table(summary, "robustness", [
        ("clean accuracy", lambda e: (e.get("clean_acc"), "pct")),
        ("noise", lambda e: (_noise_text(e), "text")),
        ("accuracy drop at the highest frequencies", lambda e: (high_frequency_drop(e), "pct")),
    ])
    labels = [k for k in _model_labels(summary) if k in sec]
    freqs: list[float] = []
    acc: dict[tuple[str, float], Any] = {}
    for lab in labels:
        e = sec.get(lab) or {}
        for f, a in zip(e.get("freqs") or [], e.get("acc") or [], strict=False):
            if _is_num(f):
                if float(f) not in freqs:
                    freqs.append(float(f))
                acc[(lab, float(f))] = a
    freqs.sort()
    rows = [[f"<th>{_e(fmt_number(f, 3))}π</th>"]
            + [_cell(acc.get((lab, f)), "pct") for lab in labels] for f in freqs]
    table = (_table(["noise frequency"] + [f"{lab} accuracy" for lab in labels], rows)
             if rows else "")
    return top + (f"<details><summary>accuracy per noise frequency</summary>{table}</details>"
                  if table else "")


def _finite(x: Any) -> bool:
    return _is_num(x) and math.isfinite(float(x))


def cka_not_applicable(e: dict) -> str:
    """Why a model's stage CKA comparison cannot be made ("" when it can)."""
    stages = {str(s) for s in e.get("stages") or []}
    if len(stages) < 2 or not _finite(e.get("across_stage_mean")):
        return (f"not applicable: all {len(e.get('names') or [])} blocks are in one stage, "
                "so there is no across-stage pair")
    if not _finite(e.get("within_stage_mean")):
        return "not applicable: no stage holds two blocks, so there is no within-stage pair"
    return ""


def _cka_value(e: dict, key: str) -> tuple[Any, str]:
    """A CKA number of one model, or the reason it does not exist; ``key="diff"``: within −
    across."""
    why = cka_not_applicable(e)
    if key == "diff":
        return (why, "text") if why else (
            float(e["within_stage_mean"]) - float(e["across_stage_mean"]), "num")
    return (why, "text") if why and not _finite(e.get(key)) else (e.get(key), "num")


def _cka_body(summary: dict) -> str:
    return _by_model_table(summary, "cka", [
        ("within-stage mean CKA", lambda e: _cka_value(e, "within_stage_mean")),
        ("across-stage mean CKA", lambda e: _cka_value(e, "across_stage_mean")),
        ("within − across", lambda e: _cka_value(e, "diff")),
        ("blocks", lambda e: (len(e.get("names") or []), "num")),
        ("stages", lambda e: (len({str(s) for s in e.get("stages") or []}), "num")),
    ])


def _lesion_body(summary: dict, claim: Claim | None) -> str:
    sec = summary.get("lesion")
    if not isinstance(sec, dict) or not sec:
        return ""
    top = _by_model_table(summary, "lesion", [
        ("baseline accuracy", lambda e: (e.get("baseline_acc"), "pct")),
        ("largest accuracy loss", lambda e: (max(float(e["baseline_acc"]) - float(b["acc"])
                                                 for b in e["blocks"]), "pct")),
        ("block with the largest loss", lambda e: (min(e["blocks"], key=lambda b: b["acc"])
                                                   ["name"], "text")),
    ])
    drop = ("accuracy loss", lambda e, b: (float(e["baseline_acc"]) - float(b["acc"]), "pct"))
    return top + _blocks_details(summary, "lesion", "acc", "accuracy", claim, [drop])


def timing_text(summary: dict) -> str:
    """Compute time of the results, this run's wall time, and how many came from the cache."""
    t = summary.get("timing") if isinstance(summary.get("timing"), dict) else {}
    wall = t.get("wall_time_s", summary.get("wall_time_s"))
    if not t:
        return f"wall time of this run: {fmt_duration(wall)}" if _is_num(wall) else ""
    n, reused, unknown = t.get("n_results", 0), t.get("n_reused", 0), t.get("n_unknown", 0)
    text = f"compute time of these results: {fmt_duration(t.get('compute_s'))}"
    if unknown:
        text += f" ({unknown} of {n} results without a recorded time)"
    if reused:
        text += (f"; {reused} of {n} results reused from the cache of earlier runs, "
                 f"so this run took {fmt_duration(wall)}")
    else:
        text += f"; all {n} results computed in this run, wall time {fmt_duration(wall)}"
    return text


def adapted_text(summary: dict) -> str:
    """The quick budget's adaptation to large models (``settings["adapted"]``), one sentence."""
    st = summary.get("settings") if isinstance(summary.get("settings"), dict) else {}
    adapted = st.get("adapted") if isinstance(st.get("adapted"), dict) else {}
    if not adapted:
        return ""
    what = ", ".join(f"{k} {v[0]} → {v[1]}" for k, v in adapted.items()
                     if isinstance(v, (list, tuple)) and len(v) == 2)
    return (f"The quick budget was reduced for the largest model's estimated cost (every model "
            f"alike): {what}.")


def _settings_body(summary: dict) -> str:
    parts = []
    if adapted_text(summary):
        parts.append(f"<p><b>{_e(adapted_text(summary))}</b></p>")
    if isinstance(summary.get("settings"), dict) and summary["settings"]:
        parts.append("<h3>Effective configuration</h3>" + _kv_table(summary["settings"]))
    parts.append(loss_statement(summary))
    if isinstance(summary.get("versions"), dict) and summary["versions"]:
        parts.append("<h3>Versions</h3>" + _kv_table(summary["versions"]))
    timing = timing_text(summary)
    if timing:
        parts.append(f"<p><b>Time:</b> {_e(timing)}</p>")
    return "".join(parts)


# ----------------------------------------------------------------------------- entry points
def render_html(out_dir: str | Path, summary: Summary | Mapping[str, Any],
                claims: Sequence[Claim] | None = None) -> str:
    """The report as one HTML string (figures read from ``out_dir``) from a summary of the
    current schema (:func:`landscape.summary.as_summary`; an older one is refused)."""
    out_dir = Path(out_dir)
    summary = as_summary(summary)
    claims = list(evaluate_claims(summary) if claims is None else claims)
    by_id = {c.id: c for c in claims}
    labels = _model_labels(summary)
    bodies = {
        "models": _models_body(summary),
        "landscape": _landscape_body(summary),
        "hessian": _hessian_body(summary),
        "fourier": _blocks_details(summary, "fourier", "dlogA_hf",
                                   "ΔlogA at the read-out frequency", None,
                                   [("read at", lambda e, b: (b.get("freq_label"), "text")),
                                    ("grid", lambda e, b: (b.get("grid"), "text"))]),
        "variance": _blocks_details(summary, "variance", "variance", "variance", None),
        "robustness": _robustness_body(summary),
        "cka": _cka_body(summary),
        "lesion": _lesion_body(summary, by_id.get("stage-lesion")),
        "claims": claims_body(claims, labels),
        "settings": _settings_body(summary),
    }
    sections = []
    for sid, title, _, fig_keys in SECTIONS:
        body = bodies[sid]
        figs = _figures_html(out_dir, summary, _section_figures(summary, fig_keys))
        content = body + figs if (body or figs) else _missing()
        sections.append(f'<section id="{sid}"><h2>{_e(title)}</h2>{content}</section>')
    known = {k for s in SECTIONS for k in s[3]}
    other = [rel for k, v in (summary.get("figures") or {}).items() if k not in known
             for rel in v or [] if str(rel).lower().endswith(".png")]
    if other:
        sections.append('<section id="other-figures"><h2>Other figures</h2>'
                        + _figures_html(out_dir, summary, [str(r) for r in other]) + "</section>")
    nav = "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title, _, _ in SECTIONS)
    datasets = sorted({str(m.get("dataset")) for m in summary.get("models") or []
                       if isinstance(m, dict) and m.get("dataset")})
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    timing = timing_text(summary)
    timing_html = f"<p>{_e(timing[:1].upper() + timing[1:])}</p>" if timing else ""
    head = (f"<header><h1>Loss landscape report</h1>"
            f"<p>Models: {_e(', '.join(labels) or 'none')}"
            f"{' · data: ' + _e(', '.join(datasets)) if datasets else ''}</p>"
            f"{timing_html}"
            f"<p>Generated {_e(when)} by landscape</p></header>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>landscape report</title>"
            f"<style>{_CSS}</style></head><body>{head}<nav>{nav}</nav><main>"
            + "".join(sections) + "</main></body></html>\n")


def write_report(out_dir: str | Path, summary: Summary | Mapping[str, Any],
                 claims: Sequence[Claim] | None = None) -> Path:
    """Write ``out_dir/report.html`` (self-contained) and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = render_html(out_dir, summary, claims)
    path = out_dir / REPORT_NAME
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()  # noqa: E731
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def format_summary_table(summary: Summary | Mapping[str, Any],
                         claims: Sequence[Claim] | None = None, max_detail: int = 60) -> str:
    """Fixed-width text: one row per model with the key numbers, then the claims' verdicts."""
    summary = as_summary(summary)
    labels = _model_labels(summary)
    models = {str(m.get("label")): m for m in summary.get("models") or [] if isinstance(m, dict)}

    def sec(key: str, lab: str) -> dict:
        s = summary.get(key)
        e = s.get(lab) if isinstance(s, dict) else None
        return e if isinstance(e, dict) else {}

    rows = []
    for lab in labels:
        m, h = models.get(lab, {}), sec("hessian", lab)
        c = sec("cka", lab)
        tr = fmt_number(h.get("trace"), 3) if _is_num(h.get("trace")) else "—"
        if _is_num(h.get("trace")) and _is_num(h.get("trace_se")):
            tr += f"±{fmt_number(h['trace_se'], 2)}"
        cka = ("—" if not c else "n/a*" if cka_not_applicable(c) else
               fmt_number(float(c["within_stage_mean"]) - float(c["across_stage_mean"]), 3))
        rows.append([lab, str(m.get("family") or "—"), fmt_params(m.get("params")),
                     fmt_percent(m.get("test_acc")), fmt_number(m.get("test_nll"), 4),
                     fmt_number(top_eigenvalue(h), 4) if h else "—", tr,
                     fmt_percent((h.get("spectrum") or {}).get("negative_share")) if h else "—",
                     fmt_number(sec("surface", lab).get("mean_loss_increase"), 4),
                     fmt_percent(high_frequency_drop(sec("robustness", lab)))
                     if sec("robustness", lab) else "—",
                     cka])
    out = [_text_table(["model", "family", "params", "acc", "NLL", "λmax", "trace",
                        "neg.share", "Δloss", "HF drop", "CKA w−a"], rows)]
    claims = list(evaluate_claims(summary) if claims is None else claims)
    crow = []
    for c in claims:
        if c.effect is not None and c.interval:
            d = (f"{fmt_number(c.effect, 3)} [{fmt_number(c.interval[0], 3)}, "
                 f"{fmt_number(c.interval[1], 3)}]")
        else:
            d = c.detail if len(c.detail) <= max_detail else c.detail[:max_detail - 1] + "…"
        crow.append([c.id, c.verdict + (" (fragile)" if c.fragile else ""), d, test_text(c),
                     str(len(c.dropped)) if c.dropped else ""])
    out.append(_text_table(["claim", "verdict", "effect [95% CI] or why", "exact test",
                            "dropped"], crow))
    for lab in labels:
        why = cka_not_applicable(sec("cka", lab)) if sec("cka", lab) else ""
        if why:
            out[0] += f"\n* CKA w−a of {lab}: {why}"
    timing = timing_text(summary)
    if timing:
        out.append(timing)
    return "\n\n".join(out)
