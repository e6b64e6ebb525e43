"""Where dataset files are looked for, and the keys and read-only arrays of the in-process
cache."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PathLike = str | os.PathLike

ENV_VAR = "LANDSCAPE_DATA"


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _candidate_dirs(root: PathLike | None, sub: Sequence[str],
                    default: Path | None) -> list[Path]:
    """Folders to search: root (and root/<sub>), else $LANDSCAPE_DATA (and sub), then default."""
    if root is not None:
        base = [Path(root).expanduser()]
    else:
        env = os.environ.get(ENV_VAR)
        base = [Path(env).expanduser()] if env else []
    dirs = []
    for b in base:
        dirs.append(b)
        dirs.extend(b / s for s in sub)
    if root is None and default is not None:
        dirs.append(default)
    return dirs
