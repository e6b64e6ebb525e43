"""Patterns (one string of 'C'/'M' units per stage), their slots and the next candidate."""
from __future__ import annotations

from collections.abc import Sequence

from ..errors import LandscapeError

Pattern = tuple[str, ...]


def parse_pattern(pattern: str | Sequence[str | Sequence[str]]) -> Pattern:
    """A pattern as a tuple of per-stage strings of 'C'/'M' (accepts ``"CC,CM"`` or lists)."""
    if isinstance(pattern, str):
        parts = [p for p in pattern.replace("|", ",").replace("-", ",").replace(" ", ",").split(",")
                 if p]
    else:
        parts = ["".join(p) if not isinstance(p, str) else p for p in pattern]
    stages = tuple(p.strip().upper() for p in parts)
    if not stages or any(not s for s in stages):
        raise LandscapeError(f"pattern {pattern!r} has an empty stage")
    bad = set("".join(stages)) - {"C", "M"}
    if bad:
        raise LandscapeError(f"pattern {pattern!r}: unit types must be C or M, got {sorted(bad)}")
    return stages


def pattern_str(pattern: Pattern) -> str:
    """``("CC", "CM")`` -> ``"CC,CM"`` (the form models.create(..., pattern=) takes)."""
    return ",".join(pattern)


def baseline_pattern(depths: Sequence[int]) -> Pattern:
    """The all-conv pattern with ``depths[s]`` units in stage ``s``."""
    if not depths or any(int(d) < 1 for d in depths):
        raise LandscapeError(f"every stage needs at least one unit, got depths {list(depths)}")
    return tuple("C" * int(d) for d in depths)


def stage_slots(depth: int, keep_first: bool = True) -> list[int]:
    """Positions a stage of ``depth`` units may turn into MSA, in order: depth-1, depth-3, ..."""
    lo = 1 if keep_first else 0
    return [i for i in range(depth - 1, lo - 1, -2)]


def heads_per_stage(num_stages: int, base: int = 1, growth: int = 2) -> tuple[int, ...]:
    """Rule 3: MSA heads per stage, ``base * growth**s`` (e.g. 1, 2, 4)."""
    if base < 1 or growth < 1:
        raise LandscapeError(f"heads need base >= 1 and growth >= 1, got {base}, {growth}")
    return tuple(int(base * growth ** s) for s in range(num_stages))


def with_msa(pattern: Pattern, stage: int, slot: int) -> Pattern:
    """``pattern`` with unit ``slot`` of ``stage`` set to 'M'."""
    s = pattern[stage]
    return pattern[:stage] + (s[:slot] + "M" + s[slot + 1:],) + pattern[stage + 1:]


def next_slot(pattern: Pattern, stage: int, keep_first: bool = True,
              min_stage: int = 0) -> tuple[int, int] | None:
    """(stage, slot) of the next candidate: the first free slot of ``stage``, else of earlier
    stages down to ``min_stage``; None when no stage can take another MSA."""
    for s in range(stage, min_stage - 1, -1):
        for i in stage_slots(len(pattern[s]), keep_first):
            if pattern[s][i] == "C":
                return s, i
    return None
