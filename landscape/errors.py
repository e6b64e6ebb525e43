"""User-facing errors: the CLI prints ``landscape: error: <message>`` on one line and exits 2."""
from __future__ import annotations

from pathlib import Path


class LandscapeError(ValueError):
    """Bad input from the user (missing file, wrong architecture, corrupt checkpoint, ...).
    A ValueError, so callers of the Python API may catch either."""


class NonFiniteLossError(LandscapeError, FloatingPointError):
    """The loss became NaN or infinite where a finite value is required."""


#: errno values of a file system that refuses a write: full, over quota, read-only, forbidden.
DISK_ERRNOS = {28: "no space left on device", 122: "disk quota exceeded",
               30: "read-only file system", 13: "permission denied", 1: "permission denied",
               27: "file too large"}


def disk_error(e: BaseException, path: str | Path, needed: str = "") -> LandscapeError | None:
    """The one line for a write that the file system refused (``e``: an OSError with an errno of
    :data:`DISK_ERRNOS`, or the message h5py or torch.save give for one), naming ``path`` and
    what is needed; None for any other error."""
    reason = disk_reason(e)
    if reason is None:
        return None
    if reason == "permission denied" or reason == "read-only file system":
        what = f"write access to {Path(path).parent}"
    elif reason == "file too large":
        what = "a larger file-size limit (ulimit -f)"
    else:
        what = f"free space on {Path(path).parent}" + (f" ({needed})" if needed else "")
    return LandscapeError(f"{reason} writing {path}; needs {what}; earlier finished files are "
                          "kept and the same command continues from them")


def disk_reason(e: BaseException) -> str | None:
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        err = getattr(e, "errno", None)
        if isinstance(err, int) and err in DISK_ERRNOS:
            return DISK_ERRNOS[err]
        text = str(e)
        for code, reason in DISK_ERRNOS.items():
            if (f"errno = {code}," in text or f"[Errno {code}]" in text
                    or reason in text.lower()):
                return reason
        if "PytorchStreamWriter failed writing" in text or "file write failed" in text:
            return "no space left on device"
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return None
