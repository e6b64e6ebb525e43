"""The report's claims table and its loss statement (formatting only; rules in
:mod:`landscape.claims`).

Rows are grouped by claim (``Claim.group``): the claim's text once, then one row per family with
the measured quantity in the units it is reported in, the effect with its 95% interval (a ratio of
geometric means for a log-ratio row, the raw difference beside), the exact test (Mann-Whitney AUC
and p, or the sign test and p, and a note when n cannot reach p < 0.05), n, the verdict with
"fragile" when dropping one checkpoint changes it, and, folded, the per-checkpoint values, the
leave-one-out verdicts, the per-block breakdown and every piece of evidence the rule dropped.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..claims import Claim
from ..summary import Summary
from .report_format import _e, _is_num, _table, fmt_number

FAMILY = {"vit": "ViT", "hybrid": "hybrid", "cnn": "CNN", "": "—"}


def _effect(c: Claim) -> str:
    if c.effect is None or not c.interval:
        return "—" if c.effect is None else f"{_e(fmt_number(c.effect, 3))}"
    lo, hi = c.interval
    seed = "" if (c.extra or {}).get("seed_level", True) else " (units only: one checkpoint)"
    ratio = "ratio " if c.scale == "log ratio" else ""
    raw = ""
    if c.raw and c.raw.get("interval"):
        r = c.raw
        raw = (f"<br><span class='note'>raw difference {_e(fmt_number(r['effect'], 3))} "
               f"[{_e(fmt_number(r['interval'][0], 3))}, {_e(fmt_number(r['interval'][1], 3))}]"
               "</span>")
    return (f"{ratio}{_e(fmt_number(c.effect, 3))}<br><span class='note'>95% "
            f"[{_e(fmt_number(lo, 3))}, {_e(fmt_number(hi, 3))}]{_e(seed)}</span>{raw}")


def test_text(c: Claim | Mapping[str, Any], short: bool = False) -> str:
    """The exact test of a claim row (a :class:`Claim` or its JSON object) in words: "Mann-Whitney
    AUC 1.00, exact p 0.0079", "sign test 5/5, exact p 0.0625", "<name> J/max ..."; ``short``:
    the README's form ("AUC 1.00, p 0.0079", "sign 5/5, p ...")."""
    t = (c.test if isinstance(c, Claim) else c.get("test")) or {}
    if not t:
        return "—"
    p = "p" if short else "exact p"
    if t.get("name") == "Mann-Whitney":
        out = ("" if short else "Mann-Whitney ") + f"AUC {t['auc']:.2f}, {p} {t['p']:.2g}"
    elif t.get("name") == "sign test":
        out = ("sign " if short else "sign test ") + f"{t['statistic']}, {p} {t['p']:.2g}"
    else:
        share = t.get("share")
        out = ((("" if short else f"{t.get('name')} ") + f"J/max {share:.2f}, ")
               if share is not None else "") + f"{p} {t['p']:.2g}"
    if t.get("note"):
        out += " (n too small for p<0.05)" if short else f" ({t['note']})"
    return out


def short_number(x: Any) -> str:
    """Three significant digits (two-digit exponent below 1e-3), "—" for None: the README's."""
    if x is None:
        return "—"
    x = float(x)
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def interval_text(c: Mapping[str, Any]) -> str:
    """A claim row's (JSON object) effect and 95% interval as plain text: "ratio 0.243 [0.061,
    0.969]; raw Δ ..." for a log-ratio row, "(one checkpoint: units only)" when the interval is
    not seed-level."""
    n = short_number
    if c.get("effect") is None:
        return "—"
    if not c.get("interval"):
        return n(c["effect"])
    ratio = "ratio " if c.get("scale") == "log ratio" else ""
    out = f"{ratio}{n(c['effect'])} [{n(c['interval'][0])}, {n(c['interval'][1])}]"
    if not (c.get("extra") or {}).get("seed_level", True):
        out += " (one checkpoint: units only)"
    raw = c.get("raw") or {}
    if raw.get("interval"):
        out += f"; raw Δ {n(raw['effect'])} [{n(raw['interval'][0])}, {n(raw['interval'][1])}]"
    return out


def _blocks(c: Claim) -> str:
    if not c.per_block:
        return ""
    def iv(x: Any) -> str:
        return "[" + ", ".join(fmt_number(v, 3) for v in x or []) + "]"
    rows = "<br>".join(_e(
        f"{b['block']} (depth {fmt_number(b.get('depth'), 3)}): alone "
        f"{fmt_number(b.get('effect'), 3)} {iv(b.get('interval'))} sign {b.get('sign', '—')}; "
        f"without it {fmt_number(b.get('without_effect'), 3)} {iv(b.get('without_interval'))}"
        + (" ← carries the row" if b["block"] in c.carried_by else ""))
        for b in c.per_block)
    return f"<details><summary>per block ({len(c.per_block)})</summary>{rows}</details>"


def _numbers(c: Claim, labels: Sequence[str]) -> str:
    seeds = ", ".join(f"{k}: {fmt_number(v, 3)}" for k, v in (c.per_seed or {}).items())
    notes = "; ".join(f"{k}: {v}" for k, v in c.per_model.items()
                      if not _is_num(v) and (k in labels or not labels))
    arch = ", ".join(f"{k}: {fmt_number(v, 3)}"
                     for k, v in ((c.extra or {}).get("per_arch") or {}).items())
    lines = [t for t in (f"per checkpoint: {seeds}" if seeds else "",
                         f"per architecture: {arch}" if arch else "", notes) if t]
    if c.leave_one_out:
        lines.append("leave one checkpoint out: " + ", ".join(
            f"{k}: {v}" for k, v in c.leave_one_out.items()))
    more = ("<details><summary>per checkpoint and architecture</summary>"
            + "<br>".join(_e(t) for t in lines) + "</details>") if lines else ""
    more += _blocks(c)
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
            fragile = "<br><b class='fragile'>fragile</b>" if c.fragile else ""
            carried = (f"<br><span class='note'>carried by {_e(', '.join(c.carried_by))}"
                       "</span>") if c.carried_by else ""
            row = [f"<td>{_e(FAMILY.get(c.family, c.family))}<br>"
                   f"<span class='note'>{_e(c.id)}</span></td>",
                   f"<td>{_e(c.quantity)}</td>", f"<td>{_e(c.prediction)}</td>",
                   f"<td class='num'>{_effect(c)}</td>",
                   f"<td>{_e(test_text(c))}</td>",
                   f"<td>{c.n}<br><span class='note'>{_e(c.n_detail)}</span></td>",
                   f'<td class="verdict {_e(vcls)}">{_e(c.verdict)}{fragile}{carried}</td>',
                   f"<td class='note'>{_e(c.detail)}{_numbers(c, labels)}</td>"]
            rows.append(([head] if head else []) + row)
    b = (f" Bootstrap: {boot.get('replicates')} replicates, seed {boot.get('seed')}."
         if isinstance(boot, dict) else "")
    note = ('<p class="note">One row per family, never pooled: a family against the CNN, or one '
            "family's blocks of a kind, or one architecture. Effect: the mean over checkpoints "
            "(family comparisons: the family's mean minus the CNN's mean), in the units the "
            "quantity names; positive scale quantities (λmax, λmin/λmax) as the ratio of "
            "geometric means (no effect = 1), the raw difference beside. 95% interval: seeds "
            "are the top level; the interval is the hull of the t-interval over checkpoints "
            "(Welch's between families) and a two-level bootstrap (seeds, then images, batches "
            "or planes): on each side the farther end, so it is never narrower than the "
            "t-interval. Exact test over checkpoints: between families Mann-Whitney (AUC = "
            "share of challenger-CNN checkpoint pairs ordered the paper's way; one statistic "
            "over n1 + n2 checkpoints, not n1·n2 observations), within a model the sign test. "
            "Rules in <code>landscape.claims</code>: <i>agrees</i> when the interval excludes "
            "no effect on the paper's side and the exact test leans that way at p &lt; 0.05; "
            "<i>disagrees</i> the mirror image; <i>inconclusive</i> otherwise. Where n cannot "
            "reach p &lt; 0.05 (5 checkpoints in a sign test: at best 0.0625) the row says so "
            "and needs every checkpoint the same way (5 of 5) instead; <i>not "
            "measured</i> without a valid comparison. <i>fragile</i>: dropping one checkpoint "
            "changes the verdict. A within-model row names the blocks that carry it (dropping "
            "one changes the verdict or puts 0 in the interval). Fourier comparisons count only "
            "at a read-out frequency of at least 3π/4 (a 4×4 map's π/2 is no high frequency). "
            f"Evidence a rule leaves out is listed under <i>dropped</i>.{_e(b)}</p>")
    return note + _table(["claim", "family", "measured quantity (units)", "paper predicts",
                          "effect [95% CI]", "exact test", "n", "verdict", "numbers"], rows,
                         cls="claims")


def loss_statement(summary: Summary) -> str:
    """What the loss of the surface and the Hessian was, per model (the paper's fig1 loss:
    NLL + wd·Σ‖p‖₂ on the training transform, wd = 0.05 in the paper's configs), from the
    entries' ``loss``/``wd``/``augment``; the heading names the wd values actually used."""
    rows = []
    wds: set[str] = set()
    for sec in ("surface", "hessian"):
        for lab, e in summary.entries(sec).items():
            if not (e.loss or e.wd is not None):
                continue
            if e.wd is not None:
                wds.add(fmt_number(e.wd))
            rows.append([f"<td>{_e(sec)}</td>", f"<td>{_e(lab)}</td>",
                         f"<td>{_e(e.loss or '—')}</td>",
                         f"<td class='num'>{_e(fmt_number(e.wd))}</td>",
                         f"<td>{_e(e.wd_source or '—')}</td>",
                         f"<td class='note'>{_e(e.transform or e.augment or '—')}"
                         "</td>"])
    if not rows:
        return ""
    used = ("this run: " + " and ".join(f"NLL + {w}·Σ‖p‖₂" for w in sorted(wds)) if wds
            else "this run records no wd")
    return ("<h3>Loss of the landscape and the Hessian</h3><p class='note'>The paper's "
            "landscape notebook: NLL + wd·Σ‖p‖₂ with the config's wd = 0.05, on the training "
            "transform (RandAugment, Mixup/CutMix and label smoothing, soft-target "
            f"cross-entropy); {_e(used)}. What this run computed per model:</p>"
            + _table(["analysis", "model", "loss", "wd", "wd from", "transform"], rows))
