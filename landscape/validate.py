"""Checks of user-given numbers, without torch or numpy (the CLI parses with them before any
heavy import). Each returns the parsed value or raises :class:`LandscapeError` saying what is
allowed; ``landscape.commands.common`` wraps them as argparse types.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import LandscapeError

SEED_LIMIT = 2 ** 62  # seeds are offset (seed + 1, seed * 1_000_003 mod 2**63); numpy needs >= 0


def to_int(value: str | int, lo: int | None = None, hi: int | None = None,
           what: str = "value") -> int:
    """An integer in [lo, hi] (either bound may be None)."""
    if isinstance(value, bool):
        raise LandscapeError(f"{what} must be an integer, got {value!r}")
    try:
        n = int(value) if not isinstance(value, float) or value.is_integer() else None
    except (TypeError, ValueError):
        n = None
    if n is None:
        raise LandscapeError(f"{what} must be an integer, got {value!r}")
    if lo is not None and n < lo:
        raise LandscapeError(f"{what} must be >= {lo}, got {n}")
    if hi is not None and n > hi:
        raise LandscapeError(f"{what} must be <= {hi}, got {n}")
    return n


def to_float(value: str | float | int, lo: float | None = None, hi: float | None = None,
             lo_open: bool = False, hi_open: bool = False, what: str = "value") -> float:
    """A finite float in the interval from lo to hi (open or closed ends; None = unbounded)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise LandscapeError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise LandscapeError(f"{what} must be finite, got {value!r}")
    if lo is not None and (x <= lo if lo_open else x < lo):
        raise LandscapeError(f"{what} must be {'>' if lo_open else '>='} {lo:g}, got {x:g}")
    if hi is not None and (x >= hi if hi_open else x > hi):
        raise LandscapeError(f"{what} must be {'<' if hi_open else '<='} {hi:g}, got {x:g}")
    return x


def grid_spec(spec: str) -> tuple[float, float, int]:
    """``"MIN:MAX:NUM"`` -> (MIN, MAX, NUM): finite bounds, NUM >= 1 and MAX > MIN when NUM > 1."""
    try:
        lo, hi, n = str(spec).split(":")
        lo_f, hi_f, n_i = float(lo), float(hi), int(n)
    except ValueError:
        raise LandscapeError(f"grid must look like MIN:MAX:NUM (e.g. -1:1:21), got {spec!r}"
                             ) from None
    if not (math.isfinite(lo_f) and math.isfinite(hi_f)):
        raise LandscapeError(f"grid {spec!r}: MIN and MAX must be finite numbers")
    if n_i < 1 or (n_i > 1 and not hi_f > lo_f):
        raise LandscapeError(f"grid {spec!r}: need NUM >= 1 and MAX > MIN")
    return lo_f, hi_f, n_i


def subset_value(subset: None | int | float | str) -> None | int | float:
    """A subset as a count (int >= 1) or a fraction (float in (0, 1]); None stays None.

    Strings: digits are a count ("3000"), a number with a point or exponent is a fraction
    ("0.1", "1.0"), "10%" is a percentage.
    """
    if subset is None:
        return None
    orig = subset
    hint = "give a fraction in (0, 1] (e.g. 0.1), a percentage (10%) or a count (an integer >= 1)"
    if isinstance(subset, str):
        s = subset.strip()
        try:
            if s.endswith("%"):
                subset = float(s[:-1]) / 100.0
            elif s.isdigit():
                subset = int(s)
            else:
                subset = float(s)
        except ValueError:
            raise LandscapeError(f"bad subset {orig!r}: {hint}") from None
    if isinstance(subset, bool):
        raise LandscapeError(f"bad subset {orig!r}: {hint}")
    if isinstance(subset, int) or type(subset).__name__.startswith(("int", "uint")):
        if int(subset) < 1:
            raise LandscapeError(f"bad subset {orig!r}: a count must be at least 1")
        return int(subset)
    try:
        f = float(subset)
    except (TypeError, ValueError):
        raise LandscapeError(f"bad subset {orig!r}: {hint}") from None
    if not (0.0 < f <= 1.0):
        raise LandscapeError(f"bad subset {orig!r}: a fraction must be in (0, 1]; {hint}")
    return f


def available_memory() -> int | None:
    """Bytes of memory this machine has available now (``MemAvailable`` of /proc/meminfo, else
    the free physical pages from ``os.sysconf``); None where neither can be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def gib(n: float) -> str:
    """``n`` bytes as a short GiB/TiB text."""
    return f"{n / 2 ** 40:.1f} TiB" if n >= 2 ** 40 else f"{n / 2 ** 30:.1f} GiB"


def read_toml(path: str | Path, name: str) -> dict[str, Any]:
    """The TOML document at ``path``; a missing or unreadable file is one
    :class:`LandscapeError` starting with ``name`` (``"--models cards.toml"``, ``"config file
    x.toml"``): "file not found" or "not a TOML file: <why>"."""
    import tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise LandscapeError(f"{name}: file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, IsADirectoryError) as e:
        raise LandscapeError(f"{name}: not a TOML file: {e}") from None
