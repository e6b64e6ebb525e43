"""The typed, versioned schema of ``summary.json``: what ``landscape analyze`` builds and writes,
and what the claims (:mod:`landscape.claims`) and the report (:mod:`landscape.reporting`) read.

``summary.json`` is a flat JSON object: ``schema_version``, ``models`` (one
:class:`ModelSummary` per checkpoint), ``settings`` (the effective configuration), one section per
analysis (``hessian``, ``surface``, ``fourier``, ``variance``, ``robustness``, ``cka``,
``lesion``: model label -> that analysis's summary numbers), ``figures`` (section -> relative
PNG paths), ``claims``, ``timing``, ``versions``, ``created`` and ``wall_time_s``.

Typed all the way down, in both directions: ``landscape analyze`` assembles a :class:`Summary`
(models as :class:`ModelSummary`, every section as ``{label: typed entry}``:
:class:`HessianEntry`, :class:`SurfaceEntry`, :class:`BlocksEntry` for ``fourier`` and
``variance``, :class:`RobustnessEntry`, :class:`CkaEntry`, :class:`LesionEntry`, see
:mod:`landscape.summary_sections`), hands it to the claims and the report, and writes
:meth:`Summary.to_json`; :func:`read_summary` parses the file back into an equal object (a NaN
compares unequal to itself, as floats do; :meth:`Summary.to_json` of both is the same JSON).
``summary.sections[name]`` or ``summary.entries(name)`` (also ``summary.hessian``, ...) gives a
section's entries. Parsing validates the structure (an object where an object belongs, a list of
numbers where numbers belong) and refuses a malformed file with one line naming the field; a
field that is absent or ``null`` is ``None`` and the claim that needs it says so
(``Claim.dropped``). Keys a class does not name are kept in its ``extra``; ``settings`` stays a
plain dictionary (``AnalyzeConfig.to_dict()`` and the run's additions).

A :class:`Summary` is also a read-only mapping over its JSON object (``summary["models"]`` is the
list of model objects), so code written against the file's keys reads it unchanged.
:func:`as_summary` refuses a summary of another schema version with one line saying what to do.
Versions: 1, the first versioned layout (a file without ``schema_version`` predates it); 2, typed
sections and claim rows per family (``flatness-vit``, ``fourier-msa-hybrid``, ...) with
seed-level intervals, pair counts and dropped evidence.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LandscapeError
from .summary_fields import _dict, _int, _num
from .summary_sections import ENTRY_TYPES, parse_section

SUMMARY_VERSION = 2
SECTIONS = ("hessian", "surface", "fourier", "variance", "robustness", "cka", "lesion")


@dataclass(frozen=True)
class ModelSummary:
    """One analysed checkpoint: its label, file, hash, architecture, family, test metrics and,
    for the training claims, its recipe (``recipe``, ``epochs``, ``data_fraction``: None means
    the whole training set), the NLL and accuracy on its own training images, and the ``model``
    it is a variant of / ``variant`` (set by hand in a summary; ``analyze`` writes neither)."""

    label: str
    checkpoint: str | None = None
    sha256: str | None = None
    arch: str | None = None
    seed: int | None = None
    family: str | None = None
    params: int | None = None
    dataset: str | None = None
    test_acc: float | None = None
    test_nll: float | None = None
    eval_samples: int | None = None
    recipe: dict[str, Any] | None = None
    epochs: float | None = None
    data_fraction: float | None = None
    train_nll: float | None = None
    train_acc: float | None = None
    train_eval_samples: int | None = None
    model: str | None = None
    variant: Any = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not name
    #: the named keys the JSON object held as ``null`` (written back so; equality ignores it)
    nulls: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    #: how each field is read (the others are kept as they are)
    _NUMBERS = ("test_acc", "test_nll", "epochs", "data_fraction", "train_nll", "train_acc")
    _INTEGERS = ("params", "eval_samples", "train_eval_samples")
    _TEXT = ("checkpoint", "sha256", "arch", "family", "dataset", "model")

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | ModelSummary, path: str = "models[]"
                  ) -> ModelSummary:
        """Parse one model object (a :class:`ModelSummary` is returned as it is)."""
        if isinstance(d, ModelSummary):
            return d
        if not isinstance(d, Mapping) or d.get("label") is None:
            raise LandscapeError(f"summary: a model entry needs a label, got {d!r:.80}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra", "nulls"}
        known = {k: v for k, v in d.items() if k in names and v is not None}
        nulls = frozenset(k for k in names if k in d and d[k] is None)
        for k in cls._NUMBERS:
            if k in known:
                known[k] = _num(known[k], f"{path}.{k}")
        for k in cls._INTEGERS:
            if k in known:
                known[k] = _int(known[k], f"{path}.{k}")
        for k in cls._TEXT:
            if k in known:
                known[k] = str(known[k])
        if "recipe" in known:
            known["recipe"] = _dict(known["recipe"], f"{path}.recipe")
        known["label"] = str(known["label"])
        return cls(**known, extra={k: v for k, v in d.items() if k not in names}, nulls=nulls)

    def to_json(self) -> dict[str, Any]:
        """The model object: the fields that are set (and those read as ``null``), then
        ``extra``."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name not in ("extra", "nulls")
             and (getattr(self, f.name) is not None or f.name in self.nulls)}
        return {**d, **self.extra}


@dataclass(frozen=True)
class Summary(Mapping):
    """``summary.json`` as typed fields (``sections``: section -> {label: typed entry}); also a
    read-only mapping over its JSON object."""

    models: tuple[ModelSummary, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    figures: dict[str, list[str]] = field(default_factory=dict)
    claims: list[dict[str, Any]] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    wall_time_s: float | None = None
    schema_version: int = SUMMARY_VERSION

    def __post_init__(self) -> None:
        """Models and section entries given as JSON objects are parsed (entries are kept)."""
        object.__setattr__(self, "models", tuple(
            ModelSummary.from_json(m, f"models[{i}]") for i, m in enumerate(self.models)))
        for key in self.sections:
            if key not in ENTRY_TYPES:
                raise LandscapeError(f"summary: unknown section {key!r}; the sections are "
                                     f"{', '.join(SECTIONS)}")
        object.__setattr__(self, "sections", {
            k: parse_section(k, v) for k, v in self.sections.items() if v is not None})

    def entries(self, section: str) -> dict[str, Any]:
        """label -> the typed entry of ``section`` (empty when the section is absent)."""
        if section not in ENTRY_TYPES:
            raise KeyError(section)
        return self.sections.get(section, {})

    hessian = property(lambda self: self.entries("hessian"), doc="label -> HessianEntry")
    surface = property(lambda self: self.entries("surface"), doc="label -> SurfaceEntry")
    fourier = property(lambda self: self.entries("fourier"), doc="label -> BlocksEntry")
    variance = property(lambda self: self.entries("variance"), doc="label -> BlocksEntry")
    robustness = property(lambda self: self.entries("robustness"), doc="label -> RobustnessEntry")
    cka = property(lambda self: self.entries("cka"), doc="label -> CkaEntry")
    lesion = property(lambda self: self.entries("lesion"), doc="label -> LesionEntry")

    def model(self, label: str) -> ModelSummary | None:
        """The model entry labelled ``label`` (None when there is none)."""
        return next((m for m in self.models if m.label == label), None)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Summary:
        """Parse a summary of this schema version (:class:`LandscapeError` otherwise)."""
        if not isinstance(d, Mapping):
            raise LandscapeError(f"summary: expected a JSON object, got {type(d).__name__}")
        version = d.get("schema_version")
        if version != SUMMARY_VERSION:
            was = "no schema_version (written before the schema was versioned)" \
                if version is None else f"schema version {version!r}"
            raise LandscapeError(f"summary has {was}; this landscape reads version "
                                 f"{SUMMARY_VERSION}: run `landscape analyze` again (finished raw "
                                 "results are reused)")
        for key in ("settings", "figures", "timing", "versions", *SECTIONS):
            if d.get(key) is not None and not isinstance(d[key], Mapping):
                raise LandscapeError(f"summary: {key} must be a JSON object")
        models = d.get("models") or ()
        if not isinstance(models, list | tuple):
            raise LandscapeError("summary: models must be a list")
        return cls(models=tuple(models), settings=dict(d.get("settings") or {}),
                   sections={k: d[k] for k in SECTIONS if d.get(k) is not None},
                   figures=dict(d.get("figures") or {}), claims=list(d.get("claims") or []),
                   timing=dict(d.get("timing") or {}), versions=dict(d.get("versions") or {}),
                   created=d.get("created"), wall_time_s=d.get("wall_time_s"),
                   schema_version=int(version))

    def to_json(self) -> dict[str, Any]:
        """The JSON object (keys absent when empty, as ``landscape analyze`` writes them)."""
        out: dict[str, Any] = {"schema_version": self.schema_version,
                               "models": [m.to_json() for m in self.models]}
        for key in ("settings", "figures", "claims", "timing", "versions"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        for key in SECTIONS:
            if key in self.sections:
                out[key] = {lab: e.to_json() for lab, e in self.sections[key].items()}
        for key in ("created", "wall_time_s"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def write(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (atomically) and return the path."""
        from .store.provenance import write_json
        write_json(Path(path), self.to_json())
        return Path(path)

    def labels(self) -> list[str]:
        return [m.label for m in self.models]

    # read-only mapping over the JSON object
    def _json(self) -> dict[str, Any]:
        cached = self.__dict__.get("_cache")
        if cached is None:
            cached = self.to_json()
            object.__setattr__(self, "_cache", cached)
        return cached

    def __getitem__(self, key: str) -> Any:
        return self._json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._json())

    def __len__(self) -> int:
        return len(self._json())


def as_summary(summary: Summary | Mapping[str, Any]) -> Summary:
    """``summary`` itself, or the JSON object parsed (refused unless it has this version)."""
    return summary if isinstance(summary, Summary) else Summary.from_json(summary)


def read_summary(path: str | Path) -> Summary:
    """Read and parse ``summary.json`` (:class:`LandscapeError` for a missing, unreadable or
    older file)."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LandscapeError(f"cannot read summary {path}: {e}") from None
    try:
        return Summary.from_json(d)
    except LandscapeError as e:
        raise LandscapeError(f"{path}: {e}") from None
