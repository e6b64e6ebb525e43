"""The typed model entries of ``summary.json``'s analysis sections (see :mod:`landscape.summary`).

One frozen dataclass per section entry (and per nested object: :class:`PerBatch`,
:class:`SpectrumStats`, :class:`Plane`, :class:`Block`, :class:`NoiseGroups`,
:class:`MatchedDistance`). ``landscape analyze`` builds them from its numbers
(:func:`landscape.analyze.summarize.summarize` parses the numbers it computed, so what it passes on
is exactly what reading ``summary.json`` back gives); the claims and the report read their
attributes.

Parsing (``Entry.parse``, :func:`parse_section`) turns a JSON object into an entry, refusing a
malformed one with one :class:`LandscapeError` line that names the field (``summary:
hessian.vit_s0.per_batch.lambda_max must be a list of numbers``). A field that is absent or
``null`` is ``None`` (the claims name what they miss, the report prints "—"); ``null`` inside a
number list stays ``None`` (a radius without grid points); keys a class does not name are kept in
``extra``. ``to_json`` writes the fields that are not ``None``, then ``extra``, so parsing what
it wrote gives an equal entry.

A :class:`Block` row keeps its measured value in ``value`` and the JSON key it is stored under in
``measure`` (:data:`BLOCK_MEASURES`: ``dlogA_hf``, the ΔlogA at the read-out frequency, for
Fourier; ``variance`` for variance; ``acc``, the accuracy with the block removed, for lesion), so
the file keeps the keys it always had.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .summary_fields import (
    Conv,
    Numbers,
    _any,
    _bool,
    _Entry,
    _int,
    _ints,
    _items,
    _list,
    _many,
    _matrix,
    _num,
    _nums,
    _one,
    _str,
    _strs,
)


# ----------------------------------------------------------------------------- hessian
@dataclass(frozen=True)
class PerBatch(_Entry):
    """Per Hessian mini-batch: largest top-k value, most negative eigenvalue and the number of
    negative values among the top-k by magnitude (the paper's Fig. 4 count; ``top_k`` values)."""

    lambda_max: Numbers | None = None
    lambda_min: Numbers | None = None
    negative_top_k: Numbers | None = None
    top_k: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[dict[str, Conv]] = {"lambda_max": _nums, "lambda_min": _nums,
                                         "negative_top_k": _nums, "top_k": _int}


@dataclass(frozen=True)
class SpectrumStats(_Entry):
    """The per-batch max-eigenvalue spectrum in numbers: ``count`` top-k values (``n_values`` in
    older files) over ``n_batches_finished`` of ``n_batches`` batches of ``batch_size`` images,
    the share of negative ones (``negative_share``), the mean of the positive ones, min and max,
    the most negative eigenvalue's statistics and the L2 term."""

    count: int | None = None
    n_values: int | None = None
    negative_share: float | None = None
    mean_positive: float | None = None
    min: float | None = None
    max: float | None = None
    n_batches_finished: int | None = None
    n_batches: int | None = None
    mean_products_per_batch: float | None = None
    wd: float | None = None
    l2: str | None = None
    converged_share: float | None = None
    lambda_min_count: int | None = None
    lambda_min_negative_share: float | None = None
    lambda_min_median: float | None = None
    median_abs_min_over_max: float | None = None
    batch_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[dict[str, Conv]] = {
        "count": _int, "n_values": _int, "negative_share": _num, "mean_positive": _num,
        "min": _num, "max": _num, "n_batches_finished": _int, "n_batches": _int,
        "mean_products_per_batch": _num, "wd": _num, "l2": _str, "converged_share": _num,
        "lambda_min_count": _int, "lambda_min_negative_share": _num, "lambda_min_median": _num,
        "median_abs_min_over_max": _num, "batch_size": _int}

    @property
    def values(self) -> int | None:
        """How many top-k values the spectrum holds (``count``, else ``n_values``)."""
        return self.count if self.count is not None else self.n_values


@dataclass(frozen=True)
class HessianEntry(_Entry):
    """One model's Hessian numbers: top/bottom eigenvalues and the trace of the averaged loss
    (``trace_note`` says why a trace is missing), the density's description, the loss (with its
    weight decay ``wd``, where ``wd_source`` says it came from, and the training transform
    ``augment``), the per-batch evidence and the spectrum's summary."""

    top_eigenvalues: Numbers | None = None
    bottom_eigenvalues: Numbers | None = None
    trace: float | None = None
    trace_se: float | None = None
    trace_note: str | None = None
    density: str | None = None
    n_samples: int | None = None
    n_params: int | None = None
    loss: str | None = None
    wd: float | None = None
    augment: str | None = None
    transform: str | None = None  # the training transform, as other writers name it
    wd_source: str | None = None
    per_batch: PerBatch | None = None
    spectrum: SpectrumStats | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[dict[str, Conv]] = {
        "top_eigenvalues": _nums, "bottom_eigenvalues": _nums, "trace": _num, "trace_se": _num,
        "trace_note": _str, "density": _str, "n_samples": _int, "n_params": _int, "loss": _str,
        "wd": _num, "augment": _str, "transform": _str, "wd_source": _str,
        "per_batch": _one(PerBatch), "spectrum": _one(SpectrumStats)}


# ----------------------------------------------------------------------------- surface
@dataclass(frozen=True)
class Plane(_Entry):
    """One random plane: its direction seed, the radii, the loss increase over the centre at
    each (``increase``: median, ``mean_increase``: mean over the grid points within the radius;
    ``points`` of them), its non-finite points and its grid."""

    seed: Any = None
    radii: Numbers | None = None
    increase: Numbers | None = None
    mean_increase: Numbers | None = None
    points: tuple[int | None, ...] | None = None
    non_finite: int | None = None
    grid: tuple[int | None, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[dict[str, Conv]] = {
        "seed": _any, "radii": _nums, "increase": _nums, "mean_increase": _nums,
        "points": _ints, "non_finite": _int, "grid": _ints}


@dataclass(frozen=True)
class SurfaceEntry(_Entry):
    """One model's loss surface: the quantity, the centre loss, the random planes, the mean loss
    increase within ``radius`` over planes, the largest loss, non-finite points, the grid and
    what the loss was."""

    quantity: str | None = None
    center_loss: float | None = None
    radius: float | None = None
    radii: Numbers | None = None
    planes: tuple[Plane, ...] | None = None
    mean_loss_increase: float | None = None
    max_loss: float | None = None
    non_finite: int | None = None
    grid: tuple[int | None, ...] | None = None
    loss: str | None = None
    wd: float | None = None
    augment: str | None = None
    transform: str | None = None  # the training transform, as other writers name it
    wd_source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[dict[str, Conv]] = {
        "quantity": _str, "center_loss": _num, "radius": _num, "radii": _nums,
        "planes": _many(Plane), "mean_loss_increase": _num, "max_loss": _num,
        "non_finite": _int, "grid": _ints, "loss": _str, "wd": _num, "augment": _str,
        "transform": _str, "wd_source": _str}


# ----------------------------------------------------------------------------- blocks
#: The JSON key a block row's measured value is stored under, per section.
BLOCK_MEASURES = {"fourier": "dlogA_hf", "variance": "variance", "lesion": "acc"}


@dataclass(frozen=True)
class Block(_Entry):
    """One block row (Fourier, variance or lesion): name, kind, stage, depth, the measured
    ``value`` (stored under the key ``measure``, see :data:`BLOCK_MEASURES`), ``same_grid``
    (its grid equals the preceding row's), grid (n of an n×n map), the read-out frequency
    (units of π) and its label, and the per-group values."""

    name: str | None = None
    kind: str | None = None
    stage: Any = None
    depth: float | None = None
    value: float | None = None
    measure: str | None = None
    same_grid: bool | None = None
    groups: Numbers | None = None
    grid: int | None = None
    freq: float | None = None
    freq_label: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[dict[str, Conv]] = {
        "name": _str, "kind": _str, "stage": _any, "depth": _num, "same_grid": _bool,
        "groups": _nums, "freq": _num, "freq_label": _str}

    @classmethod
    def parse(cls, d: Any, path: str) -> Block:
        if isinstance(d, cls):
            return d
        known, rest = cls._split(d, path)
        g = rest.pop("grid") if rest.get("grid") is not None else None
        if isinstance(g, list | tuple):  # an (h, w) grid: square maps only compare by n
            if len(set(g)) == 1 and g:
                g = g[0]
            else:  # kept as it was, compared with nothing
                rest["grid"], g = g, None
        if g is not None:
            known["grid"] = _int(g, f"{path}.grid")
        measure = next((k for k in BLOCK_MEASURES.values() if rest.get(k) is not None), None)
        if measure is not None:
            known.update(value=_num(rest.pop(measure), f"{path}.{measure}"), measure=measure)
        elif rest.get("value") is not None:  # a value under no section's key
            known["value"] = _num(rest.pop("value"), f"{path}.value")
        return cls(**known, extra=rest)

    def _json_name(self, name: str) -> str:
        """``value`` is written under its section's key (``measure``)."""
        return (self.measure or "value") if name == "value" else name


@dataclass(frozen=True)
class BlocksEntry(_Entry):
    """A Fourier or variance entry: the blocks in depth order (the input first) and, for
    Fourier, the read-out (``paper``: the diagonal point nearest π)."""

    blocks: tuple[Block, ...] | None = None
    readout: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[dict[str, Conv]] = {"blocks": _many(Block), "readout": _str}


# ----------------------------------------------------------------------------- robustness, cka
@dataclass(frozen=True)
class NoiseGroups(_Entry):
    """Per image group: the clean accuracy, and the accuracy at each noise frequency."""

    clean: Numbers | None = None
    acc: tuple[Numbers, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[dict[str, Conv]] = {"clean": _nums, "acc": _matrix}


@dataclass(frozen=True)
class RobustnessEntry(_Entry):
    """Accuracy per noise frequency (units of π), the clean accuracy, the noise (``protocol``;
    ``eps`` and ``width`` of the paper's, ``noise_norm`` of the radial) and per-group values."""

    freqs: Numbers | None = None
    acc: Numbers | None = None
    clean_acc: float | None = None
    protocol: str | None = None
    eps: float | None = None
    width: float | None = None
    noise_norm: float | None = None
    groups: NoiseGroups | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[dict[str, Conv]] = {
        "freqs": _nums, "acc": _nums, "clean_acc": _num, "protocol": _str, "eps": _num,
        "width": _num, "noise_norm": _num, "groups": _one(NoiseGroups)}


@dataclass(frozen=True)
class MatchedDistance(_Entry):
    """Mean CKA of within-stage and across-stage pairs at one depth distance, and their counts."""

    distance: int | None = None
    within: float | None = None
    across: float | None = None
    n_within: int | None = None
    n_across: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[dict[str, Conv]] = {"distance": _int, "within": _num, "across": _num,
                                         "n_within": _int, "n_across": _int}


@dataclass(frozen=True)
class CkaEntry(_Entry):
    """Block names, stages and kinds (embed and head left out), the within- and across-stage
    mean CKA (NaN where no such pair exists), the means at equal depth distance and their mean
    difference, and the per-batch HSIC matrices (L x L each)."""

    names: tuple[str, ...] | None = None
    stages: tuple[Any, ...] | None = None
    kinds: tuple[str, ...] | None = None
    within_stage_mean: float | None = None
    across_stage_mean: float | None = None
    matched_distance: tuple[MatchedDistance, ...] | None = None
    matched_within_minus_across: float | None = None
    hsic_batches: list | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[dict[str, Conv]] = {
        "names": _strs, "stages": _items, "kinds": _strs, "within_stage_mean": _num,
        "across_stage_mean": _num, "matched_distance": _many(MatchedDistance),
        "matched_within_minus_across": _num, "hsic_batches": _list}


@dataclass(frozen=True)
class LesionEntry(_Entry):
    """Baseline accuracy (and per group) and one block row per removed block (``value``: the
    accuracy without it)."""

    baseline_acc: float | None = None
    baseline_groups: Numbers | None = None
    blocks: tuple[Block, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[dict[str, Conv]] = {"baseline_acc": _num, "baseline_groups": _nums,
                                         "blocks": _many(Block)}


ENTRY_TYPES: dict[str, Any] = {
    "hessian": HessianEntry, "surface": SurfaceEntry, "fourier": BlocksEntry,
    "variance": BlocksEntry, "robustness": RobustnessEntry, "cka": CkaEntry,
    "lesion": LesionEntry}


def parse_entry(section: str, d: Any, path: str | None = None) -> Any:
    """The typed entry of ``section`` from its JSON object ``d`` (an entry is kept as it is)."""
    return ENTRY_TYPES[section].parse(d, path or section)


def parse_section(section: str, d: Mapping[str, Any]) -> dict[str, Any]:
    """``{label: typed entry}`` of one section (see the module doc for the refusals)."""
    return {str(lab): parse_entry(section, e, f"{section}.{lab}") for lab, e in d.items()}
