"""HTML building blocks of the run report: escaping, number formats, tables, embedded figures.

Used by :mod:`landscape.reporting.report`; formatting only, no numbers are computed here.
"""
from __future__ import annotations

import base64
import html
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..summary import Summary

NOT_COMPUTED = "not computed in this run"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _e(x: Any) -> str:
    """HTML-escaped text of ``x``."""
    return html.escape("" if x is None else str(x), quote=True)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def fmt_number(x: Any, digits: int = 4) -> str:
    """Compact text for a number: ints with thousands separators, floats to ``digits`` figures;
    "—" for a missing value, "n/a" for a NaN (never a raw ``nan`` or ``None``)."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if math.isnan(x):
            return "n/a"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return f"{x:.{digits}g}"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(fmt_number(v, digits) for v in x) + "]"
    return str(x)


def fmt_percent(x: Any) -> str:
    """An accuracy in 0..1 as a percentage."""
    if not _is_num(x) or not math.isfinite(float(x)):
        return fmt_number(x)
    return f"{100.0 * float(x):.2f}%"


def fmt_params(x: Any) -> str:
    """A parameter count as 1.23M / 45.6k / 789."""
    if not _is_num(x):
        return fmt_number(x)
    x = float(x)
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{int(x)}"


def fmt_duration(seconds: Any) -> str:
    """Seconds as "754.2 s (12 min 34 s)"."""
    if not _is_num(seconds) or not math.isfinite(float(seconds)):
        return fmt_number(seconds)
    s = float(seconds)
    m, r = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    human = (f"{h} h {m} min" if h else f"{m} min {r} s") if s >= 60 else ""
    return f"{s:.1f} s" + (f" ({human})" if human else "")


def _cell(x: Any, kind: str = "num") -> str:
    if kind == "pct":
        return f'<td class="num">{_e(fmt_percent(x))}</td>'
    if _is_num(x) or x is None:
        return f'<td class="num">{_e(fmt_number(x))}</td>'
    return f"<td>{_e(fmt_number(x))}</td>"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """``rows`` hold ready-made ``<td>`` cells; ``header`` plain text. The table scrolls inside
    its own box (``div.tbl``) when it is wider than the page (nine models side by side)."""
    h = "".join(f"<th>{_e(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    c = f' class="{_e(cls)}"' if cls else ""
    return (f'<div class="tbl"><table{c}><thead><tr>{h}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _missing(what: str = NOT_COMPUTED) -> str:
    return f'<p class="missing">{_e(what)}</p>'


def _model_labels(summary: Summary) -> list[str]:
    """Model labels in the order of ``summary.models``, then any others seen in sections."""
    labels = summary.labels()
    for sec in summary.sections.values():
        labels += [k for k in sec if k not in labels]
    return labels


def _by_model_table(summary: Summary, key: str, rows: Sequence[tuple[str, Any]]) -> str:
    """Quantities as rows, models as columns. ``rows``: (name, fn(typed entry) -> (value,
    kind)); a value that cannot be formed (a field missing) is shown as "—"."""
    sec = summary.entries(key)
    if not sec:
        return ""
    labels = [k for k in _model_labels(summary) if k in sec]
    out = []
    for name, fn in rows:
        cells = [f"<th>{_e(name)}</th>"]
        for lab in labels:
            try:
                value, kind = fn(sec[lab])
            except (TypeError, ValueError, IndexError):
                value, kind = None, "num"
            cells.append(_cell(value, kind))
        out.append(cells)
    return _table(["quantity"] + labels, out)


# ----------------------------------------------------------------------------- figures
def _png_size(data: bytes) -> tuple[int, int, float]:
    """(width, height) in pixels from a PNG's IHDR chunk, and its resolution in dots per inch
    from the pHYs chunk (96, the CSS pixel, when absent)."""
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    i = data.find(b"pHYs", 0, 4096)
    dpi = 96.0
    if i > 0 and data[i + 12] == 1:  # unit: metre
        dpi = int.from_bytes(data[i + 4:i + 8], "big") * 0.0254 or 96.0
    return w, h, dpi


def _figure_html(out_dir: Path, rel: str) -> str:
    """One ``<figure>`` with the PNG at ``out_dir/rel`` embedded at its printed size (pixels and
    resolution from the file; never wider than the page), class ``wide`` for a figure wider than
    1.6 times its height or 1000 px (it gets a row of its own); a note when it cannot be read."""
    path = out_dir / rel
    try:
        data = path.read_bytes()
    except OSError as exc:
        warnings.warn(f"report: figure {rel} could not be read ({exc.__class__.__name__})",
                      stacklevel=2)
        return f'<p class="missing">{_e("figure missing: " + rel)}</p>'
    if not data.startswith(PNG_SIGNATURE):
        warnings.warn(f"report: figure {rel} is not a PNG file; not embedded", stacklevel=2)
        return f'<p class="missing">{_e("not a PNG file: " + rel)}</p>'
    b64 = base64.b64encode(data).decode("ascii")
    cap = _e(Path(rel).name)
    pdf = path.with_suffix(".pdf")
    if pdf.is_file():
        pdf_rel = Path(rel).with_suffix(".pdf").as_posix()
        cap += f' · <a href="{_e(pdf_rel)}">PDF</a>'
    w, h, dpi = _png_size(data)
    cls = ' class="wide"' if w > 1000 or w > 1.6 * max(h, 1) else ""
    css_w = round(w * 96.0 / dpi)
    return (f'<figure{cls}><img src="data:image/png;base64,{b64}" alt="{_e(rel)}" '
            f'style="width:{css_w}px">'
            f"<figcaption>{cap}</figcaption></figure>")


def _label_of(rel: str, labels: Sequence[str]) -> str | None:
    """The model label a figure path names (longest match, on non-alphanumeric boundaries)."""
    for lab in sorted(labels, key=len, reverse=True):
        if re.search(r"(?<![A-Za-z0-9])" + re.escape(lab) + r"(?![A-Za-z0-9])", rel):
            return lab
    return None


def _section_figures(summary: Summary, keys: Sequence[str]) -> list[str]:
    figs = summary.figures
    out: list[str] = []
    for k in keys:
        for rel in figs.get(k) or []:
            rel = str(rel)
            if rel.lower().endswith(".png") and rel not in out:
                out.append(rel)
    return out


def _figures_html(out_dir: Path, summary: Summary, rels: Sequence[str]) -> str:
    """Shared figures first (wide ones at page width); per-model figures in a grid of model
    columns, folded away under the shared figures when there are any."""
    if not rels:
        return ""
    labels = _model_labels(summary)
    shared: list[str] = []
    per: dict[str, list[str]] = {}
    for rel in rels:
        lab = _label_of(rel, labels)
        if lab is None:
            shared.append(rel)
        else:
            per.setdefault(lab, []).append(rel)
    parts = []
    if shared:
        parts.append('<div class="figs">'
                     + "".join(_figure_html(out_dir, r) for r in shared) + "</div>")
    if per:
        cols = []
        for lab in [lb for lb in labels if lb in per]:
            cols.append(f'<div class="model-col"><h3>{_e(lab)}</h3>'
                        + "".join(_figure_html(out_dir, r) for r in per[lab]) + "</div>")
        grid = '<div class="models-row">' + "".join(cols) + "</div>"
        if shared:
            n = sum(len(v) for v in per.values())
            grid = f"<details><summary>figures per model ({n})</summary>{grid}</details>"
        parts.append(grid)
    return "".join(parts)


# ----------------------------------------------------------------------------- sections


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict):
        out: list[tuple[str, Any]] = []
        for k, v in d.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [(prefix, d)]


def _kv_table(d: dict) -> str:
    rows = [[f"<td><code>{_e(k)}</code></td>", _cell(v, "text")] for k, v in _flatten(d)]
    return _table(["setting", "value"], rows)
