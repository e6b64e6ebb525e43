"""A researcher's own model: ``--model-def MODULE:CALLABLE`` or ``path/to/file.py:CALLABLE``.

The callable is called with the ``--model-kwargs`` (or a model card's ``kwargs``; none by
default) and returns an ``nn.Module``; the checkpoint is any format
:func:`~landscape.loading.checkpoint.read_checkpoint` accepts (the same for ``--model``): a
plain state dict, or one under ``state_dict`` (our format, the paper's, most training scripts),
``model_state_dict``, ``model`` or ``model_state``. Its blocks come, in this order of
precedence, from ``--blocks NAME=KIND,...`` (or a card's blocks), the model's own
``block_list()``, or :func:`landscape_models.inference.infer_blocks` (printed, so the user can
check them). :func:`load_model` is the one loader every command uses,
for registry models too; ``analyze`` calls its two halves (:func:`load_weights`, then
:func:`assign_blocks` with the first batch of the loaded data). Model cards:
:mod:`landscape.loading.model_cards`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import site
import sys
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import landscape_models as models
import torch
import torch.nn as nn
from landscape_models.blocks import KINDS, attach_blocks
from landscape_models.inference import blocks_from_spec, describe, infer_blocks

from ..errors import LandscapeError
from . import checkpoint as ckpt
from .model_args import parse_input_shape


def package_root(path: str | Path) -> tuple[Path, str]:
    """(package root, dotted module name) of a Python file, by Python's and pytest's rule: the
    root is the first folder upwards from the file without ``__init__.py``, and the file is the
    module named by the folders below it (``repo/models/vit.py`` -> ``(repo, "models.vit")``;
    ``repo/build.py`` -> ``(repo, "build")``)."""
    path = Path(path).resolve()
    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        parts.insert(0, folder.name)
        folder = folder.parent
    return folder, ".".join(parts)


def import_callable(spec: str, code_root: str | Path | None = None) -> Callable[..., Any]:
    """The callable named by ``MODULE:CALLABLE`` or ``path/to/file.py:CALLABLE`` (dots allowed
    after the colon for attributes of attributes).

    User code is imported as in its own repository. For the file form the file's package root
    (:func:`package_root`) goes first on ``sys.path`` and a file inside a package is imported as
    its dotted module (``models/vit.py`` as ``models.vit``, so ``from .layers import X`` and
    ``from models.layers import X`` work from the repository root); a file outside any package
    is imported under a private name with its folder on the path (its sibling imports work as in
    a script). ``code_root`` (``--code-root``) comes next (first for the module form). Both stay
    on ``sys.path`` (the callable may import lazily). Research code often has top-level packages
    named ``models``, ``utils``, ``data`` or ``ops``; the toolkit imports none of those names
    (its model zoo is ``landscape_models``), and a same-named module imported earlier from
    elsewhere (another repository) is dropped so the user's own one is found.
    """
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise LandscapeError(f"--model-def expects MODULE:CALLABLE or path/to/file.py:CALLABLE, "
                             f"got {spec!r}")
    roots: list[Path] = []
    dotted = ""
    path = Path(target)
    if _is_path(target):
        if not path.is_file():
            raise LandscapeError(f"--model-def {spec}: file not found: {path}")
        pkg_root, dotted = package_root(path)
        roots.append(pkg_root)
    if code_root is not None:
        root = Path(code_root)
        if not root.is_dir():
            raise LandscapeError(f"--code-root {code_root}: not a folder")
        roots.append(root.resolve())
    for root in reversed(roots):
        use_code_root(root)
    if dotted and "." not in dotted:  # a file outside any package: a private module name
        name = "landscape_user_model_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        mspec = importlib.util.spec_from_file_location(name, path)
        if mspec is None or mspec.loader is None:
            raise LandscapeError(f"--model-def {spec}: cannot import {path} (not a Python file?)")
        module = importlib.util.module_from_spec(mspec)
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        try:
            mspec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - any failure in user code becomes one line
            sys.modules.pop(name, None)
            raise LandscapeError(f"--model-def {spec}: importing {path} (folder {roots[0]} first "
                                 f"on the import path) failed: {type(e).__name__}: "
                                 f"{_first_line(e)}{_import_hint(e, code_root)}") from None
    elif dotted:  # a file inside a package: imported as its dotted module
        try:
            module = importlib.import_module(dotted)
        except Exception as e:  # noqa: BLE001
            raise LandscapeError(f"--model-def {spec}: importing {path} as {dotted} (package "
                                 f"root {roots[0]} first on the import path) failed: "
                                 f"{type(e).__name__}: {_first_line(e)}"
                                 f"{_import_hint(e, code_root)}") from None
        origin = getattr(module, "__file__", None)
        if origin is None or Path(origin).resolve() != path.resolve():
            raise LandscapeError(f"--model-def {spec}: {dotted} was imported from {origin}, not "
                                 f"{path}: another package named {dotted.split('.')[0]!r} comes "
                                 f"first (remove it from PYTHONPATH or pass --code-root DIR)")
    else:
        try:
            module = importlib.import_module(target)
        except Exception as e:  # noqa: BLE001
            hint = "" if code_root is not None else " (pass --code-root DIR for a repository)"
            raise LandscapeError(f"--model-def {spec}: cannot import module {target!r}: "
                                 f"{type(e).__name__}: {_first_line(e)}{hint}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n, v in vars(module).items()
                            if callable(v) and not n.startswith("_")
                            and getattr(v, "__module__", None) == module.__name__)
            raise LandscapeError(f"--model-def {spec}: {target} has no {attr!r} "
                                 f"(callables defined there: {', '.join(public) or 'none'})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise LandscapeError(f"--model-def {spec}: {attr} is a {type(obj).__name__}, not callable")
    return obj


def _import_hint(e: BaseException, code_root: str | Path | None) -> str:
    """What to do about a failed import of user code: install a missing package, or name the
    folder holding the user's own module with ``--code-root``."""
    missing = e.name.split(".")[0] if isinstance(e, ModuleNotFoundError) and e.name else None
    if missing is None:
        return ""
    if code_root is not None:
        return (f" ({missing!r} is neither installed nor in --code-root {code_root}: "
                f"pip install it?)")
    return (f" (if {missing!r} is a package, pip install it; if it is your code in another "
            f"folder, pass --code-root DIR, the folder that holds {missing})")


def use_code_root(root: str | Path) -> None:
    """Put a user repository first on ``sys.path`` and forget modules named like its top-level
    packages/modules that were imported from somewhere else (never the standard library's or an
    installed package's: only other user folders, e.g. another repository's ``models``)."""
    root = Path(root).resolve()
    if str(root) in sys.path:
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    protected = [Path(p).resolve() for p in {*site.getsitepackages(), site.getusersitepackages(),
                                             sysconfig.get_paths()["stdlib"]}]
    own = {c.stem if c.suffix == ".py" else c.name for c in root.iterdir()
           if (c.is_dir() and (c / "__init__.py").is_file()) or c.suffix == ".py"}
    for top in own - set(sys.stdlib_module_names) - {"landscape", "landscape_models"}:
        mod = sys.modules.get(top)
        origin = getattr(mod, "__file__", None) if mod is not None else None
        if mod is None or origin is None:
            continue
        where = Path(origin).resolve()
        if where.is_relative_to(root) or any(where.is_relative_to(p) for p in protected):
            continue
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]


def build_model(spec: str, code_root: str | Path | None = None,
                kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Call the ``--model-def`` callable with ``kwargs`` (``--model-kwargs``, a card's
    ``kwargs``; none by default); it must return an ``nn.Module``."""
    fn = import_callable(spec, code_root)
    kwargs = dict(kwargs or {})
    try:
        net = fn(**kwargs)
    except Exception as e:  # noqa: BLE001
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise LandscapeError(f"--model-def {spec}: calling it{f' with {shown}' if shown else ''} "
                             f"failed: {type(e).__name__}: {_first_line(e)}") from None
    if not isinstance(net, nn.Module):
        raise LandscapeError(f"--model-def {spec} returned a {type(net).__name__}, "
                             "not a torch.nn.Module")
    return net


def random_input(shape: Sequence[int], batch: int = 2) -> torch.Tensor:
    """A fixed (seeded) random batch of ``batch`` inputs of shape ``shape`` (C, H, W)."""
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))


def parse_blocks_arg(text: str) -> dict[str, str]:
    """``"layer1=conv,attn=msa"`` -> ``{"layer1": "conv", "attn": "msa"}`` (order kept)."""
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, kind = item.partition("=")
        name, kind = name.strip(), kind.strip().lower()
        if not sep or not name or kind not in KINDS:
            raise LandscapeError(f"--blocks expects NAME=KIND,... with KIND one of "
                                 f"{', '.join(KINDS)}; got {item!r}")
        out[name] = kind
    if not out:
        raise LandscapeError("--blocks is empty; give NAME=KIND,...")
    return out


def example_input(dataset: str | None, batch: int = 2) -> torch.Tensor | None:
    """A fixed random batch shaped like ``dataset``'s images (None if its shape is not fixed)."""
    if not dataset:
        return None
    from ..data import canonical_name, dataset_spec
    if canonical_name(dataset) == "imagefolder":
        return None
    s = dataset_spec(dataset)
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, s.in_chans, s.img_size, s.img_size, generator=g)


def load_user_checkpoint(path: str | Path | ckpt.CheckpointFile, model_def: str,
                         device: str | torch.device = "cpu",
                         code_root: str | Path | None = None,
                         kwargs: dict[str, Any] | None = None
                         ) -> tuple[nn.Module, ckpt.CheckpointInfo]:
    """Build the ``model_def`` model (called with ``kwargs``) and load the checkpoint's weights
    into it (strict). ``path``: a file or one already read (:func:`landscape.loading.checkpoint.
    read_checkpoint`, which accepts the same formats for every loader)."""
    f = path if isinstance(path, ckpt.CheckpointFile) else ckpt.read_checkpoint(path)
    obj = f.obj
    info_kw: dict[str, Any] = {}
    if f.format == ckpt.FORMAT:
        norm = obj.get("normalization") or {}
        info_kw = dict(dataset=obj.get("dataset"), mean=norm.get("mean"), std=norm.get("std"),
                       seed=obj.get("seed"), epoch=obj.get("epoch"),
                       metrics=dict(obj.get("metrics") or {}))
    net = build_model(model_def, code_root, kwargs)
    ckpt.load_state_dict_checked(net, f.state_dict, where=str(f.path))
    name = model_def.rpartition(":")[2].rsplit(".", 1)[-1]
    fmt = "state_dict" if f.format == "paper" else f.format
    info = ckpt.CheckpointInfo(str(f.path), f.sha256, fmt, name, {},
                               extra={"model_def": model_def}, **info_kw)
    return net.to(device).eval(), info


def _dataset_kwargs(dataset: str | None) -> dict[str, Any] | None:
    """Constructor arguments (classes, channels, image size) a bare state_dict's model takes
    from ``--data`` (a bare state_dict records none; without ``--data``: the defaults)."""
    from ..data import canonical_name, dataset_spec
    if not dataset or canonical_name(dataset) == "imagefolder":
        return None
    s = dataset_spec(dataset)
    return {"num_classes": s.num_classes, "in_chans": s.in_chans, "img_size": s.img_size}


def load_weights(path: str | Path | ckpt.CheckpointFile, *, model: str | None = None,
                 model_def: str | None = None, device: str | torch.device = "cpu",
                 dataset: str | None = None, code_root: str | Path | None = None,
                 kwargs: dict[str, Any] | None = None
                 ) -> tuple[nn.Module, ckpt.CheckpointInfo]:
    """(model in eval mode on ``device``, CheckpointInfo): a registry model (``model``, else the
    one the checkpoint records) or the ``model_def`` callable's, called with ``kwargs``, with the
    checkpoint's weights; no block list yet (:func:`assign_blocks`)."""
    if model_def is not None and model is not None:
        raise LandscapeError("give either --model (a registry name) or --model-def, not both")
    if code_root is not None and model_def is None:
        raise LandscapeError("--code-root is the repository --model-def imports from; give "
                             "--model-def MODULE:CALLABLE with it")
    if kwargs and model_def is None:
        raise LandscapeError("--model-kwargs are the arguments of the --model-def callable; "
                             "give --model-def MODULE:CALLABLE with them")
    if model_def is None:
        return ckpt.load(path, model=model, device=device, bare_kwargs=_dataset_kwargs(dataset))
    return load_user_checkpoint(path, model_def, device, code_root, kwargs)


def assign_blocks(net: nn.Module, info: ckpt.CheckpointInfo, *, model_def: str | None = None,
                  blocks: str | dict[str, str] | None = None,
                  stages: dict[str, int] | None = None, example: torch.Tensor | None = None,
                  dataset: str | None = None, kwargs: dict[str, Any] | None = None,
                  log: Callable[[str], None] | None = None) -> tuple[nn.Module,
                                                                     ckpt.CheckpointInfo]:
    """Give a loaded model its block list (``--blocks``/a card's blocks, else its own
    ``block_list()``, else inferred from module types, then ``log`` gets it as a table) and
    return it with ``info`` updated; a registry model without ``blocks`` keeps its own list.

    ``example`` (default: a batch shaped like ``dataset``'s images, else the checkpoint's
    dataset) is the probe batch that orders the blocks, assigns stages (a new stage where the
    resolution falls) and checks that the model runs; ``stages`` (block name -> stage) replace
    the probe's stages for the blocks they name. ``info.sha256`` then also covers the model
    definition's source, its ``kwargs``, the block list and the stages (results cached under it
    change with them); ``info.extra["checkpoint_sha256"]`` is the file's own hash.
    """
    spec = parse_blocks_arg(blocks) if isinstance(blocks, str) else blocks
    if stages and spec is None:
        raise LandscapeError(f"{info.model}: stages are given for blocks, but no block list")
    if model_def is None and spec is None:
        return net, info
    x = example if example is not None else example_input(dataset or info.dataset)
    if x is not None:
        x = x.to(next(iter(net.parameters()), torch.empty(0)).device)
        try:
            with torch.no_grad():
                y = net(x)
        except Exception as e:  # noqa: BLE001
            raise LandscapeError(f"{info.model}: the model fails on an input batch of shape "
                                 f"{tuple(x.shape)} ({dataset or info.dataset or 'given'}): "
                                 f"{type(e).__name__}: {_first_line(e)}") from None
        if model_def is not None and isinstance(y, torch.Tensor) and y.dim() == 2:
            info.model_kwargs = {"num_classes": int(y.shape[1]), "in_chans": int(x.shape[1])}
    try:
        if spec is not None:
            bl, source = blocks_from_spec(net, spec, x), "--blocks"
        elif hasattr(net, "block_list"):
            bl, source = models.blocks(net), "block_list()"
        else:
            bl, source = infer_blocks(net, x), "inferred"
    except (KeyError, ValueError) as e:
        raise LandscapeError(f"{info.model}: {e.args[0] if e.args else e}") from None
    if not [b for b in bl if b.kind != "head"]:
        raise LandscapeError(f"{info.model}: no blocks found (no attention modules or residual "
                             "units with Conv2d); name them with --blocks NAME=KIND,...")
    if stages:
        bl = [dataclasses.replace(b, stage=int(stages.get(b.name, b.stage))) for b in bl]
    attach_blocks(net, bl)
    if source == "inferred" and log is not None:
        log(format_blocks(describe(net, bl, x), f"{info.model}: blocks inferred from module "
                          "types (check them; override with --blocks NAME=KIND,... or a "
                          "card's blocks)"))
    extra = [model_def or "", _source_sha(model_def), repr(spec)]
    if kwargs:
        extra.append(repr(sorted(kwargs.items())))
    if stages:
        extra.append(repr(sorted(stages.items())))
    info.extra["checkpoint_sha256"] = info.sha256
    info.sha256 = hashlib.sha256("\n".join([info.sha256, *extra]).encode()).hexdigest()
    info.extra["blocks"] = source
    return net, info


def load_model(path: str | Path, *, model: str | None = None,
               model_def: str | None = None, blocks: str | dict[str, str] | None = None,
               device: str | torch.device = "cpu", dataset: str | None = None,
               log: Callable[[str], None] | None = None,
               example: torch.Tensor | None = None,
               code_root: str | Path | None = None, kwargs: dict[str, Any] | None = None,
               stages: dict[str, int] | None = None) -> tuple[nn.Module, ckpt.CheckpointInfo]:
    """(model in eval mode on ``device``, CheckpointInfo) for a registry or ``model_def`` model:
    :func:`load_weights` then :func:`assign_blocks` (see there for ``blocks``, ``example``,
    ``stages`` and how ``info.sha256`` covers them). ``code_root`` is the user repository
    ``model_def`` imports from (:func:`import_callable`), ``kwargs`` the arguments its callable
    is called with.
    """
    net, info = load_weights(path, model=model, model_def=model_def, device=device,
                             dataset=dataset, code_root=code_root, kwargs=kwargs)
    return assign_blocks(net, info, model_def=model_def, blocks=blocks, stages=stages,
                         example=example, dataset=dataset, kwargs=kwargs, log=log)


def format_blocks(rows: list[dict[str, Any]], title: str = "") -> str:
    """The block list as a text table: name, kind, stage, feature-map shape, module type,
    residual, where the feature map is read (module output, residual stream, or refused: why)."""
    head = ("name", "kind", "stage", "output shape", "module", "residual", "read at")
    table = [head] + [(r["name"], r["kind"], str(r["stage"]),
                       "x".join(map(str, r["shape"])) if r["shape"] else "?",
                       r["type"], "yes" if r["residual"] else "no", r["read"]) for r in rows]
    width = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, width, strict=True)).rstrip()
             for row in table]
    return "\n".join(([title] if title else []) + lines)


def _source_sha(model_def: str | None) -> str:
    """SHA-256 of the file defining the model ('' when it cannot be found)."""
    if not model_def:
        return ""
    target = model_def.rpartition(":")[0]
    path = Path(target) if _is_path(target) else None
    if path is None:
        spec = importlib.util.find_spec(target)
        path = Path(spec.origin) if spec is not None and spec.origin else None
    return hashlib.sha256(path.read_bytes()).hexdigest() if path and path.is_file() else ""


def _is_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def describe_checkpoint_blocks(checkpoint: str, model: str | None = None,
                               model_def: str | None = None, blocks: str | None = None,
                               data: str | None = None, input_shape: str | None = None,
                               code_root: str | None = None,
                               kwargs: dict[str, Any] | None = None) -> str:
    """The block list of a checkpoint's model as a table (``landscape blocks``): names, kinds,
    stages and, when an input shape is known (``input_shape`` "C,H,W", the dataset's, or the
    registry model's), output shapes in forward order."""

    x = random_input(parse_input_shape(input_shape)) if input_shape else None
    net, info = load_model(checkpoint, model=model, model_def=model_def, blocks=blocks,
                           dataset=data, example=x, code_root=code_root, kwargs=kwargs)
    if x is None:
        x = example_input(data or info.dataset)
    kw = info.model_kwargs
    if x is None and kw.get("in_chans") and kw.get("img_size"):  # registry models know theirs
        c, s = int(kw["in_chans"]), int(kw["img_size"])
        x = random_input((c, s, s))
    source = info.extra.get("blocks", "block_list()")
    probe = f"input {'x'.join(map(str, x.shape))}" if x is not None else \
        "no input shape known: pass --data or --input-shape for shapes, order and stages"
    return format_blocks(describe(net, models.blocks(net), x),
                         f"{info.path}: {info.model}, blocks from {source}, {probe}")
