"""A persistent cache of measured product modes, so that ``mode="auto"`` costs nothing the second
time a setting is seen.

A choice is keyed by what decides which product mode is faster: the model's class (module and
qualified name), the number of selected parameters, the dtype, the device (for CUDA its name, for
the CPU the number of torch threads), the batch shapes and the torch version. The file is
``$LANDSCAPE_CACHE/hvp_modes.json`` (default ``~/.cache/landscape``; ``LANDSCAPE_CACHE=off``
disables the cache). A file written by another torch version is ignored and replaced at the next
write (the whole file is invalidated, not only its entries); writes are atomic (a temporary file
renamed), and an unreadable file is reported with one warning naming it and then treated as empty.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

FILE = "hvp_modes.json"
_warned: set[str] = set()


def cache_dir() -> Path | None:
    """The cache folder, or None when ``LANDSCAPE_CACHE`` is ``off``/``0``/``none``."""
    env = os.environ.get("LANDSCAPE_CACHE")
    if env is not None and env.strip().lower() in ("off", "0", "none", "false", ""):
        return None
    return Path(env).expanduser() if env else Path.home() / ".cache" / "landscape"


def device_name(device: torch.device) -> str:
    """``cuda:<name>`` for a GPU, ``cpu:<threads>threads`` for the CPU."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"{device.type}:{torch.get_num_threads()}threads"


def mode_key(model: Any, n_params: int, dtype: torch.dtype, device: torch.device,
             batch_shapes: list[tuple[int, ...]], extra: str = "") -> dict[str, Any]:
    """The cache key of one operator's product-mode choice (see module doc)."""
    cls = type(model)
    return {"arch": f"{cls.__module__}.{cls.__qualname__}", "n_params": int(n_params),
            "dtype": str(dtype), "device": device_name(torch.device(device)),
            "batch_shapes": [list(s) for s in batch_shapes], "extra": extra,
            "torch": torch.__version__}


def _key_str(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
            raise ValueError("not a mode-cache file")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        if str(path) not in _warned:
            _warned.add(str(path))
            warnings.warn(f"ignoring the product-mode cache {path} ({type(e).__name__}: {e}); "
                          "it is rewritten at the next measurement", stacklevel=3)
        return {}
    if data.get("torch") != torch.__version__:  # another torch: every entry is invalid
        return {}
    return data


def lookup(key: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded choice (``{"mode", "seconds_per_product", ...}``) for ``key``, or None."""
    d = cache_dir()
    if d is None:
        return None
    return _read(d / FILE).get("entries", {}).get(_key_str(key))


def store(key: dict[str, Any], choice: dict[str, Any]) -> Path | None:
    """Record ``choice`` for ``key`` (atomically); returns the file, or None when disabled or
    the folder cannot be written (one warning)."""
    d = cache_dir()
    if d is None:
        return None
    path = d / FILE
    try:
        d.mkdir(parents=True, exist_ok=True)
        data = _read(path) or {"torch": torch.__version__, "entries": {}}
        data["entries"][_key_str(key)] = {**choice, "key": key}
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".hvp_modes.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as e:
        if str(path) not in _warned:
            _warned.add(str(path))
            warnings.warn(f"cannot write the product-mode cache {path} ({e}); the choice is "
                          "kept on the operator only", stacklevel=3)
        return None
    return path
