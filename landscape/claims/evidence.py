"""A claim's evidence and verdict: :class:`Claim`, :class:`Evidence`, the two-level bootstrap,
the per-seed effects, the verdict rule and :func:`judge` (the rules: ``landscape.claims``)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..summary import ModelSummary, Summary

AGREES = "agrees"
DISAGREES = "disagrees"
NOT_MEASURED = "not measured"
INCONCLUSIVE = "inconclusive"
VERDICTS = (AGREES, DISAGREES, INCONCLUSIVE, NOT_MEASURED)

N_BOOT = 2000            # bootstrap replicates
LEVEL = 0.95             # interval coverage
GROUPS = 25              # image groups kept per analysis for the bootstrap (see group_means)


@dataclass
class Claim:
    """One claim row: effect with its 95% interval, n, the exact test, the verdict by the rules,
    the leave-one-checkpoint-out verdicts and (block rows) the per-block breakdown.

    ``id`` is the row (``flatness-vit``), ``group`` the claim it is a part of (``flatness``),
    ``family`` the family the row is about; ``dropped`` names every piece of evidence the rule
    left out and why; ``per_seed`` is each checkpoint's value (seeds are the top level)."""

    id: str
    claim: str
    quantity: str
    per_model: dict[str, Any]
    prediction: str
    verdict: str
    detail: str
    section: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    effect: float | None = None
    interval: list[float] | None = None
    n: int = 0                       # checkpoints that contribute
    n_detail: str = ""               # what the units are and how many
    per_seed: dict[str, float] = field(default_factory=dict)
    group: str = ""
    family: str = ""
    pairs: list[int] | None = None   # [pointing the paper's way, all] (the text summary)
    dropped: list[str] = field(default_factory=list)
    scale: str = "difference"        # or "log ratio": effect and interval are ratios (null 1)
    test: dict[str, Any] = field(default_factory=dict)   # the exact test (rules.py)
    fragile: bool = False            # dropping one checkpoint changes the verdict
    leave_one_out: dict[str, str] = field(default_factory=dict)  # label -> verdict without it
    per_block: list[dict[str, Any]] = field(default_factory=list)  # within-model block rows
    carried_by: list[str] = field(default_factory=list)  # blocks the row rests on
    raw: dict[str, Any] | None = None  # a log-ratio row's raw difference and interval

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (JSON-serializable)."""
        return asdict(self)


@dataclass
class Evidence:
    """One checkpoint's evidence for a claim: resampling units and a statistic of their mean.

    ``units`` is (U, F); ``stat`` maps a (B, F) array of unit means to (B,) model values.
    """

    label: str
    arch: str
    seed: Any
    side: str                     # "self" (within-model), "test" / "ref" (between families)
    units: np.ndarray
    stat: Callable[[np.ndarray], np.ndarray]
    comparisons: int = 1

    def value(self) -> float:
        """The statistic on all units."""
        return float(self.stat(self.units.mean(axis=0, keepdims=True))[0])


# ----------------------------------------------------------------------------- evidence helpers
def group_means(values: Any, groups: int = GROUPS) -> list:
    """Means of ``values`` (n,) or (n, F) over ``min(groups, n)`` consecutive, near-equal groups
    (sizes differ by at most one; 8 significant digits): the resampling units that the summary
    keeps instead of every image."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape[0] == 0:
        return []
    g = max(1, min(int(groups), v.shape[0]))
    means = np.stack([c.mean(axis=0) for c in np.array_split(v, g)])
    return [float(f"{x:.8g}") for x in means.ravel()] if means.ndim == 1 else \
        [[float(f"{x:.8g}") for x in row] for row in means.reshape(g, -1).tolist()]


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _section(summary: Summary, name: str) -> dict[str, Any]:
    """label -> typed entry of section ``name`` (empty when the summary has none)."""
    return summary.entries(name)


def recipe_key(m: ModelSummary) -> str | None:
    """The training recipe a model entry records: its ``recipe`` (less ``data_fraction``) when
    given, else its ``epochs``; None when it records neither."""
    r = m.recipe
    if r:
        return ", ".join(f"{k}={r[k]}" for k in sorted(r) if k != "data_fraction")
    e = m.epochs
    return f"epochs={int(e) if float(e).is_integer() else e}" if _finite(e) else None


def _epochs(m: ModelSummary) -> float:
    """The entry's ``epochs``, else its recipe's, else 0."""
    e = m.epochs if m.epochs is not None else (m.recipe or {}).get("epochs")
    return float(e) if _finite(e) else 0.0


@dataclass(frozen=True)
class ModelInfo:
    """What the claims read of one model entry: its family (lower case; "" when unknown), its
    architecture (the label when unknown), seed, training-data fraction (1.0 when absent), the
    recipe as :func:`recipe_key` gives it, and the entry itself."""

    label: str
    family: str = ""
    arch: str = ""
    seed: Any = None
    data_fraction: float = 1.0
    recipe: str | None = None
    entry: ModelSummary | None = None

    @classmethod
    def unknown(cls, label: str) -> ModelInfo:
        """A label that has section entries but no model entry."""
        return cls(label, arch=label)


def all_models(summary: Summary) -> dict[str, ModelInfo]:
    """label -> :class:`ModelInfo` for every entry of ``summary.models``."""
    return {m.label: ModelInfo(
        m.label, family=str(m.family or "").lower(), arch=str(m.arch or m.label), seed=m.seed,
        data_fraction=float(m.data_fraction) if _finite(m.data_fraction) else 1.0,
        recipe=recipe_key(m), entry=m) for m in summary.models}


def _base_arch(m: ModelInfo, archs: set[str]) -> str:
    """The architecture a checkpoint is a variant of: its entry's ``model`` when given, else the
    longest other architecture name of which its own is an extension (``alternet_tiny_e8`` ->
    ``alternet_tiny``), else its own."""
    if m.entry is not None and m.entry.model:
        return m.entry.model
    stems = [a for a in archs if m.arch.startswith(a + "_")]
    return max(stems, key=len) if stems else m.arch


def main_models(summary: Summary) -> tuple[dict[str, ModelInfo], list[str]]:
    """The checkpoints of the main rows, and the labels left to the training rows: a model
    trained on a subset (``data_fraction`` < 1), marked ``variant``, or a variant of another
    architecture in the summary (arch ``<arch>_<suffix>``, or ``model: <arch>`` beside its own
    arch name) is left out, and where one architecture was trained by several recipes only the
    longest (most ``epochs``; entries without epochs count as 0) enters the main rows (a shorter
    one answers the matched-training row)."""
    models = all_models(summary)
    archs = {m.arch for m in models.values()}
    base = {lab: _base_arch(m, archs) for lab, m in models.items()}
    aside = [lab for lab, m in models.items()
             if m.data_fraction != 1.0 or (m.entry is not None and m.entry.variant)
             or (base[lab] != m.arch and base[lab] in archs)]
    longest: dict[str, float] = {}
    for lab, m in models.items():
        if lab not in aside and m.entry is not None:
            longest[base[lab]] = max(longest.get(base[lab], 0.0), _epochs(m.entry))
    aside += [lab for lab, m in models.items() if lab not in aside and m.entry is not None
              and _epochs(m.entry) < longest[base[lab]]]
    return {lab: m for lab, m in models.items() if lab not in aside}, aside


def _models(summary: Summary) -> dict[str, ModelInfo]:
    """label -> :class:`ModelInfo` of the main rows' checkpoints (:func:`main_models`)."""
    return main_models(summary)[0]


def _fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _seed_key(seed: Any, label: str) -> str:
    return f"s{seed}" if seed is not None else label


# ----------------------------------------------------------------------------- bootstrap
def _boot_model(ev: Evidence, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """``n_boot`` bootstrap values of one checkpoint's statistic (units resampled)."""
    u = len(ev.units)
    counts = rng.multinomial(u, np.full(u, 1.0 / u), size=n_boot)  # (B, U)
    return np.asarray(ev.stat(counts @ ev.units / u), dtype=np.float64)


def _combine(sides: dict[str, np.ndarray]) -> np.ndarray:
    """Effect from (B, k) arrays per side: mean of "self", or mean "test" minus mean "ref"."""
    if "self" in sides:
        return sides["self"].mean(axis=1)
    return sides["test"].mean(axis=1) - sides["ref"].mean(axis=1)


def bootstrap_effect(evidence: Sequence[Evidence], seed: int = 0, n_boot: int = N_BOOT,
                     level: float = LEVEL) -> tuple[float, float, float]:
    """(effect, lower, upper): point effect and the percentile interval of the two-level
    bootstrap (seeds of each architecture, then units of each drawn checkpoint)."""
    rng = np.random.default_rng(seed)
    boots = np.stack([_boot_model(ev, rng, n_boot) for ev in evidence])  # (M, B)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, ev in enumerate(evidence):
        groups.setdefault((ev.side, ev.arch), []).append(i)
    parts: dict[str, list[np.ndarray]] = {}
    for (side, _arch), members in groups.items():
        m = np.asarray(members)
        pick = m[rng.integers(0, len(m), size=(n_boot, len(m)))]    # seeds resampled
        col = rng.integers(0, n_boot, size=(n_boot, len(m)))       # an independent unit draw
        parts.setdefault(side, []).append(boots[pick, col])
    reps = _combine({k: np.concatenate(v, axis=1) for k, v in parts.items()})
    point = _combine({k: np.array([[ev.value() for ev in evidence if ev.side == k]])
                      for k in parts})[0]
    a = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(reps, [a, 1.0 - a])
    return float(point), float(lo), float(hi)


def checkpoint_values(evidence: Sequence[Evidence]) -> dict[str, dict[str, float]]:
    """side -> {label: the checkpoint's value}: the seed-level observations of a claim."""
    out: dict[str, dict[str, float]] = {}
    for ev in evidence:
        out.setdefault(ev.side, {})[ev.label] = ev.value()
    return out


def seed_interval(evidence: Sequence[Evidence], level: float = LEVEL
                  ) -> tuple[float, float] | None:
    """The t-interval over checkpoints (seeds): within-model, mean ± t(n-1)·sd/√n; between
    families, Welch's interval for the difference of the two means. None when a side has fewer
    than two checkpoints (no seed-to-seed spread to estimate)."""
    from scipy.stats import t as student_t
    vals = {k: np.array(list(v.values())) for k, v in checkpoint_values(evidence).items()}
    q = 0.5 + level / 2.0
    if "self" in vals:
        v = vals["self"]
        if len(v) < 2:
            return None
        m, se = float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))
        h = float(student_t.ppf(q, len(v) - 1)) * se
        return m - h, m + h
    a, b = vals.get("test", np.zeros(0)), vals.get("ref", np.zeros(0))
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    d = float(a.mean() - b.mean())
    if se == 0:
        return d, d
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    h = float(student_t.ppf(q, df)) * se
    return d - h, d + h


def pair_count(evidence: Sequence[Evidence], direction: int) -> tuple[int, int]:
    """(pointing the paper's way, all): between families every (challenger, CNN) pair of
    checkpoints, whatever their seed numbers; within a model every checkpoint."""
    vals = checkpoint_values(evidence)
    if "self" in vals:
        v = list(vals["self"].values())
        return sum(direction * x > 0 for x in v), len(v)
    t, r = vals.get("test", {}).values(), list(vals.get("ref", {}).values())
    diffs = [a - b for a in t for b in r]
    return sum(direction * d > 0 for d in diffs), len(diffs)


#: The families a between-family claim always has a row for (others get one when present).
CHALLENGERS = ("vit", "hybrid")
FAMILY_NAMES = {"vit": "ViT", "hybrid": "hybrid", "cnn": "CNN"}


def family_name(fam: str) -> str:
    return FAMILY_NAMES.get(fam, fam or "unknown family")


#: What a between-family row compares: the ViT differs from the CNN in everything (patch
#: embedding, LayerNorm, recipe), the hybrid swaps Convs for MSAs in the same trunk.
COMPARISONS = {"vit": "ViT vs CNN (whole architecture)",
               "hybrid": "MSA in place of Conv (same trunk)"}


def comparison_name(fam: str) -> str:
    """The words for a ``fam``-vs-CNN row ("ViT vs CNN (whole architecture)", ...)."""
    return COMPARISONS.get(fam, f"{family_name(fam)} vs CNN")


def challenger_families(models: dict[str, ModelInfo]) -> list[str]:
    """ViT and hybrid, then every other non-CNN family present in ``summary.models``."""
    present = [m.family for m in models.values()]
    return [*CHALLENGERS, *sorted({f for f in present
                                   if f and f != "cnn" and f not in CHALLENGERS})]


def _between(values: dict[str, np.ndarray | None], models: dict[str, ModelInfo], family: str,
             stat: Callable[[np.ndarray], np.ndarray]) -> tuple[list[Evidence], list[str]]:
    """Evidence for a ``family``-vs-CNN claim from per-model unit arrays."""
    evs, missing = [], []
    for lab, units in values.items():
        info = models.get(lab) or ModelInfo.unknown(lab)
        fam = info.family
        side = "test" if fam == family else "ref" if fam == "cnn" else None
        if side is None or units is None or len(units) == 0:
            continue
        evs.append(Evidence(lab, info.arch, info.seed, side, units, stat))
    if not any(e.side == "ref" for e in evs):
        missing.append("no CNN model with this evidence")
    if not any(e.side == "test" for e in evs):
        missing.append(f"no {family_name(family)} model with this evidence")
    return evs, missing


def missing_models(summary: Summary, section: str, models: dict[str, ModelInfo],
                   families: Sequence[str]) -> list[str]:
    """'label: no <section> results' for every model of ``families`` the section lacks."""
    have = set(_section(summary, section))
    if not have:
        return []
    return [f"{lab}: no {section} results" for lab, m in models.items()
            if m.family in families and lab not in have]


def _why(summary: Summary, section: str, field: str, evs: Sequence[Evidence],
         missing: Sequence[str], extra: Sequence[str] = ()) -> str:
    """Why a between-family claim is not measured: no section, no field, or a missing family."""
    if not _section(summary, section):
        return f"no {section} results"
    if not evs:
        return "; ".join([*extra, f"no model has {section}.{field}"])
    return "; ".join([*extra, *missing])


def _mean_col(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1)


def _units(values: Any) -> np.ndarray | None:
    """A finite (U, F) array from a list (of lists), or None."""
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0 or not np.isfinite(a).all():
        return None
    return a
