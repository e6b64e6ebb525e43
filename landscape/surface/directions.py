"""Directions in weight space for loss surfaces (Li et al. 2018, "Visualizing the Loss Landscape").

A direction is a ``dict[str, torch.Tensor]`` keyed by parameter (or, in ``states`` mode, buffer)
name, with the same shapes as the model's tensors. Names absent from the dict are not perturbed.

Which tensors are perturbed (:func:`perturbed_names`):

* ``mode="weights"``: the parameters only; BN running statistics stay fixed.
  ``mode="states"``: also the floating-point buffers (BN running mean/var), like the reference
  tool's ``--dir_type states``. Integer buffers (``num_batches_tracked``) never move.
* 1-D (and 0-D) tensors -- biases, norm-layer affine parameters -- are left unperturbed unless
  ``biasbn=True`` (the reference's ``--xignore biasbn`` is our default). In ``states`` mode 1-D
  buffers are always moved: that is what the mode is for.
* Names matching any regular expression in ``exclude`` (``re.search``) are never perturbed. The
  default, :data:`DEFAULT_EXCLUDE`, excludes position embeddings as the paper does
  (``pos_embed``, ``pos_embedding``, ``position_embedding``, ``absolute_pos``); pass ``exclude=()``
  to perturb them.

Normalization (:func:`normalize_direction`), exactly as the reference implementation:

* ``filter``: for every output filter ``i`` (slice ``[i]`` along dim 0 of a conv weight, i.e. an
  output row of a linear weight) ``d[i] *= ||theta[i]|| / (||d[i]|| + 1e-10)``;
* ``hdvw``: the paper's own code (xxxnell/how-do-vits-work ``ops/loss_landscapes.py``,
  ``normalize_filter``): ``d *= ||theta||_0 / (||d||_0 + 1e-7)``, the norms taken over dim 0
  (across output filters, one factor per input position); an included 1-D tensor gets ``d = 0``
  (its ``ignore_bn``). A documented difference from Li et al.'s per-filter default;
* ``layer``: the same with the whole tensor; ``model``: one factor for all perturbed tensors
  together; ``none``: the raw Gaussian.
* an included 1-D tensor gets ``d = theta`` in the ``filter``/``layer`` modes (reference
  behaviour without ``biasbn``), a Gaussian scaled with the rest in ``model`` and raw in ``none``.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..errors import LandscapeError

Direction = dict[str, torch.Tensor]

NORMS = ("filter", "hdvw", "layer", "model", "none")
MODES = ("weights", "states")
DEFAULT_EXCLUDE: tuple[str, ...] = ("pos_embed", "pos_embedding", "position_embedding",
                                    "absolute_pos")


def model_tensors(model: nn.Module, mode: str = "weights") -> dict[str, torch.Tensor]:
    """The model's named parameters (and floating buffers in ``states`` mode), detached."""
    if mode not in MODES:
        raise LandscapeError(f"direction mode must be one of {MODES}, got {mode!r}")
    out = {n: p.detach() for n, p in model.named_parameters()}
    if mode == "states":
        out.update({n: b.detach() for n, b in model.named_buffers() if b.is_floating_point()})
    return out


def perturbed_names(model: nn.Module, mode: str = "weights", biasbn: bool = False,
                    exclude: Sequence[str] = DEFAULT_EXCLUDE) -> list[str]:
    """Names of the tensors a direction moves (see the module docstring for the rules)."""
    pats = [re.compile(p) for p in exclude]
    buffers = {n for n, _ in model.named_buffers()}
    names = []
    for n, t in model_tensors(model, mode).items():
        if any(p.search(n) for p in pats):
            continue
        if t.dim() <= 1 and not biasbn and n not in buffers:
            continue
        names.append(n)
    return names


def normalize_direction(direction: Direction, reference: Mapping[str, torch.Tensor],
                        norm: str = "filter") -> Direction:
    """Scale ``direction`` in place to the norms of ``reference`` (see module docstring);
    returns it."""
    if norm not in NORMS:
        raise LandscapeError(f"direction norm must be one of {NORMS}, got {norm!r}")
    if norm == "none":
        return direction
    if norm == "model":
        dn = torch.sqrt(sum((d.double() ** 2).sum() for d in direction.values()))
        wn = torch.sqrt(sum((reference[n].double() ** 2).sum() for n in direction))
        for d in direction.values():
            d.mul_((wn / (dn + 1e-10)).to(d.dtype))
        return direction
    for n, d in direction.items():
        w = reference[n]
        if norm == "hdvw":
            if d.dim() <= 1:
                d.zero_()
            else:
                d.mul_(w.norm(dim=0, keepdim=True) / (d.norm(dim=0, keepdim=True) + 1e-7))
        elif d.dim() <= 1:
            d.copy_(w)
        elif norm == "layer":
            d.mul_(w.norm() / (d.norm() + 1e-10))
        else:  # filter
            wn = w.flatten(1).norm(dim=1).view(-1, *([1] * (d.dim() - 1)))
            dn = d.flatten(1).norm(dim=1).view(-1, *([1] * (d.dim() - 1)))
            d.mul_(wn / (dn + 1e-10))
    return direction


def random_direction(model: nn.Module, seed: int, norm: str = "filter", mode: str = "weights",
                     biasbn: bool = False, exclude: Sequence[str] = DEFAULT_EXCLUDE) -> Direction:
    """A Gaussian direction drawn from ``torch.Generator().manual_seed(seed)`` on the CPU (so the
    same seed gives the same direction on every device), normalized by ``norm``; on the model's
    device and dtypes. Tensors are drawn in ``named_parameters``/``named_buffers`` order."""
    ref = model_tensors(model, mode)
    g = torch.Generator().manual_seed(int(seed))
    out: Direction = {}
    for n in perturbed_names(model, mode, biasbn, exclude):
        w = ref[n]
        out[n] = torch.randn(w.shape, generator=g, dtype=torch.float64).to(w.device, w.dtype)
    return normalize_direction(out, ref, norm)


def filter_normalized_direction(model: nn.Module, seed: int, **kw: Any) -> Direction:
    """:func:`random_direction` with ``norm="filter"`` (Li et al.)."""
    return random_direction(model, seed, norm="filter", **kw)


def target_direction(start: Mapping[str, torch.Tensor], end: Mapping[str, torch.Tensor],
                     names: Iterable[str]) -> Direction:
    """``end - start`` over ``names``: x=0 is ``start`` and x=1 is ``end`` (1-D interpolation)."""
    out: Direction = {}
    for n in names:
        if n not in end:
            raise LandscapeError(f"target checkpoint has no tensor {n!r}")
        if end[n].shape != start[n].shape:
            raise LandscapeError(f"target tensor {n!r} has shape {tuple(end[n].shape)}, "
                                 f"expected {tuple(start[n].shape)}")
        out[n] = end[n].detach().to(start[n].device, start[n].dtype) - start[n].detach()
    return out


def direction_norm(direction: Direction) -> float:
    """Euclidean norm of a direction over all its tensors."""
    return float(torch.sqrt(sum((d.double() ** 2).sum() for d in direction.values())))


# ---------------------------------------------------------------------------------------------
# Trajectory PCA with bounded memory
# ---------------------------------------------------------------------------------------------

@dataclass
class TrajectoryPCA:
    """Two leading PCA directions of a training trajectory and its projection on their plane.

    ``coords`` (T, 2) are the coordinates of each checkpoint relative to the final one in the
    (d1, d2) basis (least squares, as Li et al. Fig. 9); ``explained`` is the explained variance
    ratio of each component.
    """
    d1: Direction
    d2: Direction
    coords: np.ndarray
    explained: np.ndarray
    singular_values: np.ndarray
    paths: list[str] = field(default_factory=list)


def _flat_chunks(state: Mapping[str, torch.Tensor], names: Sequence[str],
                 final: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    return [(state[n].detach().double() - final[n].detach().double()).flatten() for n in names]


def trajectory_pca(load_state: Callable[[Any], Mapping[str, torch.Tensor]], series: Sequence[Any],
                   final: Mapping[str, torch.Tensor], names: Sequence[str]) -> TrajectoryPCA:
    """PCA directions of the deltas ``theta_t - theta_final`` over a series of checkpoints.

    Bounded memory, two streaming passes over the files (``load_state(item)`` loads one at a
    time): (1) the T x T Gram matrix ``G = D D^T`` of the delta matrix ``D`` (T x P) is
    accumulated block by block: checkpoint ``i`` is loaded once and dotted with checkpoint
    ``j < i`` loaded again, so at most two states (plus ``final``) are resident and ``D`` is
    never formed; (2) ``G = U S^2 U^T`` gives ``V_k = D^T U_k / S_k``, accumulated as
    ``sum_t U[t,k]/S_k * delta_t`` streaming the files once more. Memory: O(T^2 + 3P); time:
    O(T^2) file loads in pass 1 (fine for the tens of checkpoints of a training run; the
    deltas of a pair are dotted tensor by tensor in float64). No centring, as in the reference
    (deltas from the final point). Coordinates are ``U_k * S_k`` (= projection of each delta
    on the orthonormal ``V_k``), identical to the reference's least-squares projection because
    ``V`` is orthonormal. The returned directions are NOT filter-normalized (the plane must
    contain the trajectory).
    """
    T = len(series)
    if T < 2:
        raise LandscapeError("trajectory PCA needs at least two checkpoints besides the final one")
    G = np.zeros((T, T))
    for i in range(T):
        di = _flat_chunks(load_state(series[i]), names, final)
        G[i, i] = float(sum((a * a).sum() for a in di))
        for j in range(i):
            dj = _flat_chunks(load_state(series[j]), names, final)
            G[i, j] = G[j, i] = float(sum((a * b).sum() for a, b in zip(di, dj, strict=True)))
            del dj
        del di
    evals, U = np.linalg.eigh(G)
    order = np.argsort(evals)[::-1]
    evals = np.clip(evals[order], 0.0, None)
    U = U[:, order]
    S = np.sqrt(evals)
    if S[1] <= 0:
        raise LandscapeError("trajectory spans fewer than two dimensions")
    # fix signs deterministically: largest |U| entry of each component positive
    for k in range(2):
        if U[np.argmax(np.abs(U[:, k])), k] < 0:
            U[:, k] = -U[:, k]
    acc = [[torch.zeros_like(final[n], dtype=torch.float64) for n in names] for _ in range(2)]
    for t in range(T):
        dt = _flat_chunks(load_state(series[t]), names, final)
        for k in range(2):
            c = U[t, k] / S[k]
            for a, v in zip(acc[k], dt, strict=True):
                a.view(-1).add_(v, alpha=c)
    dirs = [{n: a.to(final[n].dtype) for n, a in zip(names, acc[k], strict=True)} for k in range(2)]
    coords = U[:, :2] * S[:2]
    explained = evals[:2] / evals.sum()
    return TrajectoryPCA(dirs[0], dirs[1], coords, explained, S,
                         paths=[str(s) for s in series])


def project_onto(states_deltas: Sequence[Direction], d1: Direction, d2: Direction) -> np.ndarray:
    """Least-squares coordinates (a, b) of each delta in span(d1, d2) (reference's projection)."""
    names = list(d1)
    A = torch.stack([torch.cat([d1[n].double().flatten() for n in names]),
                     torch.cat([d2[n].double().flatten() for n in names])], 1)
    out = []
    for delta in states_deltas:
        v = torch.cat([delta[n].double().flatten() for n in names])
        out.append(torch.linalg.lstsq(A, v.unsqueeze(1)).solution.squeeze(1).numpy())
    return np.array(out)


# ---------------------------------------------------------------------------------------------
# Storage (HDF5 group)
# ---------------------------------------------------------------------------------------------

def save_directions(group: Any, directions: Sequence[Direction], attrs: Mapping[str, Any]) -> None:
    """Write directions to an h5py group: ``xdirection/<name>``, ``ydirection/<name>``, attrs."""
    for key, d in zip(("xdirection", "ydirection"), directions, strict=False):
        g = group.require_group(key)
        for n, t in d.items():
            if n in g:
                del g[n]
            g.create_dataset(n, data=t.detach().cpu().numpy())
    for k, v in attrs.items():
        group.attrs[k] = v


def load_directions(group: Any, device: torch.device, dtypes: Mapping[str, torch.dtype]
                    ) -> list[Direction]:
    """Read directions written by :func:`save_directions` onto ``device``."""
    out = []
    for key in ("xdirection", "ydirection"):
        if key in group:
            g = group[key]
            out.append({n: torch.from_numpy(np.asarray(g[n])).to(device, dtypes.get(n), copy=True)
                        for n in g})
    return out


def load_state_dict_file(path: str | Path, allow_nonfinite: bool = True
                         ) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, by the one reader
    (:func:`~landscape.loading.checkpoint.read_checkpoint`: the same formats as every loader,
    ``weights_only=True``); unless ``allow_nonfinite``, NaN or inf values are refused."""
    from ..loading.checkpoint import read_checkpoint
    return read_checkpoint(path, allow_nonfinite=allow_nonfinite).state_dict
