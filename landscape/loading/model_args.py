"""The command line's and model cards' arguments of a user model: ``--model-kwargs`` and
``--input-shape`` (shared by :mod:`.user_model` and :mod:`.model_cards`)."""
from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

from ..errors import LandscapeError


def parse_model_kwargs(text: str, what: str = "--model-kwargs") -> dict[str, Any]:
    """Keyword arguments written as in a Python call, each value a Python literal
    (:func:`ast.literal_eval`): ``"num_classes=100,window_size=4"`` ->
    ``{"num_classes": 100, "window_size": 4}``; ``"img_size=(32, 32),name='s'"`` works too."""
    try:
        call = ast.parse(f"f({text})", mode="eval").body
    except SyntaxError:
        call = None
    if (not isinstance(call, ast.Call) or call.args
            or any(k.arg is None for k in call.keywords)):
        raise LandscapeError(f"{what} expects NAME=VALUE,... (Python literals, e.g. "
                             f"num_classes=100,window_size=4), got {text!r}")
    out: dict[str, Any] = {}
    for k in call.keywords:
        if k.arg in out:
            raise LandscapeError(f"{what}: {k.arg} is given twice in {text!r}")
        try:
            out[str(k.arg)] = ast.literal_eval(k.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            code = ast.unparse(k.value)
            quote = f" (quote strings: {k.arg}='{code}')" if isinstance(k.value, ast.Name) else ""
            raise LandscapeError(f"{what}: the value of {k.arg} is not a Python literal: "
                                 f"{code!r}{quote}") from None
    return out


def parse_input_shape(text: str | Sequence[Any], what: str = "--input-shape"
                      ) -> tuple[int, int, int]:
    """``"C,H,W"`` (or a sequence of three) -> three positive integers."""
    try:
        items = text.split(",") if isinstance(text, str) else list(text)
        shape = tuple(int(v) for v in items
                      if not isinstance(v, bool) and (isinstance(v, (int, str))))
        if len(shape) != len(items):
            shape = ()
    except (ValueError, TypeError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise LandscapeError(f"{what} expects C,H,W (three positive integers), got {text!r}")
    return shape  # type: ignore[return-value]
