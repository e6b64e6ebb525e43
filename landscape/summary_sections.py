"""The typed model entries of ``summary.json``'s analysis sections (see :mod:`landscape.summary`).

One frozen dataclass per section entry. :func:`parse_section` turns ``{label: JSON object}`` into
``{label: entry}``, refusing a malformed entry with one :class:`LandscapeError` line that names
the field (``summary: hessian.vit_s0.per_batch.lambda_max must be a list of numbers``). Absent
fields stay ``None`` (the claims name what they miss); ``null`` inside a number list stays
``None`` (a radius without grid points); keys a class does not name are kept in ``extra``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import LandscapeError

Numbers = tuple[float | None, ...]


def _bad(path: str, what: str) -> LandscapeError:
    return LandscapeError(f"summary: {path} must be {what}")


def _num(v: Any, path: str, optional: bool = True) -> float | None:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _bad(path, "a number")
    return float(v)


def _nums(v: Any, path: str) -> Numbers | None:
    """A list of numbers (``null`` kept as None), or None when absent."""
    if v is None:
        return None
    if not isinstance(v, list | tuple):
        raise _bad(path, "a list of numbers")
    return tuple(_num(x, f"{path}[{i}]") for i, x in enumerate(v))


def _matrix(v: Any, path: str) -> tuple[Numbers, ...] | None:
    if v is None:
        return None
    if not isinstance(v, list | tuple):
        raise _bad(path, "a list of lists of numbers")
    return tuple(_nums(r, f"{path}[{i}]") or () for i, r in enumerate(v))


def _obj(v: Any, path: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise _bad(path, "a JSON object")
    return dict(v)


def _split(cls: type, d: Any, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(known keys, the rest) of a JSON object for dataclass ``cls``."""
    d = _obj(d, path)
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    return {k: v for k, v in d.items() if k in names}, {k: v for k, v in d.items()
                                                        if k not in names}


class _Entry:
    """Shared ``to_json``: the known fields that are set, then ``extra``."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if f.name == "extra" or v is None:
                continue
            out[f.name] = _plain(v)
        return {**out, **getattr(self, "extra", {})}


def _plain(v: Any) -> Any:
    if isinstance(v, _Entry):
        return v.to_json()
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    return v


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

    @classmethod
    def parse(cls, d: Any, path: str) -> PerBatch:
        k, rest = _split(cls, d, path)
        top = k.get("top_k")
        if top is not None and (isinstance(top, bool) or not isinstance(top, int)):
            raise _bad(f"{path}.top_k", "an integer")
        return cls(*(_nums(k.get(n), f"{path}.{n}") for n in
                     ("lambda_max", "lambda_min", "negative_top_k")), top, rest)


@dataclass(frozen=True)
class HessianEntry(_Entry):
    """One model's Hessian numbers: top/bottom eigenvalues, trace, per-batch evidence and the
    spectrum's summary (``negative_share``: share of negative values among all top-k values)."""

    top_eigenvalues: Numbers | None = None
    per_batch: PerBatch | None = None
    spectrum: dict[str, Any] | None = None
    wd: float | None = None
    loss: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, d: Any, path: str) -> HessianEntry:
        k, rest = _split(cls, d, path)
        pb = k.get("per_batch")
        return cls(_nums(k.get("top_eigenvalues"), f"{path}.top_eigenvalues"),
                   None if pb is None else PerBatch.parse(pb, f"{path}.per_batch"),
                   None if k.get("spectrum") is None else _obj(k["spectrum"], f"{path}.spectrum"),
                   _num(k.get("wd"), f"{path}.wd"),
                   None if k.get("loss") is None else str(k["loss"]), rest)


# ----------------------------------------------------------------------------- surface
@dataclass(frozen=True)
class Plane(_Entry):
    """One random plane: its direction seed, the radii and the loss increase at each."""

    seed: Any = None
    radii: Numbers | None = None
    increase: Numbers | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, d: Any, path: str) -> Plane:
        k, rest = _split(cls, d, path)
        return cls(k.get("seed"), _nums(k.get("radii"), f"{path}.radii"),
                   _nums(k.get("increase"), f"{path}.increase"), rest)


@dataclass(frozen=True)
class SurfaceEntry(_Entry):
    """One model's loss surface: the random planes and what the loss was."""

    planes: tuple[Plane, ...] | None = None
    loss: str | None = None
    wd: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, d: Any, path: str) -> SurfaceEntry:
        k, rest = _split(cls, d, path)
        p = k.get("planes")
        if p is not None and not isinstance(p, list):
            raise _bad(f"{path}.planes", "a list")
        planes = None if p is None else tuple(Plane.parse(x, f"{path}.planes[{i}]")
                                              for i, x in enumerate(p))
        return cls(planes, None if k.get("loss") is None else str(k["loss"]),
                   _num(k.get("wd"), f"{path}.wd"), rest)


# ----------------------------------------------------------------------------- blocks
@dataclass(frozen=True)
class Block(_Entry):
    """One block row (Fourier, variance or lesion): name, kind, stage, depth, grid (n of an n×n
    map), the read-out frequency (units of π) and its label, and the per-group values."""

    name: str | None = None
    kind: str | None = None
    stage: Any = None
    depth: float | None = None
    grid: int | None = None
    freq: float | None = None
    freq_label: str | None = None
    groups: Numbers | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, d: Any, path: str) -> Block:
        k, rest = _split(cls, d, path)
        g = k.get("grid")
        if isinstance(g, list | tuple):  # an (h, w) grid: square maps only compare by n
            g = g[0] if len(set(g)) == 1 else None
        return cls(None if k.get("name") is None else str(k["name"]),
                   None if k.get("kind") is None else str(k["kind"]), k.get("stage"),
                   _num(k.get("depth"), f"{path}.depth"),
                   None if g is None else int(_num(g, f"{path}.grid") or 0),
                   _num(k.get("freq"), f"{path}.freq"),
                   None if k.get("freq_label") is None else str(k["freq_label"]),
                   _nums(k.get("groups"), f"{path}.groups"), rest)


def _blocks(v: Any, path: str) -> tuple[Block, ...] | None:
    if v is None:
        return None
    if not isinstance(v, list):
        raise _bad(path, "a list")
    return tuple(Block.parse(b, f"{path}[{i}]") for i, b in enumerate(v))


@dataclass(frozen=True)
class BlocksEntry(_Entry):
    """A Fourier or variance entry: the blocks in depth order (the input first)."""

    blocks: tuple[Block, ...] | None = None
    readout: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, d: Any, path: str) -> BlocksEntry:
        k, rest = _split(cls, d, path)
        return cls(_blocks(k.get("blocks"), f"{path}.blocks"),
                   None if k.get("readout") is None else str(k["readout"]), rest)


# ----------------------------------------------------------------------------- robustness, cka
@dataclass(frozen=True)
class RobustnessEntry(_Entry):
    """Accuracy per noise frequency (units of π), the clean accuracy and per-group values
    (``groups = {"clean": [G], "acc": [[G] per frequency]}``)."""

    freqs: Numbers | None = None
    acc: Numbers | None = None
    clean_acc: float | None = None
    groups: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, d: Any, path: str) -> RobustnessEntry:
        k, rest = _split(cls, d, path)
        g = k.get("groups")
        if g is not None:
            g = _obj(g, f"{path}.groups")
            g = {"clean": _nums(g.get("clean"), f"{path}.groups.clean"),
                 "acc": _matrix(g.get("acc"), f"{path}.groups.acc")}
        return cls(_nums(k.get("freqs"), f"{path}.freqs"), _nums(k.get("acc"), f"{path}.acc"),
                   _num(k.get("clean_acc"), f"{path}.clean_acc"), g, rest)


@dataclass(frozen=True)
class CkaEntry(_Entry):
    """Block names, stages and the per-batch HSIC matrices (L x L each)."""

    names: tuple[str, ...] | None = None
    stages: tuple[Any, ...] | None = None
    hsic_batches: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, d: Any, path: str) -> CkaEntry:
        k, rest = _split(cls, d, path)
        for n in ("names", "stages", "hsic_batches"):
            if k.get(n) is not None and not isinstance(k[n], list):
                raise _bad(f"{path}.{n}", "a list")
        return cls(None if k.get("names") is None else tuple(map(str, k["names"])),
                   None if k.get("stages") is None else tuple(k["stages"]),
                   k.get("hsic_batches"), rest)


@dataclass(frozen=True)
class LesionEntry(_Entry):
    """Baseline accuracy (and per group) and one block row per removed block."""

    baseline_acc: float | None = None
    baseline_groups: Numbers | None = None
    blocks: tuple[Block, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, d: Any, path: str) -> LesionEntry:
        k, rest = _split(cls, d, path)
        return cls(_num(k.get("baseline_acc"), f"{path}.baseline_acc"),
                   _nums(k.get("baseline_groups"), f"{path}.baseline_groups"),
                   _blocks(k.get("blocks"), f"{path}.blocks"), rest)


ENTRY_TYPES: dict[str, Any] = {
    "hessian": HessianEntry, "surface": SurfaceEntry, "fourier": BlocksEntry,
    "variance": BlocksEntry, "robustness": RobustnessEntry, "cka": CkaEntry,
    "lesion": LesionEntry}


def parse_section(section: str, d: Mapping[str, Any]) -> dict[str, Any]:
    """``{label: typed entry}`` of one section (see the module doc for the refusals)."""
    cls = ENTRY_TYPES[section]
    return {str(lab): cls.parse(e, f"{section}.{lab}") for lab, e in d.items()}
