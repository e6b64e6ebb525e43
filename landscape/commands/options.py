"""Command-line options made from a settings field (:mod:`landscape.settings`): the option's
default, choices and help come from the field, and the option records which field it is, so a
test can check every parser against the settings (``tests/test_settings_defaults.py``).

A command says which settings classes it builds (:func:`uses_settings`); an option named like a
field of one of them must either be that field's (:func:`settings_option`, :func:`link`) or say
why it is another thing (:func:`unrelated`). Torch-free (``--help`` stays fast).
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

_FIELD = "settings_field"


def _field(cls: type, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field {name}")


def _mark(action: argparse.Action, cls: type, name: str, default_doc: str | None,
          convert: Callable[[Any], Any] | None) -> argparse.Action:
    setattr(action, _FIELD, (cls, name))
    action.settings_default_doc = default_doc  # type: ignore[attr-defined]
    action.settings_convert = convert  # type: ignore[attr-defined]
    return action


def settings_option(p: Any, *flags: str, settings: type, field: str,
                    default_doc: str | None = None,
                    convert: Callable[[Any], Any] | None = None, **kw: Any) -> argparse.Action:
    """``p.add_argument(*flags, **kw)`` for field ``field`` of ``settings``: default = the
    field's (``convert(default)`` when the option spells it differently, e.g. a count as a
    list), or None with ``default_doc`` saying what None means (e.g. "the preset's"); choices
    and help from the field's metadata unless given (a field's "" meaning "the default" is no
    choice on the command line: there it is None)."""
    f = _field(settings, field)
    default = f.default if convert is None else convert(f.default)
    kw.setdefault("default", None if default_doc else default)
    choices = f.metadata.get("choices")
    if choices is not None and "choices" not in kw and kw.get("action") is None:
        kw["choices"] = [c for c in choices if not (default_doc and c == "" == f.default)]
    kw.setdefault("help", f.metadata.get("doc", ""))
    return _mark(p.add_argument(*flags, **kw), settings, field, default_doc, convert)


def link(p: argparse.ArgumentParser, dest: str, settings: type, field: str,
         help: str | None = None) -> None:
    """Make the option ``dest`` (added elsewhere, e.g. ``--batch-size`` by ``add_data_args``)
    the option of ``settings.field``: its default becomes the field's (and its help ``help``
    when given)."""
    for a in p._actions:
        if a.dest == dest:
            a.default = _field(settings, field).default
            if help is not None:
                a.help = help
            p.set_defaults(**{dest: a.default})
            _mark(a, settings, field, None, None)
            return
    raise KeyError(dest)


def unrelated(p: argparse.ArgumentParser, dest: str, reason: str) -> None:
    """Say that option ``dest`` is not the settings field of the same name (``reason``)."""
    for a in p._actions:
        if a.dest == dest:
            a.settings_unrelated = reason  # type: ignore[attr-defined]
            return
    raise KeyError(dest)


def uses_settings(p: argparse.ArgumentParser, *classes: type) -> None:
    """Record the settings classes command ``p`` builds (see module doc)."""
    p.settings_classes = classes  # type: ignore[attr-defined]


def settings_field(action: argparse.Action) -> tuple[type, str] | None:
    """The (settings class, field) an option was made from, or None."""
    return getattr(action, _FIELD, None)
