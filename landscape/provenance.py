"""What a result file records beside its numbers: versions, time, host, file hashes."""
from __future__ import annotations

import datetime
import hashlib
import json
import platform
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch


def versions() -> dict[str, str]:
    """Versions of Python, torch, numpy and landscape."""
    from . import __version__
    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": np.__version__, "landscape": __version__, "platform": platform.platform()}


def run_metadata(**extra: Any) -> dict[str, Any]:
    """Versions plus a UTC timestamp plus ``extra`` (config, seed, ...)."""
    return {"versions": versions(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **extra}


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def output_dir(path: str | Path) -> Path:
    """The output folder of a run, created; a path that is a file is refused (LandscapeError)."""
    from .errors import LandscapeError
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise LandscapeError(f"output folder is a file: {path}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename), NaN allowed, numpy/torch values converted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_default))
    tmp.replace(path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


class JsonResult:
    """Mixin for dataclass results stored as one JSON file tagged with ``KIND``.

    ``DERIVED`` names properties written beside the fields for readers of the raw file; they are
    dropped again on load.
    """

    KIND: ClassVar[str] = ""
    DERIVED: ClassVar[tuple[str, ...]] = ()

    def save(self, path: str | Path) -> Path:
        """Write JSON atomically."""
        write_json(path, {"kind": self.KIND, **self.__dict__,
                          **{k: getattr(self, k) for k in self.DERIVED}})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Any:
        d = read_json(path)
        if d.pop("kind", None) != cls.KIND:
            raise ValueError(f"{path} is not a {cls.KIND} result")
        for k in cls.DERIVED:
            d.pop(k, None)
        return cls(**d)
