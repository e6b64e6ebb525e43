"""Block lists for any ``nn.Module``: inference from module types and ``torch.fx`` (the read-out
point of every inferred block: the residual stream after its addition), stages from a forward
pass, blocks named by the user, and the block table (:func:`describe`).

:func:`infer_blocks` guesses the list for a model without ``block_list()``;
:func:`blocks_from_spec` takes the modules the user names; :func:`landscape_models.blocks.
attach_blocks` gives the model a ``block_list()`` so every analysis can use it.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from .blocks import Block, Tap, _batch_first, block_outputs

_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_ADD_METHODS = ("add", "add_", "__add__", "__iadd__")
_MLP_NAMES = ("mlp", "ffn", "feed_forward", "feedforward")


def _is_attention(name: str, module: nn.Module) -> bool:
    last = name.rsplit(".", 1)[-1].lower()
    return isinstance(module, nn.MultiheadAttention) or (
        last.endswith(("attn", "attention")) and _has_parameters(module))


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _is_torch_builtin(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.")


@dataclass(frozen=True)
class ResidualAdd:
    """One residual addition in a unit's ``forward``: ``branch`` the submodule whose output is
    the residual branch (None: it does not end in a submodule), ``stream`` where the sum can be
    observed as ``(where, submodule name)`` pairs ("" the unit itself; the sum of the pairs), or
    None with ``why`` when it cannot be observed."""

    branch: str | None
    stream: tuple[tuple[str, str], ...] | None
    why: str = ""


def _residual_adds(module: nn.Module) -> list[ResidualAdd] | None:
    """Every add in ``module.forward`` whose two operands both depend on the inputs (a residual
    connection), found with ``torch.fx`` (children as leaves), with the residual branch and where
    the stream after the addition can be read (:func:`_stream_taps`). None if ``module`` cannot be
    traced (data-dependent control flow)."""
    import torch.fx as fx

    class ChildrenAsLeaves(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return True

    try:
        graph = ChildrenAsLeaves().trace(module)
    except Exception:  # noqa: BLE001 - untraceable forward: no residual information
        return None
    depth: dict[fx.Node, int | None] = {}  # longest path from an input, None: no input
    out: list[ResidualAdd] = []
    for node in graph.nodes:
        if node.op == "placeholder":
            depth[node] = 0
            continue
        ds = [depth[a] for a in node.all_input_nodes if depth.get(a) is not None]
        depth[node] = max(ds) + 1 if ds else None
        is_add = ((node.op == "call_function" and node.target in _ADD_FUNCTIONS)
                  or (node.op == "call_method" and node.target in _ADD_METHODS))
        if not is_add or len(node.args) < 2:
            continue
        a, b = node.args[0], node.args[1]
        if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)) \
                or depth.get(a) is None or depth.get(b) is None:
            continue
        skip, br = (b, a) if depth[a] >= depth[b] else (a, b)
        if depth[a] == depth[b] and _unwrap(br, module).op != "call_module":
            skip, br = br, skip  # equally deep: the branch is the operand a submodule computes
        branch = _unwrap(br, module)
        stream, why = _stream_taps(graph, node, skip, br)
        out.append(ResidualAdd(str(branch.target) if branch.op == "call_module" else None,
                               stream, why))
    return out


def _stream_taps(graph: torch.fx.Graph, add: torch.fx.Node, skip: torch.fx.Node,
                 branch: torch.fx.Node) -> tuple[tuple[tuple[str, str], ...] | None, str]:
    """Where the value of the residual sum ``add`` can be observed by hooks, in this order:

    1. it is the unit's output (``("output", "")``): ``return x + f(x)``;
    2. it is the first input of a submodule called once (``("input", name)``): the next norm of
       a pre-norm transformer, the norm of a post-norm block, a tap ``nn.Identity``;
    3. both operands are observable (the unit's input, a submodule's output or a submodule's
       first input): their sum.

    Otherwise ``(None, reason)``: the stream is never replaced by the branch's output.
    """
    calls: dict[str, int] = {}
    for n in graph.nodes:
        if n.op == "call_module":
            calls[str(n.target)] = calls.get(str(n.target), 0) + 1
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    for user in add.users:
        if user.op == "output":
            res = user.args[0]
            if res is add or (isinstance(res, (tuple, list)) and res and res[0] is add):
                return (("output", ""),), ""
    for n in graph.nodes:  # graph order: the first submodule that receives the sum
        if n in add.users and n.op == "call_module" and n.args and n.args[0] is add \
                and calls[str(n.target)] == 1:
            return (("input", str(n.target)),), ""

    def observe(n: torch.fx.Node) -> tuple[str, str] | None:
        if placeholders and n is placeholders[0]:
            return ("input", "")
        if n.op == "call_module" and calls[str(n.target)] == 1:
            return ("output", str(n.target))
        if n.op == "call_function" and n.target is operator.getitem and n.args[1] == 0 \
                and isinstance(n.args[0], torch.fx.Node) and n.args[0].op == "call_module" \
                and calls[str(n.args[0].target)] == 1:
            return ("output", str(n.args[0].target))
        for u in graph.nodes:  # the first input of a submodule: t + attn(t, t, t)
            if u in n.users and u.op == "call_module" and u.args and u.args[0] is n \
                    and calls[str(u.target)] == 1:
                return ("input", str(u.target))
        return None

    parts = [observe(skip), observe(branch)]
    if parts[0] is not None and parts[1] is not None:
        return (parts[0], parts[1]), ""
    bad = skip if parts[0] is None else branch
    return None, (f"the residual sum {add.name} is neither the unit's output nor a submodule's "
                  f"input, and its operand {bad.name} ({bad.op} {bad.target}) is not a module "
                  "output")


def _unwrap(node: torch.fx.Node, module: nn.Module) -> torch.fx.Node:
    """Step back from a residual branch's output through ``[0]`` and one-input wrappers without
    weights (Identity, Dropout, DropPath, activations, a LayerScale's single 1-D gain), so the
    branch is the module doing the work (``attn``, ``mlp``, the last BatchNorm)."""
    while True:
        if node.op == "call_function" and node.target is operator.getitem:
            node = node.args[0]
        elif node.op == "call_module" and len(node.all_input_nodes) == 1 \
                and isinstance(node.args[0], torch.fx.Node):
            ps = list(module.get_submodule(str(node.target)).parameters())
            if len(ps) > 1 or any(p.dim() > 1 for p in ps):
                return node
            node = node.args[0]
        else:
            return node


def infer_blocks(model: nn.Module, example: torch.Tensor | None = None) -> list[Block]:
    """A block list guessed from module types, for models without ``block_list()``.

    * ``nn.MultiheadAttention`` and modules whose name ends in ``attn``/``attention`` -> msa;
    * residual units (a module whose forward adds a branch to its input, found with ``torch.fx``)
      holding an ``nn.Conv2d`` -> conv, the branch's last submodule as ``branch``;
    * in a residual unit holding attention, the other residual branches (the transformer's MLP,
      or children named mlp/ffn) -> mlp;
    * the input of the first such unit -> embed; the last ``nn.Linear`` -> head.

    Every block is read where the built-in block lists read it, the residual stream the next
    block receives: a conv unit's output; for msa and mlp blocks the residual sum after the
    block's addition (:func:`_stream_taps`: the unit's output, the input of the submodule that
    receives the sum, or skip + branch). A block whose stream cannot be observed gets
    ``refused`` (its reason) and is never read at its branch. With ``example`` (one input batch)
    blocks are put in forward order, get stages from where the spatial resolution falls, and
    the head is the module that produces the output; without it they keep registration order
    and stage 0. Check the result (:func:`describe`).
    """
    mods = dict(model.named_modules())
    attn = [n for n, m in mods.items() if n and _is_attention(n, m)]
    attn = [n for n in attn if not any(n.startswith(a + ".") for a in attn)]  # outermost only

    def inside(name: str, roots: Sequence[str]) -> bool:
        return any(name == r or name.startswith(r + ".") or r == "" for r in roots)

    def holds(name: str, pred: Any) -> bool:
        return any(pred(m) for m in mods[name].modules())

    found: dict[str, Block] = {}
    units: list[nn.Module] = []  # the unit of each found block, in registration order
    for uname, unit in mods.items():
        if _is_torch_builtin(unit) or (uname and inside(uname, attn)):
            continue
        adds = _residual_adds(unit)
        unit_attn = [a for a in attn if uname == "" or a.startswith(uname + ".")]
        prefix = f"{uname}." if uname else ""

        def taps(add: ResidualAdd, unit: nn.Module = unit, prefix: str = prefix
                 ) -> tuple[tuple[Tap, ...], str | None]:
            if add.stream is None:
                return (), f"residual stream not observable: {add.why}"
            return tuple(Tap(mods[prefix + rel] if rel else unit, where)
                         for where, rel in add.stream), None

        n_found = len(found)
        for add in adds or []:
            bname = prefix + add.branch if add.branch is not None else None
            if bname is not None and any(inside(a, [bname]) or inside(bname, [a]) for a in attn):
                a = next(a for a in attn if inside(a, [bname]) or inside(bname, [a]))
                readout, why = taps(add)
                found[a] = Block(a, "msa", 0, mods[a], mods[bname], None, readout, why)
            elif unit_attn and uname and bname is not None \
                    and not holds(bname, lambda m: isinstance(m, nn.Conv2d)):
                readout, why = taps(add)
                found[bname] = Block(bname, "mlp", 0, mods[bname], mods[bname], None, readout,
                                     why)
            elif holds(uname, lambda m: isinstance(m, nn.Conv2d)) and uname not in found:
                if uname:  # the unit's output: what the next unit receives
                    found[uname] = Block(uname, "conv", 0, unit, mods[bname] if bname else None)
                elif bname is not None:  # residual add in the top-level forward
                    readout, why = taps(add)
                    found[bname] = Block(bname, "conv", 0, mods[bname], mods[bname], None,
                                         readout, why)
        if unit_attn and uname:  # MLPs named as such next to the attention of a transformer
            for cname, child in unit.named_children():
                full = prefix + cname
                if cname.lower().endswith(_MLP_NAMES) and full not in found \
                        and _has_parameters(child):
                    found[full] = Block(full, "mlp", 0, child, refused=(
                        f"no residual addition around {full} found in {uname}"))
        if len(found) > n_found and uname:
            units.append(unit)
    for a in attn:
        found.setdefault(a, Block(a, "msa", 0, mods[a], refused=(
            f"no residual addition around {a} found (its unit adds no branch or cannot be "
            "traced by torch.fx)")))
    order = {n: i for i, n in enumerate(mods)}
    out = sorted(found.values(), key=lambda b: order[b.name])
    if units and "embed" not in found:  # the stream entering the first unit (after the stem)
        out.insert(0, Block("embed", "embed", 0, units[0], readout=(Tap(units[0], "input"),)))
    linear = [n for n, m in mods.items() if isinstance(m, nn.Linear) and not inside(n, attn)
              and n not in found and not any(inside(n, [b.name]) for b in out)]
    if example is None:
        if linear:
            out.append(Block(linear[-1], "head", 0, mods[linear[-1]]))
        return out
    return _order_and_stage(model, out, example, head=True)


def _forward_record(model: nn.Module, example: torch.Tensor,
                    watch: Sequence[nn.Module]) -> tuple[Any, dict[int, tuple[int, torch.Size]]]:
    """Run ``model(example)`` (eval, no grad); per watched module id: (completion order, shape)."""
    rec: dict[int, tuple[int, torch.Size]] = {}
    handles = []
    for m in {id(m): m for m in watch}.values():
        def hook(mod: nn.Module, _i: Any, o: Any) -> None:
            if id(mod) not in rec:
                rec[id(mod)] = (len(rec), _batch_first(mod, o).shape)
        handles.append(m.register_forward_hook(hook))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            y = model(example)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return y, rec


def _resolution(shape: torch.Size) -> int | None:
    if len(shape) == 4:
        return int(shape[2] * shape[3])
    if len(shape) == 3:
        n = int(shape[1])
        return n - 1 if math.isqrt(n) ** 2 != n and math.isqrt(n - 1) ** 2 == n - 1 else n
    return None


def _order_and_stage(model: nn.Module, block_list: Sequence[Block], example: torch.Tensor,
                     head: bool = False) -> list[Block]:
    """Blocks in forward order with stages from falling resolution; with ``head``, the leaf
    module producing the model's output replaces any guessed head."""
    leaves = [m for m in model.modules() if not list(m.children())] if head else []
    y, rec = _forward_record(model, example, [b.module for b in block_list] + leaves)
    bl = [b for b in block_list if id(b.module) in rec and not (head and b.kind == "head")]
    if head and isinstance(y, torch.Tensor):
        names = {id(m): n for n, m in model.named_modules()}
        cands = [m for m in leaves if id(m) in rec and rec[id(m)][1] == y.shape]
        if cands:
            last = max(cands, key=lambda m: rec[id(m)][0])
            bl.append(Block(names[id(last)], "head", 0, last))
    bl.sort(key=lambda b: (b.kind != "embed", rec[id(b.module)][0]))
    stage, prev, out = 0, None, []
    for b in bl:
        r = _resolution(rec[id(b.module)][1])
        if b.kind != "head" and r is not None:
            if prev is not None and r < prev:
                stage += 1
            prev = r
        out.append(b.with_stage(stage))
    missing = [b.name for b in block_list if id(b.module) not in rec]
    if missing:
        raise ValueError(f"blocks {', '.join(missing)} are not called by the model's forward")
    return out


def blocks_from_spec(model: nn.Module, spec: dict[str, str],
                     example: torch.Tensor | None = None) -> list[Block]:
    """Blocks named by the user (``{module name: kind}``); a residual branch, the read-out point
    (the residual stream after the block, :func:`infer_blocks`) and the stage are taken from
    inference and the forward pass where they can be found; a module inference does not know is
    read at its output."""
    mods = dict(model.named_modules())
    unknown = [n for n in spec if n not in mods]
    if unknown:
        import difflib
        hints = [h for n in unknown for h in difflib.get_close_matches(n, list(mods), 3)]
        close = f" (close: {', '.join(hints)})" if hints else ""
        raise KeyError(f"no module named {', '.join(map(repr, unknown))} in "
                       f"{type(model).__name__}{close}")
    known = {id(b.module): b for b in infer_blocks(model) if b.kind != "embed"}

    def block(n: str, k: str) -> Block:
        b = known.get(id(mods[n]))
        if b is None:
            return Block(n, k, 0, mods[n])
        return Block(n, k, 0, mods[n], b.branch, None, b.readout, b.refused)
    bl = [block(n, k) for n, k in spec.items()]
    return _order_and_stage(model, bl, example) if example is not None else bl




def describe(model: nn.Module, block_list: Sequence[Block],
             example: torch.Tensor | None = None) -> list[dict[str, Any]]:
    """Rows ``{name, kind, stage, module, type, residual, read, shape}``: ``read`` is where the
    feature map is read (``"output"`` of the module, ``"stream"`` after a residual addition, or
    ``"refused: <why>"``), ``shape`` the shape of one feature map (the module's output for a
    refused block), None without ``example``."""
    rec: dict[int, tuple[int, torch.Size]] = {}
    feats: dict[str, torch.Tensor] = {}
    if example is not None:
        _, rec = _forward_record(model, example, [b.module for b in block_list])
        was = model.training
        model.eval()
        try:
            feats = block_outputs(model, example, block_list)
        finally:
            model.train(was)
    names = {id(m): n for n, m in model.named_modules()}

    def read(b: Block) -> str:
        if b.refused is not None:
            return f"refused: {b.refused}"
        return "stream" if b.readout else "output"

    def shape(b: Block) -> tuple[int, ...] | None:
        if b.name in feats:
            return tuple(feats[b.name].shape)
        return tuple(rec[id(b.module)][1]) if id(b.module) in rec else None

    return [{"name": b.name, "kind": b.kind, "stage": int(b.stage), "module": names[id(b.module)],
             "type": type(b.module).__name__, "residual": b.branch is not None, "read": read(b),
             "shape": shape(b)} for b in block_list]
