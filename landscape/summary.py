"""The typed, versioned schema of ``summary.json``: what ``landscape analyze`` writes and what the
claims (:mod:`landscape.claims`) and the report (:mod:`landscape.reporting`) read.

``summary.json`` is a flat JSON object: ``schema_version``, ``models`` (one
:class:`ModelSummary` per checkpoint), ``settings`` (the effective configuration), one section per
analysis (``hessian``, ``surface``, ``fourier``, ``variance``, ``robustness``, ``cka``,
``lesion``: model label -> that analysis's summary numbers), ``figures`` (section -> relative
PNG paths), ``claims``, ``timing``, ``versions``, ``created`` and ``wall_time_s``.

Typed all the way down: every section is parsed on read into one frozen dataclass per model
entry (:class:`HessianEntry`, :class:`SurfaceEntry`, :class:`BlocksEntry` for ``fourier`` and
``variance``, :class:`RobustnessEntry`, :class:`CkaEntry`, :class:`LesionEntry`), reached by
``summary.entries(section)``. Parsing validates the structure (an object where an object
belongs, a list of numbers where numbers belong) and refuses a malformed file with one line
naming the field; a field that is merely absent stays ``None`` and the claim that needs it says
so (``Claim.dropped``). Keys a class does not name are kept in its ``extra``.

A :class:`Summary` is also a read-only mapping over that JSON object, so code written against
the file's keys reads it unchanged. :func:`as_summary` refuses a summary of another schema
version with one line saying what to do. Versions: 1, the first versioned layout (a file without
``schema_version`` predates it); 2, typed sections and claim rows per family (``flatness-vit``,
``fourier-msa-hybrid``, ...) with seed-level intervals, pair counts and dropped evidence.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LandscapeError
from .summary_sections import ENTRY_TYPES, parse_section

SUMMARY_VERSION = 2
SECTIONS = ("hessian", "surface", "fourier", "variance", "robustness", "cka", "lesion")


@dataclass(frozen=True)
class ModelSummary:
    """One analysed checkpoint: its label, file, hash, architecture, family and test metrics."""

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
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not name

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ModelSummary:
        if not isinstance(d, Mapping) or d.get("label") is None:
            raise LandscapeError(f"summary: a model entry needs a label, got {d!r:.80}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        known["label"] = str(known["label"])
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**d, **self.extra}


@dataclass(frozen=True)
class Summary(Mapping):
    """``summary.json`` as typed fields; also a read-only mapping over its JSON object."""

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
    typed: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def entries(self, section: str) -> dict[str, Any]:
        """label -> the typed entry of ``section`` (empty when the section is absent)."""
        if section not in ENTRY_TYPES:
            raise KeyError(section)
        return self.typed.get(section, {})

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
        sections = {k: dict(d[k]) for k in SECTIONS if d.get(k) is not None}
        return cls(models=tuple(ModelSummary.from_json(m) for m in d.get("models") or ()),
                   settings=dict(d.get("settings") or {}), sections=sections,
                   typed={k: parse_section(k, v) for k, v in sections.items()},
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
        out.update(self.sections)
        for key in ("created", "wall_time_s"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

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
