"""Model cards: how to load each checkpoint of one ``landscape analyze`` run.

A card file (``landscape analyze --models models.toml``) holds one TOML table per checkpoint; the
table's name is the model's label in the report::

    [my_resnet]
    path = "runs/resnet.pt"                 # relative paths: relative to the card file
    model-def = "models/resnet.py:resnet18"  # or "models.resnet:resnet18" with code-root
    code-root = "."                         # optional: the repository it imports from
    kwargs = {num_classes = 10}             # optional: arguments of the callable
    input-shape = [3, 32, 32]               # optional: checked against the data's images
    family = "cnn"                          # optional: cnn, vit or hybrid (default: inferred)
    only = ["hessian"]                      # optional: this model's analyses ([]: evaluation
                                            # only; default: all of the run's)
    blocks = [{name = "layer1", kind = "conv", stage = 0},   # optional: else block_list()
              {name = "layer2", kind = "conv"}]             # or inferred; stage: else probed

Keys may be written with ``-`` or ``_``. A zoo checkpoint needs only ``path`` (and ``model`` for
a bare state dict). Positional checkpoints and ``--model-def``/``--model-kwargs``/``--blocks``
become cards too (:func:`card_from_options`), so every checkpoint is loaded one way.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import LandscapeError
from .model_args import parse_input_shape

FAMILIES = ("cnn", "vit", "hybrid")
CARD_KEYS = ("path", "model", "model_def", "code_root", "kwargs", "input_shape", "blocks",
             "family", "only")
BLOCK_KEYS = ("name", "kind", "stage")


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """One checkpoint and how to load it. ``blocks`` maps module name -> kind (a ``--blocks``
    string is parsed on loading), ``stages`` module name -> stage for the blocks that fix theirs;
    ``family`` overrides the one inferred from the block kinds; ``name`` (the card's table name)
    labels the model in the report; ``where`` names the card and table in messages."""

    path: Path
    name: str | None = None
    model: str | None = None
    model_def: str | None = None
    code_root: Path | None = None
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    input_shape: tuple[int, int, int] | None = None
    blocks: dict[str, str] | str | None = None
    stages: dict[str, int] = dataclasses.field(default_factory=dict)
    family: str | None = None
    only: tuple[str, ...] | None = None
    where: str = ""


def card_from_options(path: str | Path, *, model: str | None = None,
                      model_def: str | None = None, code_root: str | Path | None = None,
                      kwargs: dict[str, Any] | None = None, blocks: str | None = None,
                      input_shape: tuple[int, int, int] | None = None) -> ModelCard:
    """The card of a positional checkpoint: the command line's ``--model``, ``--model-def``,
    ``--code-root``, ``--model-kwargs``, ``--blocks`` and ``--input-shape`` apply to it."""
    return ModelCard(Path(path), model=model, model_def=model_def,
                     code_root=Path(code_root) if code_root is not None else None,
                     kwargs=dict(kwargs or {}), input_shape=input_shape, blocks=blocks,
                     where=str(path))


def read_cards(card_file: str | Path) -> list[ModelCard]:
    """Every table of a card file as a :class:`ModelCard`, checked before anything is loaded:
    a missing file or checkpoint, an unknown key, a bad kind, stage or family is one
    ``LandscapeError`` naming the card file and the table."""
    from ..validate import read_toml

    card_file = Path(card_file)
    doc = read_toml(card_file, f"--models {card_file}")
    if not doc:
        raise LandscapeError(f"--models {card_file}: no tables (write one [NAME] table with a "
                             "path per checkpoint)")
    cards = []
    for name, table in doc.items():
        if not isinstance(table, dict):
            raise LandscapeError(f"{card_file}: top-level key {name!r} is not a table (write one "
                                 "[NAME] table per checkpoint, its keys below it)")
        cards.append(_card(card_file, name, table))
    return cards


def _card(card_file: Path, name: str, table: dict[str, Any]) -> ModelCard:
    from .user_model import _is_path

    where = f"{card_file} [{name}]"

    def fail(msg: str) -> LandscapeError:
        return LandscapeError(f"{where}: {msg}")

    t = {k.replace("-", "_"): v for k, v in table.items()}
    unknown = [k for k in table if k.replace("-", "_") not in CARD_KEYS]
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} (known: {', '.join(CARD_KEYS)})")
    for key in ("path", "model", "model_def", "code_root", "family"):
        if key in t and not (isinstance(t[key], str) and t[key]):
            raise fail(f"{key} must be a non-empty string, got {t[key]!r}")
    base = card_file.resolve().parent
    if "path" not in t:
        raise fail("no path (the checkpoint file)")
    path = (base / t["path"]).resolve()
    if not path.exists():
        raise fail(f"checkpoint not found: {path}")
    if "model" in t and "model_def" in t:
        raise fail("give either model (a registry name) or model-def, not both")
    model_def = t.get("model_def")
    if model_def is not None:
        target, sep, attr = model_def.rpartition(":")
        if not sep or not target or not attr:
            raise fail(f"model-def expects MODULE:CALLABLE or path/to/file.py:CALLABLE, "
                       f"got {model_def!r}")
        if _is_path(target):
            file = (base / target).resolve()
            if not file.is_file():
                raise fail(f"model-def file not found: {file}")
            model_def = f"{file}:{attr}"
    code_root = None
    if "code_root" in t:
        code_root = (base / t["code_root"]).resolve()
        if not code_root.is_dir():
            raise fail(f"code-root is not a folder: {code_root}")
        if model_def is None:
            raise fail("code-root is the repository model-def imports from; give model-def")
    kwargs = t.get("kwargs", {})
    if not isinstance(kwargs, dict) or not all(k.isidentifier() for k in kwargs):
        raise fail(f"kwargs must be a table (kwargs = {{num_classes = 10}}), got {kwargs!r}")
    if kwargs and model_def is None:
        raise fail("kwargs are the arguments of the model-def callable; give model-def")
    shape = None
    if "input_shape" in t:
        try:
            shape = parse_input_shape(t["input_shape"], "input-shape")
        except LandscapeError as e:
            raise fail(str(e)) from None
    blocks, stages = _blocks(t.get("blocks"), fail)
    family = t.get("family")
    if family is not None and family.lower() not in FAMILIES:
        raise fail(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    only = t.get("only")
    if only is not None:
        from ..analyze.config import ANALYSES
        if not (isinstance(only, list) and all(a in ANALYSES for a in only)):
            raise fail(f"only must be a list of analyses from {', '.join(ANALYSES)} ([]: "
                       f"evaluation only), got {only!r}")
        only = tuple(only)
    return ModelCard(path, name=name, model=t.get("model"), model_def=model_def,
                     code_root=code_root, kwargs=dict(kwargs), input_shape=shape, blocks=blocks,
                     stages=stages, family=family.lower() if family else None, only=only,
                     where=where)


def _blocks(items: Any, fail: Callable[[str], LandscapeError]
            ) -> tuple[dict[str, str] | None, dict[str, int]]:
    """A card's ``blocks`` (a list of ``{name, kind[, stage]}`` tables) -> (kinds, stages)."""
    from landscape_models.blocks import KINDS

    if items is None:
        return None, {}
    if not isinstance(items, list) or not items:
        raise fail("blocks must be a non-empty list of {name = ..., kind = ..., stage = ...}")
    kinds: dict[str, str] = {}
    stages: dict[str, int] = {}
    for i, b in enumerate(items):
        if not isinstance(b, dict):
            raise fail(f"blocks[{i}] must be a table {{name = ..., kind = ...}}, got {b!r}")
        bad = [k for k in b if k not in BLOCK_KEYS]
        if bad:
            raise fail(f"blocks[{i}]: unknown key {bad[0]!r} (known: {', '.join(BLOCK_KEYS)})")
        name, kind = b.get("name"), b.get("kind")
        if not isinstance(name, str) or not name:
            raise fail(f"blocks[{i}]: name must be a module name, got {name!r}")
        if kind not in KINDS:
            raise fail(f"blocks[{i}] ({name}): kind must be one of {', '.join(KINDS)}, "
                       f"got {kind!r}")
        if name in kinds:
            raise fail(f"blocks[{i}]: block {name!r} is listed twice")
        kinds[name] = kind
        if "stage" in b:
            st = b["stage"]
            if isinstance(st, bool) or not isinstance(st, int) or st < 0:
                raise fail(f"blocks[{i}] ({name}): stage must be an integer >= 0, got {st!r}")
            stages[name] = st
    return kinds, stages


def load_card_weights(card: ModelCard, device: Any, dataset: str | None,
                      file: Any = None) -> tuple[Any, Any]:
    """(model on ``device``, CheckpointInfo) with the checkpoint's weights, blocks not yet
    assigned (:func:`assign_card_blocks` does that with the data's first batch). ``file``: the
    card's checkpoint already read (:func:`landscape.loading.checkpoint.read_checkpoint`)."""
    from .checkpoint import resolve_checkpoint
    from .user_model import load_weights

    net, info = load_weights(file or resolve_checkpoint(card.path), model=card.model,
                             model_def=card.model_def, device=device, dataset=dataset,
                             code_root=card.code_root, kwargs=card.kwargs)
    if card.name:
        info.extra["name"] = card.name
    return net, info


def assign_card_blocks(net: Any, info: Any, card: ModelCard, example: Any,
                       log: Callable[[str], None] | None = None) -> tuple[Any, Any]:
    """The card's block list (or the model's own, or an inferred one) with stages from
    ``example`` (one batch of the data used; the card's stages win), and its family."""
    from .user_model import assign_blocks

    if card.input_shape is not None and example is not None and \
            tuple(example.shape[1:]) != tuple(card.input_shape):
        shown = "x".join(map(str, example.shape[1:]))
        raise LandscapeError(f"{card.where}: input shape {','.join(map(str, card.input_shape))} "
                             f"but the data's images are {shown}")
    named = (lambda t: log(f"{card.where}: {t}")) if log is not None and card.name else log
    net, info = assign_blocks(net, info, model_def=card.model_def, blocks=card.blocks,
                              stages=card.stages or None, example=example, kwargs=card.kwargs,
                              log=named)
    if card.family:
        info.extra["family"] = card.family
    if card.only is not None:
        info.extra["only"] = list(card.only)
    return net, info


def checkpoint_paths(cards: Sequence[ModelCard]) -> list[Path]:
    """The checkpoint file of every card (a run folder stands for its ``model.pt``)."""
    from .checkpoint import resolve_checkpoint
    return [resolve_checkpoint(c.path) for c in cards]
