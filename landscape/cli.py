"""The ``landscape`` command: parses arguments and calls library functions, nothing more.

Each subcommand lives in ``landscape/commands/<module>.py`` with ``add_parser(subparsers)``
(which sets ``func``) so the analyses stay independent of each other.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from . import __version__
from .errors import LandscapeError

# Order here is the order in --help.
COMMAND_MODULES = ["train", "hessian", "surface", "features", "analyze", "alternet"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="landscape",
        description="Loss landscapes, Hessian spectra and feature-map analyses of vision models "
                    "(tests the claims of 'How Do Vision Transformers Work?').")
    parser.add_argument("--version", action="version", version=f"landscape {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:
        try:
            m = importlib.import_module(f"landscape.commands.{mod}")
        except ModuleNotFoundError as e:
            if e.name == f"landscape.commands.{mod}":
                continue  # command not built yet
            raise
        m.add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except LandscapeError as e:
        print(f"landscape: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("landscape: interrupted; finished results are saved, re-run the same command "
              "to continue", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
