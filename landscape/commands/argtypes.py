"""argparse types that validate every number where it is parsed (the rules of
:mod:`landscape.validate`, their message in one line). No torch or numpy imports."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .. import validate as V
from ..errors import LandscapeError


def _argtype(check: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """An argparse ``type`` from a :mod:`landscape.validate` check (its message, one line)."""
    def parse(text: str) -> Any:
        try:
            return check(text)
        except LandscapeError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = name
    return parse


positive_int = _argtype(lambda s: V.to_int(s, lo=1), "positive integer")
"""An integer >= 1."""
nonneg_int = _argtype(lambda s: V.to_int(s, lo=0), "non-negative integer")
"""An integer >= 0 (where 0 means "all" or "measure")."""
seed_int = _argtype(lambda s: V.to_int(s, lo=0, hi=V.SEED_LIMIT - 1), "seed")
"""A seed: an integer in [0, 2**62)."""
finite_float = _argtype(lambda s: V.to_float(s), "finite number")
"""Any finite float."""
positive_float = _argtype(lambda s: V.to_float(s, lo=0.0, lo_open=True), "positive number")
"""A finite float > 0."""
nonneg_float = _argtype(lambda s: V.to_float(s, lo=0.0), "non-negative number")
"""A finite float >= 0."""
fraction = _argtype(lambda s: V.to_float(s, lo=0.0, hi=1.0, lo_open=True), "fraction")
"""A float in (0, 1]."""
unit_float = _argtype(lambda s: V.to_float(s, lo=0.0, hi=1.0), "number in [0, 1]")
"""A float in [0, 1]."""
unit_float_below_one = _argtype(lambda s: V.to_float(s, lo=0.0, hi=1.0, hi_open=True),
                                "number in [0, 1)")
"""A float in [0, 1) (label smoothing)."""
grid_spec = _argtype(lambda s: (V.grid_spec(s), s)[1], "grid")
"""``MIN:MAX:NUM`` with finite bounds, NUM >= 1 (returned as the validated string)."""
ygrid_spec = _argtype(lambda s: "" if s.strip().lower() in ("", "none") else (V.grid_spec(s), s)[1],
                     "grid or none")
"""``MIN:MAX:NUM`` as :data:`grid_spec`, or ``none`` (or empty): no y axis, a 1-D curve."""
subset_arg = _argtype(V.subset_value, "subset")
"""A count (integer >= 1, returned as int) or a fraction in (0, 1] / a percentage (float)."""
