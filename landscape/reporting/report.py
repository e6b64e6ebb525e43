"""The run report: one self-contained ``report.html`` and a fixed-width terminal summary.

``write_report(out_dir, summary)`` renders the typed summary of ``landscape analyze``
(:class:`landscape.summary.Summary`, whose attributes it reads; a ``summary.json`` object is
parsed first; schema in :mod:`landscape.summary`) into
``out_dir/report.html``: inline CSS, every figure embedded as a base64 ``data:`` URI read from the
PNG files listed in ``summary.figures`` (paths relative to ``out_dir``), no scripts and no
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
from ..store.provenance import atomic_write
from ..summary import ModelSummary, Summary, as_summary
from ..summary_sections import (
    Block,
    CkaEntry,
    HessianEntry,
    LesionEntry,
    RobustnessEntry,
    SpectrumStats,
)
from .report_claims import claims_body, loss_statement, test_text
from .report_format import (
    _by_model_table,
    _cell,
    _e,
    _figures_html,
    _is_num,
    _kv_table,
    _missing,
    _model_labels,
    _section_figures,
    _table,
    fmt_duration,
    fmt_number,
    fmt_params,
    fmt_percent,
)

REPORT_NAME = "report.html"

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
def _eval_images(models: Sequence[ModelSummary]) -> str:
    """ "2,000 test images" when every model was evaluated on the same number, else ""."""
    ns = {m.eval_samples for m in models}
    n = ns.pop() if len(ns) == 1 else None
    return f"{n:,} test images" if isinstance(n, int) and n > 0 else ""


def _models_body(summary: Summary) -> str:
    models = summary.models
    if not models:
        return ""
    same_n = _eval_images(models)
    rows = []
    for m in models:
        sha = m.sha256 or ""
        rows.append([f"<td><b>{_e(m.label)}</b></td>", f"<td>{_e(m.arch)}</td>",
                     f"<td>{_e(m.family or '—')}</td>",
                     f'<td class="num">{_e(fmt_params(m.params))}</td>',
                     f"<td>{_e(m.dataset or '—')}</td>",
                     _cell(m.test_acc, "pct") if same_n or m.eval_samples is None else _cell(
                         f"{fmt_percent(m.test_acc)} ({m.eval_samples:,} images)", "text"),
                     _cell(m.test_nll),
                     f"<td><code>{_e(m.checkpoint)}</code></td>",
                     f'<td><code title="{_e(sha)}">{_e(sha[:12])}</code></td>'])
    on = f" on {same_n}" if same_n else ""
    return _table(["model", "architecture", "family", "parameters", "dataset",
                   f"test accuracy{on}", f"test NLL{on}", "checkpoint", "sha256"], rows)


def _landscape_body(summary: Summary) -> str:
    return _by_model_table(summary, "surface", [
        ("centre loss", lambda e: (e.center_loss, "num")),
        ("mean loss increase (within radius)", lambda e: (e.mean_loss_increase, "num")),
        ("radius", lambda e: (e.radius, "num")),
        ("grid", lambda e: ("×".join(str(g) for g in e.grid) if e.grid else None, "text")),
    ])


def _trace(e: HessianEntry) -> tuple[Any, str]:
    t, se = e.trace, e.trace_se
    if t is None:
        return (e.trace_note, "text") if e.trace_note else (None, "num")
    return (f"{fmt_number(t)} ± {fmt_number(se)}" if se is not None else fmt_number(t)), "text"


def _spectrum_size(e: HessianEntry) -> tuple[Any, str]:
    """"80 values (16 batches × 16 images)"; the parts that are missing are left out."""
    s = e.spectrum
    n = s.values if s is not None else None
    if n is None:
        return None, "num"
    parts = [f"{n:,} values"]
    nb = s.n_batches_finished if s.n_batches_finished is not None else s.n_batches
    if nb is not None and s.batch_size is not None:
        parts.append(f"({nb} batches × {s.batch_size} images)")
    elif nb is not None:
        parts.append(f"({nb} batches)")
    return " ".join(parts), "text"


def _spectrum(e: HessianEntry) -> SpectrumStats:
    """The entry's spectrum numbers (every one None when it has none)."""
    return e.spectrum if e.spectrum is not None else SpectrumStats()


def _hessian_body(summary: Summary) -> str:
    return _by_model_table(summary, "hessian", [
        ("largest eigenvalue λmax", lambda e: (top_eigenvalue(e), "num")),
        ("top eigenvalues", lambda e: (fmt_number(list(e.top_eigenvalues))
                                       if e.top_eigenvalues is not None else None, "text")),
        ("bottom eigenvalues", lambda e: (fmt_number(list(e.bottom_eigenvalues))
                                          if e.bottom_eigenvalues else None, "text")),
        ("trace ± s.e.", _trace),
        ("spectral density", lambda e: (e.density, "text")),
        ("negative share of the max-eigenvalue spectrum",
         lambda e: (fmt_percent(_spectrum(e).negative_share), "text")),
        ("mean positive eigenvalue", lambda e: (_spectrum(e).mean_positive, "num")),
        ("spectrum sample", _spectrum_size),
    ])


def _blocks_details(summary: Summary, key: str, value_name: str, claim: Claim | None,
                    extra_cols: Sequence[tuple[str, Any]] = ()) -> str:
    """Per-model block tables (collapsible), side by side, plus the claim's per-model counts;
    a block's value column is its measured ``value``."""
    sec = summary.entries(key)
    if not sec:
        return ""
    labels = [k for k in _model_labels(summary) if k in sec]
    parts = []
    if claim is not None and claim.per_model:
        rows = [[f"<th>{_e(claim.quantity)}</th>"]
                + [_cell(claim.per_model.get(lab), "text") for lab in labels]]
        parts.append(_table(["quantity"] + labels, rows))
    cols = []
    for lab in labels:
        entry = sec[lab]
        blocks = list(entry.blocks or ())
        rows = []
        for b in blocks:
            row = [f"<td>{_e(b.name)}</td>", f"<td>{_e(b.kind)}</td>",
                   f"<td>{_e(b.stage)}</td>", _cell(b.depth), _cell(b.value)]
            for _, fn in extra_cols:
                try:
                    v, kind = fn(entry, b)
                except (TypeError, ValueError):
                    v, kind = None, "num"
                row.append(_cell(v, kind))
            rows.append(row)
        table = _table(["block", "kind", "stage", "depth", value_name]
                       + [n for n, _ in extra_cols], rows)
        cols.append(f'<div class="model-col"><details><summary>{_e(lab)}: {len(blocks)} blocks'
                    f"</summary>{table}</details></div>")
    parts.append('<div class="models-row">' + "".join(cols) + "</div>")
    return "".join(parts)


def _noise_text(e: RobustnessEntry) -> str:
    """The noise as the protocol defines it: the paper's sign noise of amplitude eps in a square
    band (FreqAttack), or the radial band's L2 norm per image."""
    if e.protocol == "paper":
        return (f"sign noise ±{fmt_number(e.eps)} (normalized pixels), square band "
                f"±{fmt_number(e.width)} (paper FreqAttack)")
    return f"L2 norm {fmt_number(e.noise_norm)} per image, radial band"


def _robustness_body(summary: Summary) -> str:
    sec = summary.robustness
    if not sec:
        return ""
    top = _by_model_table(summary, "robustness", [
        ("clean accuracy", lambda e: (e.clean_acc, "pct")),
        ("noise", lambda e: (_noise_text(e), "text")),
        ("accuracy drop at the highest frequencies", lambda e: (high_frequency_drop(e), "pct")),
    ])
    labels = [k for k in _model_labels(summary) if k in sec]
    freqs: list[float] = []
    acc: dict[tuple[str, float], Any] = {}
    for lab in labels:
        e = sec[lab]
        for f, a in zip(e.freqs or (), e.acc or (), strict=False):
            if f is not None:
                if f not in freqs:
                    freqs.append(f)
                acc[(lab, f)] = a
    freqs.sort()
    rows = [[f"<th>{_e(fmt_number(f, 3))}π</th>"]
            + [_cell(acc.get((lab, f)), "pct") for lab in labels] for f in freqs]
    table = (_table(["noise frequency"] + [f"{lab} accuracy" for lab in labels], rows)
             if rows else "")
    return top + (f"<details><summary>accuracy per noise frequency</summary>{table}</details>"
                  if table else "")


def _finite(x: Any) -> bool:
    return _is_num(x) and math.isfinite(float(x))


def cka_not_applicable(e: CkaEntry) -> str:
    """Why a model's stage CKA comparison cannot be made ("" when it can)."""
    stages = {str(s) for s in e.stages or ()}
    if len(stages) < 2 or not _finite(e.across_stage_mean):
        return (f"not applicable: all {len(e.names or ())} blocks are in one stage, "
                "so there is no across-stage pair")
    if not _finite(e.within_stage_mean):
        return "not applicable: no stage holds two blocks, so there is no within-stage pair"
    return ""


def _cka_diff(e: CkaEntry) -> float:
    """Within- minus across-stage mean CKA (NaN where either is missing)."""
    w, a = e.within_stage_mean, e.across_stage_mean
    return math.nan if w is None or a is None else w - a


def _cka_value(e: CkaEntry, key: str) -> tuple[Any, str]:
    """A CKA number of one model (``key``: "within", "across" or "diff", within − across), or
    the reason it does not exist."""
    why = cka_not_applicable(e)
    if key == "diff":
        return (why, "text") if why else (
            _cka_diff(e), "num")
    v = e.within_stage_mean if key == "within" else e.across_stage_mean
    return (why, "text") if why and not _finite(v) else (v, "num")


def _cka_body(summary: Summary) -> str:
    return _by_model_table(summary, "cka", [
        ("within-stage mean CKA", lambda e: _cka_value(e, "within")),
        ("across-stage mean CKA", lambda e: _cka_value(e, "across")),
        ("within − across", lambda e: _cka_value(e, "diff")),
        ("blocks", lambda e: (len(e.names or ()), "num")),
        ("stages", lambda e: (len({str(s) for s in e.stages or ()}), "num")),
    ])


def _accuracy_loss(e: LesionEntry, b: Block) -> float | None:
    """Baseline accuracy minus the accuracy without block ``b`` (None when either is missing)."""
    if e.baseline_acc is None or b.value is None:
        return None
    return e.baseline_acc - b.value


def _largest_loss(e: LesionEntry) -> Block | None:
    """The block whose removal loses the most accuracy (None without measured blocks)."""
    measured = [b for b in e.blocks or () if _accuracy_loss(e, b) is not None]
    return max(measured, key=lambda b: _accuracy_loss(e, b) or 0.0) if measured else None


def _lesion_body(summary: Summary, claim: Claim | None) -> str:
    if not summary.lesion:
        return ""

    def largest(e: LesionEntry) -> tuple[Any, str]:
        b = _largest_loss(e)
        return (None if b is None else _accuracy_loss(e, b)), "pct"

    def which(e: LesionEntry) -> tuple[Any, str]:
        b = _largest_loss(e)
        return (None if b is None else b.name), "text"
    top = _by_model_table(summary, "lesion", [
        ("baseline accuracy", lambda e: (e.baseline_acc, "pct")),
        ("largest accuracy loss", largest),
        ("block with the largest loss", which),
    ])
    drop = ("accuracy loss", lambda e, b: (_accuracy_loss(e, b), "pct"))
    return top + _blocks_details(summary, "lesion", "accuracy", claim, [drop])


def timing_text(summary: Summary) -> str:
    """Compute time of the results, this run's wall time, and how many came from the cache."""
    t = summary.timing
    wall = t.get("wall_time_s", summary.wall_time_s)
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


def adapted_text(summary: Summary) -> str:
    """The quick budget's adaptation to large models (``settings["adapted"]``), one sentence."""
    adapted = summary.settings.get("adapted")
    if not isinstance(adapted, Mapping) or not adapted:
        return ""
    what = ", ".join(f"{k} {v[0]} → {v[1]}" for k, v in adapted.items()
                     if isinstance(v, (list, tuple)) and len(v) == 2)
    return (f"The quick budget was reduced for the largest model's estimated cost (every model "
            f"alike): {what}.")


def _settings_body(summary: Summary) -> str:
    parts = []
    if adapted_text(summary):
        parts.append(f"<p><b>{_e(adapted_text(summary))}</b></p>")
    if summary.settings:
        parts.append("<h3>Effective configuration</h3>" + _kv_table(summary.settings))
    parts.append(loss_statement(summary))
    if summary.versions:
        parts.append("<h3>Versions</h3>" + _kv_table(summary.versions))
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
        "fourier": _blocks_details(summary, "fourier", "ΔlogA at the read-out frequency", None,
                                   [("read at", lambda e, b: (b.freq_label, "text")),
                                    ("grid", lambda e, b: (b.grid, "text"))]),
        "variance": _blocks_details(summary, "variance", "variance", None),
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
    other = [rel for k, v in summary.figures.items() if k not in known
             for rel in v or [] if str(rel).lower().endswith(".png")]
    if other:
        sections.append('<section id="other-figures"><h2>Other figures</h2>'
                        + _figures_html(out_dir, summary, [str(r) for r in other]) + "</section>")
    nav = "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title, _, _ in SECTIONS)
    datasets = sorted({m.dataset for m in summary.models if m.dataset})
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
    rows = []
    for lab in labels:
        m = summary.model(lab) or ModelSummary(lab)
        h, c = summary.hessian.get(lab), summary.cka.get(lab)
        surf, rob = summary.surface.get(lab), summary.robustness.get(lab)
        tr = "—"
        if h is not None and h.trace is not None:
            tr = fmt_number(h.trace, 3) + (f"±{fmt_number(h.trace_se, 2)}"
                                           if h.trace_se is not None else "")
        cka = ("—" if c is None else "n/a*" if cka_not_applicable(c) else
               fmt_number(_cka_diff(c), 3))
        rows.append([lab, m.family or "—", fmt_params(m.params),
                     fmt_percent(m.test_acc), fmt_number(m.test_nll, 4),
                     fmt_number(top_eigenvalue(h), 4) if h is not None else "—", tr,
                     fmt_percent(_spectrum(h).negative_share) if h is not None else "—",
                     fmt_number(surf.mean_loss_increase if surf is not None else None, 4),
                     fmt_percent(high_frequency_drop(rob)) if rob is not None else "—",
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
        why = cka_not_applicable(summary.cka[lab]) if lab in summary.cka else ""
        if why:
            out[0] += f"\n* CKA w−a of {lab}: {why}"
    timing = timing_text(summary)
    if timing:
        out.append(timing)
    return "\n\n".join(out)
