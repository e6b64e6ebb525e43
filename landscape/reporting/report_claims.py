"""The report's claims table and its loss statement (formatting only; rules in
:mod:`landscape.claims`).

Rows are grouped by claim (``Claim.group``): the claim's text once, then one row per family with
the measured quantity in the units it is reported in, the effect with its 95% interval, n and the
pair count ("9/9 challenger-CNN pairs"), the verdict and, folded, the per-checkpoint values and
every piece of evidence the rule dropped.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..claims import Claim
from .report_format import _e, _is_num, _table, fmt_number

FAMILY = {"vit": "ViT", "hybrid": "hybrid", "cnn": "CNN", "": "—"}


def _effect(c: Claim) -> str:
    if c.effect is None or not c.interval:
        return "—"
    lo, hi = c.interval
    seed = "" if (c.extra or {}).get("seed_level", True) else " (units only: one checkpoint)"
    return (f"{fmt_number(c.effect, 3)}<br><span class='note'>95% "
            f"[{_e(fmt_number(lo, 3))}, {_e(fmt_number(hi, 3))}]{_e(seed)}</span>")


def _numbers(c: Claim, labels: Sequence[str]) -> str:
    seeds = ", ".join(f"{k}: {fmt_number(v, 3)}" for k, v in (c.per_seed or {}).items())
    notes = "; ".join(f"{k}: {v}" for k, v in c.per_model.items()
                      if not _is_num(v) and (k in labels or not labels))
    arch = ", ".join(f"{k}: {fmt_number(v, 3)}"
                     for k, v in ((c.extra or {}).get("per_arch") or {}).items())
    lines = [t for t in (f"per checkpoint: {seeds}" if seeds else "",
                         f"per architecture: {arch}" if arch else "", notes) if t]
    more = ("<details><summary>per checkpoint and architecture</summary>"
            + "<br>".join(_e(t) for t in lines) + "</details>") if lines else ""
    drop = ""
    if c.dropped:
        drop = (f"<details class='dropped'><summary>dropped: {len(c.dropped)} piece(s) of "
                "evidence</summary>" + "<br>".join(_e(d) for d in c.dropped) + "</details>")
    return more + drop


def claims_body(claims: Sequence[Claim], labels: Sequence[str]) -> str:
    """The claims table, one row per family, grouped by claim; the rules above it."""
    rows = []
    boot = None
    groups: dict[str, list[Claim]] = {}
    for c in claims:
        groups.setdefault(c.group or c.id, []).append(c)
    for group, members in groups.items():
        for i, c in enumerate(members):
            boot = boot or (c.extra or {}).get("bootstrap")
            vcls = "v-" + c.verdict.replace(" ", "-")
            head = (f"<td rowspan='{len(members)}'><b>{_e(c.claim.split(':')[0])}</b><br>"
                    f"<span class='note'>{_e(group)}</span></td>") if i == 0 else ""
            pairs = (f"<br><span class='note'>{c.pairs[0]}/{c.pairs[1]} pairs the paper's way"
                     "</span>") if c.pairs else ""
            row = [f"<td>{_e(FAMILY.get(c.family, c.family))}<br>"
                   f"<span class='note'>{_e(c.id)}</span></td>",
                   f"<td>{_e(c.quantity)}</td>", f"<td>{_e(c.prediction)}</td>",
                   f"<td class='num'>{_effect(c)}</td>",
                   f"<td>{c.n}{pairs}<br><span class='note'>{_e(c.n_detail)}</span></td>",
                   f'<td class="verdict {_e(vcls)}">{_e(c.verdict)}</td>',
                   f"<td class='note'>{_e(c.detail)}{_numbers(c, labels)}</td>"]
            rows.append(([head] if head else []) + row)
    b = (f" Bootstrap: {boot.get('replicates')} replicates, seed {boot.get('seed')}."
         if isinstance(boot, dict) else "")
    note = ('<p class="note">One row per family, never pooled: a family against the CNN, or one '
            "family's blocks of a kind. Effect: the mean over checkpoints (family comparisons: "
            "the family's mean minus the CNN's mean), in the units the quantity names. 95% "
            "interval: seeds are the top level; the interval is the wider of the t-interval over "
            "checkpoints (Welch's between families) and a two-level bootstrap (seeds, then "
            "images, batches or planes), so it is never narrower than the t-interval. With one "
            "checkpoint on a side there is no seed-level interval and the verdict is at most "
            "inconclusive. Rules in <code>landscape.claims</code>: <i>agrees</i> when the "
            "interval excludes 0 on the paper's side and a majority of all challenger-CNN "
            "checkpoint pairs (within a model: of the checkpoints) point the paper's way, "
            "whatever their seed numbers; <i>disagrees</i> when the interval and the majority "
            "are on the other side; <i>inconclusive</i> otherwise; <i>not measured</i> without "
            "a valid comparison. Fourier comparisons count only at a read-out frequency of at "
            "least 3π/4 (a 4×4 map's π/2 is no high frequency). Evidence a rule leaves out is "
            f"listed under <i>dropped</i>.{_e(b)}</p>")
    return note + _table(["claim", "family", "measured quantity (units)", "paper predicts",
                          "effect [95% CI]", "n", "verdict", "numbers"], rows, cls="claims")


def loss_statement(summary: Mapping[str, Any]) -> str:
    """What the loss of the surface and the Hessian was, per model (the paper's fig1 loss:
    NLL + 0.05·Σ‖p‖₂ on the training transform), from the sections' ``loss``/``wd``/``augment``."""
    rows = []
    for sec in ("surface", "hessian"):
        s = summary.get(sec)
        if not isinstance(s, Mapping):
            continue
        for lab, e in s.items():
            if not isinstance(e, Mapping) or not (e.get("loss") or e.get("wd") is not None):
                continue
            rows.append([f"<td>{_e(sec)}</td>", f"<td>{_e(lab)}</td>",
                         f"<td>{_e(e.get('loss', '—'))}</td>",
                         f"<td class='num'>{_e(fmt_number(e.get('wd')))}</td>",
                         f"<td>{_e(e.get('wd_source', '—'))}</td>",
                         f"<td class='note'>{_e(e.get('transform') or e.get('augment') or '—')}"
                         "</td>"])
    if not rows:
        return ""
    return ("<h3>Loss of the landscape and the Hessian</h3><p class='note'>The paper's "
            "landscape notebook: NLL + 0.05·Σ‖p‖₂ on the training transform (Mixup/CutMix and "
            "label smoothing, soft-target cross-entropy); the paper budget uses it for every "
            "model unless overridden. What this run computed:</p>"
            + _table(["analysis", "model", "loss", "wd", "wd from", "transform"], rows))
