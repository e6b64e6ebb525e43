"""The ``landscape`` command: parses arguments and calls library functions, nothing more.

Each subcommand lives in ``landscape/commands/<module>.py`` with ``add_parser(subparsers)``
(which sets ``func``) so the analyses stay independent of each other. Building the parser
imports neither torch nor numpy: ``--help``, ``--version`` and argument errors answer at once.
Every user error (argparse's too) ends in one line ``landscape: error: ...`` and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from . import __version__
from .errors import LandscapeError


def _fmt_default(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(_fmt_default(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` once, only where the help does not state the default already and
    the default says something (not None/False); descriptions written with line breaks keep
    them, others are wrapped."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default == []
                or default is argparse.SUPPRESS or not action.option_strings
                or action.nargs == 0):
            return text
        return f"{text} (default: {_fmt_default(default).replace('%', '%%')})"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


# Order here is the order in --help.
COMMAND_MODULES = ["train", "hessian", "surface", "features", "analyze", "alternet", "blocks"]


class ArgumentParser(argparse.ArgumentParser):
    """argparse with our help formatter and a one-line error (no usage block), exit code 2.

    Subcommand parsers are made by this class too (argparse uses the parent's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        msg = " ".join(str(message).split())
        self.exit(2, f"landscape: error: {msg} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="landscape",
        description="Loss landscapes, Hessian spectra and feature-map analyses of vision models "
                    "(tests the claims of 'How Do Vision Transformers Work?').")
    parser.add_argument("--version", action="version", version=f"landscape {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:  # a command that fails to import fails loudly
        importlib.import_module(f"landscape.commands.{mod}").add_parser(sub)
    return parser


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _peer_failure(e: BaseException) -> str:
    """What a failed collective says, shortened to its gist."""
    text = " ".join(str(e).split())
    if any(w in text for w in ("Connection closed", "Connection reset", "Broken pipe",
                               "closed by peer", "Timed out", "timed out")):
        return f"another rank stopped ({text[:120]})"
    return f"{type(e).__name__}: {text[:160]}"


def _disk_error_line(e: BaseException) -> str | None:
    """The one line for a write refused by the file system (full disk, quota, permission,
    read-only), naming the path where the error names one; None for any other error."""
    from .errors import disk_error
    path = getattr(e, "filename", None) or _path_in(str(e)) or "a result file"
    err = disk_error(e, path)
    return _one_line(err) if err is not None else None


def _path_in(text: str) -> str | None:
    import re
    m = re.search(r"(?:name|file(?:name)?) = '([^']+)'|\'(/[^']+)\'", text)
    return (m.group(1) or m.group(2)) if m else None


def _close_hdf5_files() -> None:
    """Close every HDF5 file h5py still has open (after a failed write)."""
    h5py = sys.modules.get("h5py")
    if h5py is None:
        return
    try:
        ids = h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)
    except Exception:  # noqa: BLE001 - best effort on the way out
        return
    import contextlib
    for fid in ids:  # what h5py.File.close does: every object of the file, then the file
        with contextlib.suppress(Exception):  # a flush that fails again: nothing more to do
            fid._close_open_objects(h5py.h5f.OBJ_ALL)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (``--help``/``--version`` exit through SystemExit(0))."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        if e.code in (0, None):
            raise
        return e.code if isinstance(e.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        for name in ("out", "runs_dir"):
            if getattr(args, name, None):
                from .store.provenance import check_output_path
                check_output_path(getattr(args, name))
        if getattr(args, "device", None) is not None:
            from .device import resolve_device
            resolve_device(args.device)  # a device that does not exist: one line, before any work
        rc = args.func(args)
    except LandscapeError as e:
        print(f"landscape: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("landscape: interrupted; finished results are saved, re-run the same command "
              "to continue", file=sys.stderr)
        return 130
    except (OSError, RuntimeError) as e:
        # A writer the file system refused (full disk, no permission): one line naming the
        # path, never a traceback; HDF5 files left open by the failed write are closed now,
        # not by h5py at interpreter exit (where a failed flush ends in a segfault).
        _close_hdf5_files()
        line = _disk_error_line(e)
        if line is None:
            dist = sys.modules.get("landscape.distributed")
            if dist is None or not dist.is_distributed():
                raise
            print(f"landscape: error: rank {dist.rank()}: {_peer_failure(e)}; finished results "
                  "are saved, re-run the same command to resume", file=sys.stderr)
            return 1
        print(f"landscape: error: {line}", file=sys.stderr)
        return 2
    except Exception as e:
        # Under torchrun a rank that dies makes the others' collectives fail: one line each,
        # never a hang or a traceback (results finished so far are saved; a rerun resumes).
        dist = sys.modules.get("landscape.distributed")
        if dist is None or not dist.is_distributed():
            raise
        print(f"landscape: error: rank {dist.rank()}: {_peer_failure(e)}; finished results are "
              "saved, re-run the same command to resume", file=sys.stderr)
        return 1
    finally:
        if "landscape.store.provenance" in sys.modules:
            sys.modules["landscape.store.provenance"].release_locks()
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
