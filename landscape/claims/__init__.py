"""The paper's claims checked against measured numbers: effect, 95% interval, n and a verdict.

``evaluate_claims(summary, seed=None, n_boot=None)`` reads the typed summary that ``landscape
analyze`` builds (:class:`landscape.summary.Summary`: the rules read the attributes of its
:class:`~landscape.summary.ModelSummary` and section entries; a ``summary.json`` object is parsed
into one first) and returns one :class:`Claim` per claim of "How Do Vision Transformers Work?"
(Park & Kim, 2022) that the analyses can test.

Rows
----
One row per family, never pooled across families (a pooled row hid a clean ViT result behind a
hybrid that was not flatter): every between-family claim has one row per challenger family
against the CNN (``flatness-vit``, ``flatness-hybrid``, ...; ViT and hybrid always, any other
non-CNN family when present), every within-model claim one row per family that has the block kind
(``fourier-msa-vit``, ``fourier-msa-hybrid``, ``fourier-conv-cnn``, ...). ``Claim.group`` names
the claim a row belongs to, ``Claim.family`` the family. Families come from each model entry's
``family`` (the model zoo's arch metadata: ``cnn``, ``vit``, ``hybrid``). No pooled row is
emitted; the report groups the rows of one claim together.

Evidence, effect and interval (seeds are the top level)
-------------------------------------------------------
Every claim is an *effect* with a predicted sign, measured on checkpoints (each model entry of
``summary["models"]`` carries ``arch``, ``seed`` and ``family``; several seeds of one
architecture are independent replicates). Each checkpoint contributes resampling *units* (groups
of images, Hessian mini-batches, random surface planes) and a value: a statistic of its units.

* within-model claims (Fourier, variance, CKA, lesion): effect = mean over the family's
  checkpoints of the checkpoint's value (e.g. the mean change of ΔlogA across its MSA blocks);
* between-family claims (flatness, negative eigenvalues, λmin/λmax, robustness): effect = mean
  over the challenger family's checkpoints minus mean over the CNN checkpoints.

Scale. Positive scale quantities - λmax and the λmin/λmax ratio, whose checkpoint values spread
over a factor of 20 (one seed's λmax carries a raw-scale t-interval) - are compared as LOG
ratios: every statistic below is taken of ln(checkpoint value), the effect shown is the ratio of
geometric means (challenger / CNN; no effect = 1), its interval the exponentiated interval of the
log difference, and the raw difference with its own interval is shown beside (``Claim.raw``).
``Claim.scale`` says which ("log ratio" or "difference"). A row whose checkpoint values are not
all > 0 stays a difference and says so under *dropped*.

Interval: the HULL (on each side the farther end) of

1. the **t-interval over checkpoints** (the seed level): within a model ``mean ± t(n-1)·s/√n``
   over the n checkpoint values; between families Welch's interval for the difference of the two
   family means (Welch-Satterthwaite degrees of freedom); and
2. the two-level percentile bootstrap (``N_BOOT`` replicates, seeded; the seed is recorded in
   ``extra["bootstrap"]``): seeds of every architecture resampled, then each drawn checkpoint's
   units. It adds the within-checkpoint noise where that is larger.

So the interval is never narrower than the t-interval over per-seed effects. With only ONE
checkpoint on a side there is no seed-level interval: the interval shown is the bootstrap over
units alone and the verdict is at most ``inconclusive`` (``extra["seed_level"]`` is False).
``extra`` keeps both intervals (``t_interval``, ``bootstrap_interval``).

Exact test (``Claim.test``; :mod:`landscape.claims.rules`). Checkpoints are the units, so the test
is on the checkpoint values:

* between families: the exact two-sided **Mann-Whitney** test, challenger vs CNN checkpoints. Each
  checkpoint enters n_other pairs, so a count "k of n1·n2 pairs" is one U statistic over
  n1 + n2 units, not n1·n2 observations: the row shows AUC = U/(n1·n2), oriented so that 1 means
  every pair ordered the paper's way (ties ½), and the exact p from the permutation
  distribution of the rank sum (5 vs 5 fully separated: p = 2/252 = 0.0079);
* within a model: the exact two-sided **sign test** over checkpoints (5 of 5: p = 0.0625);
* a trend over data sizes: the exact two-sided **Jonckheere-Terpstra** test across the ordered
  data-size groups (the rank test made for an ordered alternative; 2 groups: Mann-Whitney).

Rules (``direction`` is the sign the paper predicts for the effect; ``ALPHA`` = 0.05)
--------------------------------------------------------------------------------------
``agrees``
    the interval excludes no effect (0, or 1 for a ratio) on the paper's side AND the exact test
    leans the paper's way with p < 0.05;
``disagrees``
    the mirror image: the interval excludes no effect on the other side and the test leans that
    way with p < 0.05;
``inconclusive``
    otherwise, and always with ONE checkpoint on a side.
Where the exact test cannot reach p < 0.05 at this n (a sign test over 5 checkpoints: at best
0.0625; Mann-Whitney 3 vs 3: 0.1) p < 0.05 is not required; the test must instead show the most
it can, every checkpoint (pair) the same way (5 of 5, AUC 1 or 0), and the row says so ("n=5
cannot reach p<0.05") in ``Claim.test["note"]`` and its text;
``not measured``
    no valid comparison (no block compared at an unchanged grid and a high enough frequency, no
    model of a family, no evidence field, fewer than ``MIN_PLANES`` surface planes, no data-size
    variants, recipes that differ).

Leave one checkpoint out: every measured row recomputes its verdict without each checkpoint in
turn (``Claim.leave_one_out``: label -> verdict); when any differs from the row's verdict the row
is ``fragile`` (``Claim.fragile``, "FRAGILE" in the text and the report).

Blocks: a within-model feature row (Fourier, variance per kind) shows each block alone (effect,
interval, sign count, verdict) and the row without it (``Claim.per_block``, in depth order). A
block *carries* the row when dropping it changes the verdict or moves an interval that excluded 0
to contain it; such blocks are named in ``Claim.carried_by`` and the text ("carried by
blocks.0.mlp").

Which checkpoints: the main rows use the main checkpoints (:func:`~landscape.claims.evidence.
main_models`): a model trained on a subset (``data_fraction`` < 1) or marked ``variant`` is left
out, and where one architecture was trained by several recipes only the longest (most epochs)
enters. The training rows below use the others.

Wording: a ViT row compares whole architectures ("ViT vs CNN (whole architecture)": patch
embedding, LayerNorm and the recipe differ too), a hybrid row swaps Convs for MSAs in the same
trunk ("MSA in place of Conv (same trunk)").

Evidence a rule leaves out is named in ``Claim.dropped`` (and the report): a model without the
field, a batch with λmax <= 0, a block not at an unchanged grid, a Fourier comparison read below
the frequency threshold ("no high frequency on a 4×4 map").

Claims and their quantities
---------------------------
``flatness-<family>``              λmax per Hessian mini-batch (mean per checkpoint); LOG ratio
                                   family / CNN, predicted < 1.
``flatness-surface-<family>``      loss increase over the centre, per random plane, averaged
                                   over the reported radii; family minus CNN, predicted < 0.
                                   Needs at least ``MIN_PLANES`` planes per model.
``negative-eigenvalues-<family>``  the paper's Fig. 4 statistic: per batch the share of negative
                                   values among the top-5 eigenvalues by magnitude
                                   (``per_batch.negative_top_k / top_k``; without per-batch counts
                                   the spectrum's overall ``negative_share``, one unit); family
                                   minus CNN, predicted > 0.
``lambda-ratio-<family>``          second view: per checkpoint the MEDIAN over batches of
                                   ``max(-λmin, 0) / λmax`` (batches with λmax <= 0 dropped and
                                   named); LOG ratio family / CNN, predicted > 1.
``fourier-<kind>-<family>``        change of ΔlogA across each block of the kind, block output
                                   minus the preceding output ON THE SAME GRID, counted only where
                                   the read-out frequency is >= ``fourier_min_freq`` (default
                                   ``FOURIER_MIN_FREQ`` = 0.75, i.e. 3π/4; an evaluate_claims
                                   argument or the summary setting ``fourier_min_freq``, units
                                   of π); predicted < 0 for MSA (low-pass), > 0 for Conv and MLP.
                                   The row names the frequencies it read.
``variance-<kind>-<family>``       log ratio of the feature-map variance across each block of the
                                   kind, same grid only; predicted < 0 for MSA, > 0 Conv and MLP.
``robustness-<family>``            accuracy drop (clean minus mean over the highest
                                   ``HIGH_BAND_FRACTION`` of the noise frequencies), per image
                                   group; family minus CNN, predicted < 0.
``stage-cka-<arch>``               multi-stage models, one row per architecture (a ResNet and an
                                   AlterNet are never pooled): mean CKA of within-stage pairs
                                   minus across-stage pairs AT EQUAL DEPTH DISTANCE, from
                                   per-batch HSIC; predicted > 0.
``stage-lesion-<arch>``            accuracy loss from removing the last MSA of each stage minus
                                   that from removing the other MSAs, per image group; > 0. Needs
                                   MSAs in at least two stages and a stage with several MSAs (a
                                   ViT has all its MSAs in one stage; alternet_tiny one per
                                   stage); without one such model, one not-measured row
                                   ``stage-lesion`` naming each architecture's reason.
``data-size-negative-<family>``    the negative-eigenvalue share per checkpoint against the
                                   training-data fraction (``models[i]["data_fraction"]``, 1.0
                                   when absent), ViT and the CNN as a reference: OLS slope on
                                   log10(fraction) with its t-interval over checkpoints (n-2
                                   df) and the exact Jonckheere-Terpstra test across the data
                                   sizes; predicted < 0 (the paper's Fig. 4: large datasets
                                   suppress the ViT's negative eigenvalues). A trend, not a
                                   difference at two sizes, because the claim is monotone in
                                   data size; the rank test needs no linearity.
``data-size-lambda-max-<family>``  the same with ln(mean λmax) (a scale quantity): the factor per
                                   tenfold more data, predicted < 1 (a secondary view).
``train-nll-d<pct>``               per data size, training NLL (``models[i]["train_nll"]``) ViT
                                   minus CNN, predicted > 0 (the ViT's weakness is optimization).
``overfit-gap-d<pct>``             per data size, (test − train NLL) ViT minus CNN, predicted
                                   < 0 ("not larger": agrees when smaller, disagrees when
                                   larger, inconclusive when the interval holds 0).
``accuracy-matched-hybrid``        test accuracy hybrid minus CNN, only between full-data
                                   checkpoints of the same recipe (``models[i]["recipe"]``, else
                                   ``"epochs"``); not measured, naming both, when they differ.

A within-model claim with no block of its kind in any model keeps one not-measured row without a
family suffix (``fourier-mlp``).

Evidence format in the summary (per model label; a missing field makes the claim not measured)
---------------------------------------------------------------------------------------------
As written in ``summary.json`` (the typed entries of :mod:`landscape.summary_sections` have one
attribute per key; a block row's value is ``Block.value``).

``models[i]``: ``{"label", "arch", "seed", "family", ...}`` (``arch`` falls back to the label,
``seed`` to None = its own seed); for the training rows also ``data_fraction`` (default 1.0),
``train_nll``, ``test_nll``, ``test_acc``, ``epochs`` or ``recipe`` (a dict), ``variant``.

``hessian[label]["per_batch"]``: ``{"lambda_max": [λmax of batch b], "lambda_min": [most negative
(smallest algebraic) eigenvalue of batch b], "negative_top_k": [negative values among batch b's
top-k], "top_k": k}``, one entry per mini-batch, equal lengths; ``hessian[label]["spectrum"]
["negative_share"]`` the share over all batches.

``surface[label]["planes"]``: ``[{"seed": int, "radii": [r_1, ...], "increase": [loss increase
over the centre at radius r_j, ...]}, ...]``, one entry per random plane (direction seeds), the
same radii in every plane of every model; ``increase[j]`` is the plane's statistic at ``r_j`` (the
producer documents it, e.g. the median over the grid points within ``r_j`` minus the centre).
A checkpoint's value is the mean over its planes of the mean over the radii; the bootstrap
resamples planes, and ``extra["effect_per_radius"]`` shows the effect at each radius alone.

``fourier[label]`` / ``variance[label]``: ``{"blocks": [{"name", "kind", "stage", "depth",
"grid", "groups": [mean over the images of group g]}, ...]}`` in depth order (the input first),
value ``dlogA_hf`` (ΔlogA at the read-out frequency ``freq`` in units of π, labelled
``freq_label``) resp. ``variance``.

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
    claim_lambda_ratio,
    claim_negative_eigenvalues,
    negative_top_k_share,
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
    challenger_families,
    group_means,
    main_models,
    pair_count,
    seed_interval,
)
from .features import (
    FOURIER_MIN_FREQ,
    HIGH_BAND_FRACTION,
    claim_fourier,
    claim_robustness,
    claim_variance,
    high_frequency_drop,
    same_grid_pairs,
)
from .rules import (
    ALPHA,
    jonckheere_exact,
    mann_whitney_exact,
    min_p,
    sign_test_exact,
    slope_interval,
    welch_interval,
)
from .stages import (
    cka_stage_stat,
    claim_stage_cka,
    claim_stage_lesion,
    matched_distance_pairs,
)
from .training import claim_data_size, claim_matched_accuracy, claim_overfitting, judge_trend
from .verdict import assess, judge

__all__ = ["AGREES", "ALPHA", "CLAIMS", "DISAGREES", "FOURIER_MIN_FREQ", "GROUPS",
           "HIGH_BAND_FRACTION", "INCONCLUSIVE", "LEVEL", "MIN_PLANES", "NOT_MEASURED", "N_BOOT",
           "VERDICTS", "Claim", "Evidence", "assess", "bootstrap_effect", "challenger_families",
           "cka_stage_stat", "claim_data_size", "claim_flatness", "claim_flatness_surface",
           "claim_fourier", "claim_lambda_ratio", "claim_matched_accuracy",
           "claim_negative_eigenvalues", "claim_overfitting", "claim_robustness",
           "claim_stage_cka", "claim_stage_lesion", "claim_variance", "claims_to_json",
           "evaluate_claims", "group_means", "high_frequency_drop", "jonckheere_exact", "judge",
           "judge_trend", "main_models", "mann_whitney_exact", "matched_distance_pairs",
           "min_p", "negative_top_k_share", "pair_count", "same_grid_pairs", "seed_interval",
           "sign_test_exact", "slope_interval", "top_eigenvalue", "welch_interval"]

CLAIMS: tuple[Callable[..., Any], ...] = (
    claim_flatness, claim_flatness_surface, claim_negative_eigenvalues, claim_lambda_ratio,
    claim_fourier, claim_variance, claim_robustness, claim_stage_cka, claim_stage_lesion,
    claim_data_size, claim_overfitting, claim_matched_accuracy)


def evaluate_claims(summary: Summary | Mapping[str, Any], seed: int | None = None,
                    n_boot: int | None = None, fourier_min_freq: float | None = None
                    ) -> list[Claim]:
    """One :class:`Claim` per claim row, in the paper's order, from a summary of the current
    schema (:func:`landscape.summary.as_summary`; an older one is refused). ``seed`` (default:
    the summary's ``settings.seed``, else 0) seeds every bootstrap and is recorded in each
    claim; ``fourier_min_freq`` (units of π; default the summary's ``settings.fourier_min_freq``,
    else ``FOURIER_MIN_FREQ`` = 0.75) is the lowest read-out frequency a Fourier comparison
    counts at."""
    summary = as_summary(summary)
    if seed is None:
        s = summary.settings.get("seed")
        seed = int(s) if _finite(s) else 0
    n_boot = N_BOOT if n_boot is None else int(n_boot)
    if fourier_min_freq is None:
        f = summary.settings.get("fourier_min_freq")
        fourier_min_freq = float(f) if _finite(f) else FOURIER_MIN_FREQ
    out: list[Claim] = []
    for rule in CLAIMS:
        r = (rule(summary, seed, n_boot, fourier_min_freq) if rule is claim_fourier
             else rule(summary, seed, n_boot))
        out.extend(r if isinstance(r, list) else [r])
    return out


def claims_to_json(claims: Iterable[Claim]) -> list[dict[str, Any]]:
    """The claims as plain dictionaries (for ``summary.json``)."""
    return [c.to_dict() for c in claims]
