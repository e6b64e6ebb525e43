"""The paper's claims checked against measured numbers: effect, 95% interval, n and a verdict.

``evaluate_claims(summary, seed=None, n_boot=None)`` reads the ``summary.json`` dictionary written
by ``landscape analyze`` and returns one :class:`Claim` per claim of "How Do Vision Transformers
Work?" (Park & Kim, 2022) that the analyses can test.

Evidence and effect
-------------------
Every claim is an *effect* with a predicted sign, measured on checkpoints (each model entry of
``summary["models"]`` carries ``arch`` and ``seed``; several seeds of one architecture are
independent replicates). Each checkpoint contributes resampling *units* (groups of images, Hessian
mini-batches, CKA mini-batches, random surface planes) and a statistic of the mean over its units.

* within-model claims (Fourier, variance, CKA, lesion): effect = mean over checkpoints of the
  checkpoint's value (e.g. the mean change of ΔlogA across its MSA blocks);
* between-family claims (flatness, negative eigenvalues, robustness): effect = mean over the
  challenger checkpoints (ViT, or ViT and hybrid) minus mean over the CNN checkpoints.

Interval: a two-level percentile bootstrap (``N_BOOT`` replicates, seeded; the seed is recorded
in every claim's ``extra["bootstrap"]``): in each replicate the seeds of every architecture are
resampled with replacement, then each drawn checkpoint's units with replacement. The 95% interval
is the 2.5 / 97.5 percentiles of the replicated effect. (Models see the same images, but units are
resampled independently per checkpoint, which can only widen the interval.)

Rules (``direction`` is the sign the paper predicts for the effect)
-------------------------------------------------------------------
``agrees``
    the interval excludes 0 on the paper's side AND the effect computed on each seed alone (the
    checkpoints with that seed) has the predicted sign, for every seed (for family comparisons
    whose families share no seed: for every pair of a challenger and a CNN checkpoint);
``disagrees``
    the interval excludes 0 on the other side;
``inconclusive``
    otherwise (the interval contains 0, or the seeds disagree in direction);
``not measured``
    no valid comparison (no block compared at an unchanged grid, no model of a family, no evidence
    field, fewer than ``MIN_PLANES`` surface planes).

Claims and their quantities
---------------------------
``flatness``               λmax per Hessian mini-batch; ViT/hybrid minus CNN, predicted < 0.
``flatness-surface``       loss increase over the centre, per random plane, averaged over the
                           reported radii; ViT/hybrid minus CNN, predicted < 0. Needs at least
                           ``MIN_PLANES`` planes per model (no single plane decides).
``negative-eigenvalues``   per batch ``max(-λmin, 0) / λmax`` (size of the negative curvature
                           relative to the top one); ViT minus CNN, predicted > 0. The share of
                           batches with λmin < 0 is reported beside it.
``fourier-msa|conv|mlp``   change of the high-frequency ΔlogA across each block of the kind,
                           block output minus the preceding output ON THE SAME GRID only;
                           predicted < 0 for MSA (low-pass), > 0 for Conv and MLP.
``variance-msa|conv|mlp``  log ratio of the feature-map variance across each block of the kind,
                           same grid only; predicted < 0 for MSA, > 0 for Conv and MLP.
``robustness``             accuracy drop (clean minus mean over the highest ``HIGH_BAND_FRACTION``
                           of the noise frequencies), per image group; ViT minus CNN, < 0.
``stage-cka``              multi-stage models: mean CKA of within-stage pairs minus across-stage
                           pairs AT EQUAL DEPTH DISTANCE (averaged over the distances that have
                           both), from per-batch HSIC; predicted > 0.
``stage-lesion``           accuracy loss from removing the last MSA of each stage minus that from
                           removing the other MSAs, per image group; predicted > 0.

Evidence format in the summary (per model label; a missing field makes the claim not measured)
---------------------------------------------------------------------------------------------
``models[i]``: ``{"label", "arch", "seed", "family", ...}`` (``arch`` falls back to the label,
``seed`` to None = its own seed).

``hessian[label]["per_batch"]``: ``{"lambda_max": [λmax of batch b], "lambda_min": [most negative
(smallest algebraic) eigenvalue of batch b]}``, one entry per mini-batch, equal lengths.

``surface[label]["planes"]``: ``[{"seed": int, "radii": [r_1, ...], "increase": [loss increase
over the centre at radius r_j, ...]}, ...]``, one entry per random plane (direction seeds), the
same radii in every plane of every model; ``increase[j]`` is the plane's statistic at ``r_j`` (the
producer documents it, e.g. the median over the grid points within ``r_j`` minus the centre).
A checkpoint's value is the mean over its planes of the mean over the radii; the bootstrap
resamples planes, and ``extra["effect_per_radius"]`` shows the effect at each radius alone.

``fourier[label]`` / ``variance[label]``: ``{"blocks": [{"name", "kind", "stage", "depth",
"grid", "groups": [mean over the images of group g]}, ...]}`` in depth order (the input first),
value ``dlogA_hf`` (ΔlogA at the read-out frequency ``freq``, labelled ``freq_label``) resp.
``variance``.

``robustness[label]``: ``{"freqs", "acc", "clean_acc", "groups": {"clean": [G], "acc": [[G] per
frequency]}}``.

``cka[label]``: ``{"names", "stages", "hsic_batches": [L x L HSIC matrix per batch]}``.

``lesion[label]``: ``{"baseline_acc", "baseline_groups": [G], "blocks": [{"name", "kind",
"stage", "depth", "acc", "groups": [G]}]}``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..summary import Summary, as_summary
from .curvature import (
    MIN_PLANES,
    claim_flatness,
    claim_flatness_surface,
    claim_negative_eigenvalues,
    top_eigenvalue,
)
from .evidence import (
    AGREES,
    DISAGREES,
    GROUPS,
    INCONCLUSIVE,
    LEVEL,
    N_BOOT,
    NOT_MEASURED,
    VERDICTS,
    Claim,
    Evidence,
    _finite,
    bootstrap_effect,
    group_means,
    judge,
    per_seed_effects,
    verdict_rule,
)
from .evidence import _mean_col as _mean_col  # re-exported for the tests
from .features import (
    HIGH_BAND_FRACTION,
    cka_stage_stat,
    claim_fourier,
    claim_robustness,
    claim_stage_cka,
    claim_stage_lesion,
    claim_variance,
    high_frequency_drop,
    matched_distance_pairs,
    same_grid_pairs,
)

__all__ = ["AGREES", "CLAIMS", "DISAGREES", "GROUPS", "HIGH_BAND_FRACTION", "INCONCLUSIVE",
           "LEVEL", "MIN_PLANES", "NOT_MEASURED", "N_BOOT", "VERDICTS", "Claim", "Evidence",
           "bootstrap_effect", "cka_stage_stat", "claim_flatness", "claim_flatness_surface",
           "claim_fourier", "claim_negative_eigenvalues", "claim_robustness", "claim_stage_cka",
           "claim_stage_lesion", "claim_variance", "claims_to_json", "evaluate_claims",
           "group_means", "high_frequency_drop", "judge", "matched_distance_pairs",
           "per_seed_effects", "same_grid_pairs", "top_eigenvalue", "verdict_rule"]

CLAIMS: tuple[Callable[..., Any], ...] = (
    claim_flatness, claim_flatness_surface, claim_negative_eigenvalues, claim_fourier,
    claim_variance, claim_robustness, claim_stage_cka, claim_stage_lesion)


def evaluate_claims(summary: Summary | Mapping[str, Any], seed: int | None = None,
                    n_boot: int | None = None) -> list[Claim]:
    """One :class:`Claim` per claim row, in the paper's order, from a summary of the current
    schema (:func:`landscape.summary.as_summary`; an older one is refused). ``seed`` (default:
    the summary's ``settings.seed``, else 0) seeds every bootstrap and is recorded in each
    claim."""
    summary = as_summary(summary)
    if seed is None:
        s = summary.settings.get("seed")
        seed = int(s) if _finite(s) else 0
    n_boot = N_BOOT if n_boot is None else int(n_boot)
    out: list[Claim] = []
    for rule in CLAIMS:
        r = rule(summary, seed, n_boot)
        out.extend(r if isinstance(r, list) else [r])
    return out


def claims_to_json(claims: Iterable[Claim]) -> list[dict[str, Any]]:
    """The claims as plain dictionaries (for ``summary.json``)."""
    return [c.to_dict() for c in claims]
