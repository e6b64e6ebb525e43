"""The paper's claims checked against measured numbers: one verdict per claim, by a fixed rule.

``evaluate_claims(summary)`` reads the ``summary.json`` dictionary written by ``landscape analyze``
and returns one :class:`Claim` per claim of "How Do Vision Transformers Work?" (Park & Kim, 2022)
that the analyses can test. Verdicts are computed from the numbers only:

``agrees`` / ``disagrees``
    every comparison the claim makes points the way the paper predicts / the opposite way.
``inconclusive``
    the comparisons point both ways, or a difference is within the tie tolerance.
``not measured``
    the section is missing, or the claim compares families (CNN against ViT) and one of them has no
    model with numbers in this run.

Rules (``TOL`` holds the tie tolerances):

1. ``flatness`` -- for every (ViT-or-hybrid, CNN) pair, the largest top Hessian eigenvalue, and,
   where both have a loss surface, ``mean_loss_increase``, must be smaller for the ViT/hybrid.
   A pair whose values differ by no more than ``TOL["relative"]`` (relative to the larger
   magnitude) is a tie. All comparisons predicted -> agrees; all opposite -> disagrees; else
   inconclusive.
2. ``negative-eigenvalues`` -- for every (ViT, CNN) pair, ``hessian.spectrum.negative_share`` must
   be larger for the ViT; ties within ``TOL["share"]`` (absolute). Aggregated as in 1.
3. ``fourier`` -- within each model, each MSA block's ``dlogA_pi`` is compared with the block just
   before it (in depth order; blocks marked ``same_grid: false`` are skipped), and so is each
   Conv block's. Pooled over all models, the fraction of
   MSA blocks that decrease it and the fraction of Conv blocks that increase it are computed: both
   > 0.5 -> agrees; both < 0.5 -> disagrees; otherwise inconclusive. No MSA or no Conv block with a
   predecessor anywhere -> not measured (the claim contrasts the two kinds).
4. ``variance`` -- as 3 with the feature-map ``variance`` (MSA lowers it, Conv raises it).
5. ``robustness`` -- the accuracy drop at high noise frequencies, ``clean_acc`` minus the mean
   accuracy over the highest quarter of the measured frequencies (at least one), must be smaller
   for every ViT than for every CNN; ties within ``TOL["accuracy"]`` (absolute). Aggregated as 1.
6. ``stage-cka`` -- for every model whose CKA blocks span more than one stage, the within-stage
   mean CKA must exceed the across-stage mean by more than ``TOL["cka"]``; all -> agrees, all
   below by more than the tolerance -> disagrees, else inconclusive. No multi-stage model ->
   not measured.
7. ``stage-lesion`` -- for every model with MSA blocks in more than one stage, the mean accuracy
   loss from removing the last MSA block of each stage must exceed that from removing the other
   MSA blocks by more than ``TOL["accuracy"]``; aggregated as 6.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

AGREES = "agrees"
DISAGREES = "disagrees"
NOT_MEASURED = "not measured"
INCONCLUSIVE = "inconclusive"
VERDICTS = (AGREES, DISAGREES, INCONCLUSIVE, NOT_MEASURED)

#: Tie tolerances of the rules (see the module docstring).
TOL: dict[str, float] = {
    "relative": 0.05,   # eigenvalues, loss increases: |a - b| <= 5% of max(|a|, |b|) is a tie
    "share": 0.01,      # negative-eigenvalue shares (absolute)
    "accuracy": 0.005,  # accuracies / accuracy drops, in 0..1 units (half a percentage point)
    "cka": 0.01,        # CKA means (absolute)
}

#: Fraction of the measured frequencies (the highest ones) that form the "high-frequency" band.
HIGH_BAND_FRACTION = 0.25


@dataclass
class Claim:
    """One paper claim, what was measured for it, and the verdict."""

    id: str
    claim: str
    quantity: str
    per_model: dict[str, Any]
    prediction: str
    verdict: str
    detail: str
    section: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (JSON-serializable when the values are)."""
        return asdict(self)


# ----------------------------------------------------------------------------- small helpers
def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _families(summary: dict) -> dict[str, str]:
    """Model label -> family ("cnn", "vit", "hybrid"), from ``summary["models"]``."""
    out: dict[str, str] = {}
    for m in summary.get("models") or []:
        if isinstance(m, dict) and m.get("label") is not None:
            out[str(m["label"])] = str(m.get("family", "")).lower()
    return out


def _section(summary: dict, name: str) -> dict:
    sec = summary.get(name)
    return sec if isinstance(sec, dict) else {}


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _compare(a: float, b: float, tol: float, relative: bool) -> int:
    """+1 when a < b beyond the tolerance, -1 when a > b beyond it, 0 for a tie."""
    scale = max(abs(a), abs(b)) if relative else 1.0
    if abs(a - b) <= tol * scale:
        return 0
    return 1 if a < b else -1


def _aggregate(outcomes: Sequence[int]) -> str:
    """All +1 -> agrees, all -1 -> disagrees, anything else (ties, mixed) -> inconclusive."""
    if not outcomes:
        return NOT_MEASURED
    if all(o > 0 for o in outcomes):
        return AGREES
    if all(o < 0 for o in outcomes):
        return DISAGREES
    return INCONCLUSIVE


_WORD = {1: "as predicted", -1: "opposite", 0: "tie"}


def _pairwise(values: dict[str, float], fams: dict[str, str], challengers: Iterable[str],
              smaller_is_predicted: bool, tol: float, relative: bool,
              name: str) -> tuple[list[int], list[str], list[str]]:
    """Compare every challenger-family model with every CNN.

    Returns (outcomes, detail lines, missing-family notes). An outcome is +1 when the comparison
    goes the predicted way.
    """
    challengers = tuple(challengers)
    chall = [k for k, v in values.items() if fams.get(k) in challengers and _finite(v)]
    cnns = [k for k, v in values.items() if fams.get(k) == "cnn" and _finite(v)]
    missing = []
    if not cnns:
        missing.append(f"{name}: no CNN model with a value")
    if not chall:
        missing.append(f"{name}: no {'/'.join(challengers)} model with a value")
    outcomes, lines = [], []
    for c in chall:
        for r in cnns:
            o = _compare(float(values[c]), float(values[r]), tol, relative)
            if not smaller_is_predicted:
                o = -o
            outcomes.append(o)
            lines.append(f"{name}: {c} {_fmt(float(values[c]))} vs {r} {_fmt(float(values[r]))}"
                         f" ({_WORD[o]})")
    return outcomes, lines, missing


def _not_measured(cid: str, text: str, quantity: str, prediction: str, section: str,
                  why: str, per_model: Optional[dict] = None) -> Claim:
    return Claim(cid, text, quantity, per_model or {}, prediction, NOT_MEASURED, why, section)


# ----------------------------------------------------------------------------- the claims
def top_eigenvalue(entry: dict) -> Optional[float]:
    """Largest of ``top_eigenvalues`` (None when absent or empty)."""
    vals = [float(v) for v in entry.get("top_eigenvalues") or [] if _finite(v)]
    return max(vals) if vals else None


def claim_flatness(summary: dict) -> Claim:
    """Claim 1: MSAs flatten the loss landscape (smaller top eigenvalue, smaller loss increase)."""
    cid, section = "flatness", "hessian"
    text = "MSAs flatten the loss landscape"
    quantity = "largest Hessian eigenvalue; mean loss increase over the surface grid"
    prediction = "ViT/hybrid < CNN for both quantities"
    fams = _families(summary)
    hess, surf = _section(summary, "hessian"), _section(summary, "surface")
    lam = {k: top_eigenvalue(v) for k, v in hess.items() if isinstance(v, dict)}
    inc = {k: v.get("mean_loss_increase") for k, v in surf.items() if isinstance(v, dict)}
    per_model: dict[str, Any] = {}
    for k in sorted(set(lam) | set(inc)):
        parts = []
        if _finite(lam.get(k)):
            parts.append(f"λmax {_fmt(float(lam[k]))}")
        if _finite(inc.get(k)):
            parts.append(f"Δloss {_fmt(float(inc[k]))}")
        per_model[k] = ", ".join(parts) if parts else None
    outcomes, lines, missing = [], [], []
    for values, name in ((lam, "λmax"), (inc, "Δloss")):
        o, l, m = _pairwise(values, fams, ("vit", "hybrid"), True, TOL["relative"], True, name)
        outcomes += o
        lines += l
        missing += m
    if not outcomes:
        return _not_measured(cid, text, quantity, prediction, section,
                             "; ".join(missing) or "no Hessian or surface results", per_model)
    return Claim(cid, text, quantity, per_model, prediction, _aggregate(outcomes),
                 "; ".join(lines + missing), section)


def claim_negative_eigenvalues(summary: dict) -> Claim:
    """Claim 2: ViT's Hessian spectrum has more negative eigenvalues (non-convex) than a CNN's."""
    cid, section = "negative-eigenvalues", "hessian"
    text = "ViTs have many negative Hessian eigenvalues; CNNs few"
    quantity = "share of negative values in the max-eigenvalue spectrum (over batches)"
    prediction = "ViT negative share > CNN negative share"
    fams = _families(summary)
    hess = _section(summary, "hessian")
    share = {k: (v.get("spectrum") or {}).get("negative_share")
             for k, v in hess.items() if isinstance(v, dict)}
    per_model = {k: (float(v) if _finite(v) else None) for k, v in sorted(share.items())}
    outcomes, lines, missing = _pairwise(share, fams, ("vit",), False, TOL["share"], False,
                                         "negative share")
    if not outcomes:
        return _not_measured(cid, text, quantity, prediction, section,
                             "; ".join(missing) or "no Hessian spectrum", per_model)
    return Claim(cid, text, quantity, per_model, prediction, _aggregate(outcomes),
                 "; ".join(lines), section)


def block_changes(blocks: Sequence[dict], key: str,
                  include_resolution_changes: bool = False) -> dict[str, list[float]]:
    """Change of ``key`` across each block (value minus the preceding block's), by block kind.

    Blocks are taken in depth order (their list order when ``depth`` is missing); the first block,
    blocks whose value, or whose predecessor's value, is not finite, and blocks marked
    ``"same_grid": False`` (the feature-map resolution changed, so the values are not comparable;
    see ``fourier.changes_from_previous``) are skipped unless ``include_resolution_changes``.
    """
    order = sorted(range(len(blocks)),
                   key=lambda i: (float(blocks[i].get("depth", i)) if _finite(blocks[i].get("depth"))
                                  else float(i), i))
    seq = [blocks[i] for i in order]
    out: dict[str, list[float]] = {}
    for prev, cur in zip(seq, seq[1:]):
        a, b = prev.get(key), cur.get(key)
        if _finite(a) and _finite(b) and (include_resolution_changes
                                          or cur.get("same_grid", True) is not False):
            out.setdefault(str(cur.get("kind", "")), []).append(float(b) - float(a))
    return out


def _count_kind_changes(sec: dict, key: str, cross: bool) -> tuple[dict[str, Any], int, int, int, int]:
    per_model: dict[str, Any] = {}
    msa_dec = msa_n = conv_inc = conv_n = 0
    for label, entry in sorted(sec.items()):
        if not isinstance(entry, dict):
            continue
        ch = block_changes(entry.get("blocks") or [], key, cross)
        md = sum(d < 0 for d in ch.get("msa", []))
        mn = len(ch.get("msa", []))
        ci = sum(d > 0 for d in ch.get("conv", []))
        cn = len(ch.get("conv", []))
        msa_dec, msa_n, conv_inc, conv_n = msa_dec + md, msa_n + mn, conv_inc + ci, conv_n + cn
        parts = []
        if mn:
            parts.append(f"MSA {md}/{mn} ↓")
        if cn:
            parts.append(f"Conv {ci}/{cn} ↑")
        per_model[label] = ", ".join(parts) if parts else "no MSA/Conv blocks"
    return per_model, msa_dec, msa_n, conv_inc, conv_n


def _kind_rule(summary: dict, cid: str, section: str, key: str, text: str, quantity: str,
               prediction: str) -> Claim:
    """Claims 3 and 4: MSA blocks lower ``key``, Conv blocks raise it."""
    sec = _section(summary, section)
    per_model, msa_dec, msa_n, conv_inc, conv_n = _count_kind_changes(sec, key, False)
    crossed = False
    if sec and (not msa_n or not conv_n):
        # No same-resolution comparison for a kind (e.g. every Conv unit downsamples): fall back to
        # all comparisons, and say so; the values are relative (ΔlogA) or per pixel (variance).
        alt = _count_kind_changes(sec, key, True)
        if alt[2] and alt[4]:
            per_model, msa_dec, msa_n, conv_inc, conv_n = alt
            crossed = True
    if not sec:
        return _not_measured(cid, text, quantity, prediction, section,
                             f"no {section} results", per_model)
    fm = msa_dec / msa_n if msa_n else None
    fc = conv_inc / conv_n if conv_n else None
    detail = (f"MSA blocks lowering it: {msa_dec}/{msa_n}"
              + (f" = {fm:.2f}" if fm is not None else "")
              + f"; Conv blocks raising it: {conv_inc}/{conv_n}"
              + (f" = {fc:.2f}" if fc is not None else "")
              + (" (including blocks that change resolution: no same-resolution comparison "
                 "for every kind)" if crossed else ""))
    extra = {"msa_fraction": fm, "conv_fraction": fc, "msa_blocks": msa_n, "conv_blocks": conv_n,
             "includes_resolution_changes": crossed}
    if fm is None or fc is None:
        return Claim(cid, text, quantity, per_model, prediction, NOT_MEASURED,
                     detail + " (needs both MSA and Conv blocks)", section, extra)
    if fm > 0.5 and fc > 0.5:
        verdict = AGREES
    elif fm < 0.5 and fc < 0.5:
        verdict = DISAGREES
    else:
        verdict = INCONCLUSIVE
    return Claim(cid, text, quantity, per_model, prediction, verdict, detail, section, extra)


def claim_fourier(summary: dict) -> Claim:
    """Claim 3: MSAs are low-pass filters, Convs high-pass filters."""
    return _kind_rule(summary, "fourier", "fourier", "dlogA_pi",
                      "MSAs are low-pass filters; Convs are high-pass filters",
                      "change of the relative log amplitude ΔlogA at π across each block",
                      "MSA blocks lower ΔlogA(π), Conv blocks raise it (fraction > 0.5 each)")


def claim_variance(summary: dict) -> Claim:
    """Claim 4: MSAs reduce the feature-map variance, Convs increase it."""
    return _kind_rule(summary, "variance", "variance", "variance",
                      "MSAs reduce feature-map variance; Convs increase it",
                      "change of the feature-map variance across each block",
                      "MSA blocks lower the variance, Conv blocks raise it (fraction > 0.5 each)")


def high_frequency_drop(entry: dict) -> Optional[float]:
    """``clean_acc`` minus the mean accuracy over the highest-frequency quarter of the noise."""
    freqs, acc, clean = entry.get("freqs") or [], entry.get("acc") or [], entry.get("clean_acc")
    pairs = [(float(f), float(a)) for f, a in zip(freqs, acc) if _finite(f) and _finite(a)]
    if not pairs or not _finite(clean):
        return None
    pairs.sort()
    k = max(1, math.ceil(HIGH_BAND_FRACTION * len(pairs)))
    band = pairs[-k:]
    return float(clean) - sum(a for _, a in band) / len(band)


def claim_robustness(summary: dict) -> Claim:
    """Claim 5: ViTs are robust against high-frequency noise, CNNs vulnerable."""
    cid, section = "robustness", "robustness"
    text = "ViTs are robust to high-frequency noise; CNNs are vulnerable"
    quantity = ("accuracy drop at high noise frequencies (clean minus mean over the highest "
                f"{int(HIGH_BAND_FRACTION * 100)}% of frequencies)")
    prediction = "ViT drop < CNN drop"
    fams = _families(summary)
    sec = _section(summary, section)
    drop = {k: high_frequency_drop(v) for k, v in sec.items() if isinstance(v, dict)}
    per_model = {k: v for k, v in sorted(drop.items())}
    outcomes, lines, missing = _pairwise(drop, fams, ("vit",), True, TOL["accuracy"], False,
                                         "HF drop")
    if not outcomes:
        return _not_measured(cid, text, quantity, prediction, section,
                             "; ".join(missing) or "no robustness results", per_model)
    return Claim(cid, text, quantity, per_model, prediction, _aggregate(outcomes),
                 "; ".join(lines), section)


def claim_stage_cka(summary: dict) -> Claim:
    """Claim 6: multi-stage models form stages -- features are similar within a stage."""
    cid, section = "stage-cka", "cka"
    text = "Multi-stage models behave like a series of small models, one per stage"
    quantity = "mean CKA within stages minus mean CKA across stages"
    prediction = "within-stage mean > across-stage mean (multi-stage models)"
    sec = _section(summary, section)
    per_model: dict[str, Any] = {}
    outcomes, lines = [], []
    for label, e in sorted(sec.items()):
        if not isinstance(e, dict):
            continue
        w, a = e.get("within_stage_mean"), e.get("across_stage_mean")
        stages = {str(s) for s in e.get("stages") or []}
        if len(stages) < 2:
            per_model[label] = "single stage"
            continue
        if not (_finite(w) and _finite(a)):
            per_model[label] = None
            continue
        per_model[label] = float(w) - float(a)
        o = -_compare(float(w), float(a), TOL["cka"], False)  # predicted: w > a
        outcomes.append(o)
        lines.append(f"{label}: within {_fmt(float(w))} vs across {_fmt(float(a))} ({_WORD[o]})")
    if not outcomes:
        return _not_measured(cid, text, quantity, prediction, section,
                             "no multi-stage model with CKA results" if sec else "no CKA results",
                             per_model)
    return Claim(cid, text, quantity, per_model, prediction, _aggregate(outcomes),
                 "; ".join(lines), section)


def claim_stage_lesion(summary: dict) -> Claim:
    """Claim 6b: the MSA at the end of a stage matters most (lesion study)."""
    cid, section = "stage-lesion", "lesion"
    text = "MSAs at the end of a stage matter most"
    quantity = ("mean accuracy loss when removing the last MSA of each stage minus that when "
                "removing the other MSAs")
    prediction = "end-of-stage MSA loss > other MSA loss (models with MSAs in several stages)"
    sec = _section(summary, section)
    per_model: dict[str, Any] = {}
    outcomes, lines = [], []
    for label, e in sorted(sec.items()):
        if not isinstance(e, dict):
            continue
        base = e.get("baseline_acc")
        blocks = [b for b in e.get("blocks") or [] if isinstance(b, dict)]
        msas = [(i, b) for i, b in enumerate(blocks)
                if b.get("kind") == "msa" and _finite(b.get("acc"))]
        stages = {str(b.get("stage")) for _, b in msas}
        if not _finite(base) or len(stages) < 2:
            per_model[label] = "MSAs in <2 stages" if _finite(base) else None
            continue
        last: dict[str, tuple[float, int]] = {}
        for i, b in msas:
            key = (float(b["depth"]) if _finite(b.get("depth")) else float(i), i)
            s = str(b.get("stage"))
            if s not in last or key > last[s]:
                last[s] = key
        end_idx = {k[1] for k in last.values()}
        end = [float(base) - float(b["acc"]) for i, b in msas if i in end_idx]
        other = [float(base) - float(b["acc"]) for i, b in msas if i not in end_idx]
        if not other:
            per_model[label] = "one MSA per stage"
            continue
        me, mo = sum(end) / len(end), sum(other) / len(other)
        per_model[label] = me - mo
        o = -_compare(me, mo, TOL["accuracy"], False)  # predicted: me > mo
        outcomes.append(o)
        lines.append(f"{label}: end-of-stage {_fmt(me)} vs other {_fmt(mo)} ({_WORD[o]})")
    if not outcomes:
        return _not_measured(cid, text, quantity, prediction, section,
                             "no model with MSAs in several stages" if sec
                             else "no lesion results", per_model)
    return Claim(cid, text, quantity, per_model, prediction, _aggregate(outcomes),
                 "; ".join(lines), section)


CLAIMS: tuple[Callable[[dict], Claim], ...] = (
    claim_flatness, claim_negative_eigenvalues, claim_fourier, claim_variance,
    claim_robustness, claim_stage_cka, claim_stage_lesion)


def evaluate_claims(summary: dict) -> list[Claim]:
    """One :class:`Claim` per paper claim, in the paper's order, each with a computed verdict."""
    return [rule(summary) for rule in CLAIMS]


def claims_to_json(claims: Iterable[Claim]) -> list[dict[str, Any]]:
    """The claims as plain dictionaries (for ``summary.json``)."""
    return [c.to_dict() for c in claims]
