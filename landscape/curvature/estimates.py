"""The curvature of a model's loss averaged over a set of images, one way for every caller:
the images are chosen, batched and turned into one :class:`HessianOperator`, and the estimates
(extreme eigenvalues, Hutch++ and Hutchinson trace, SLQ density) are taken from it.
``landscape hessian --trace/--density`` and ``landscape analyze`` both call
:func:`curvature_estimates`, so the same settings and seed give the same numbers.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..settings import CurvatureSettings
from .density import slq_density
from .hessian_operator import HessianOperator
from .lanczos import top_eigenvalues
from .results import DensityResult
from .trace import hutchinson_trace, hutchpp_trace


def curvature_images(images: torch.Tensor, labels: torch.Tensor, n: int,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (all when ``n`` >= their number) in the order of a permutation seeded by
    ``seed``."""
    idx = np.random.default_rng(seed).permutation(len(labels))[:n]
    ii = torch.as_tensor(idx, device=images.device)
    return images[ii], labels[ii]


def curvature_operator(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                       s: CurvatureSettings, augment: Any = None,
                       distributed: bool = False, curvature: str = "hessian") -> HessianOperator:
    """The Hessian of the loss averaged over :func:`curvature_images`, in batches of
    ``s.batch_size``, with the L2 term of ``s.wd``/``s.l2`` composed; ``curvature="ggn"`` or
    ``"ef"``: the GGN or empirical Fisher in place of the Hessian."""
    x, y = curvature_images(images, labels, s.samples, s.seed)
    bs = s.batch_size
    batches = [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]
    return HessianOperator(model, batches, wd=s.wd, l2=s.l2, mode=s.mode, augment=augment,
                           augment_seed=s.seed, distributed=distributed, curvature=curvature)


def curvature_estimates(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                        s: CurvatureSettings, *, augment: Any = None, distributed: bool = False,
                        say: Callable[[str], None] | None = None, curvature: str = "hessian"
                        ) -> tuple[dict[str, Any], DensityResult | None, dict[str, Any]]:
    """(numbers, SLQ density or None, operator config). Numbers: ``top``/``bottom``
    eigenvalues (``s.top_k``), ``trace`` (Hutch++), ``hutchinson``, each a result dict or
    absent, plus ``n_samples``, ``batch_size`` and ``n_params``. ``curvature``: "hessian",
    "ggn" or "ef" (the operator's config says which)."""
    op = curvature_operator(model, images, labels, s, augment, distributed, curvature)
    n = min(s.samples, len(labels))
    tell = (lambda what: say(f"curvature on {n} images: {what}")) if say else (lambda _: None)
    out: dict[str, Any] = {}
    kw = dict(seed=s.seed, tol=s.lanczos_tol, max_iter=s.lanczos_max_iter,
              confirm=s.lanczos_confirm,
              return_eigenvectors=False)
    if s.top_k:
        for key, which in (("top", "LM"), ("bottom", "SA")):
            tell(f"{key} {s.top_k} eigenvalues (Lanczos, <= {s.lanczos_max_iter} products)")
            out[key] = top_eigenvalues(op, s.top_k, which, **kw).to_dict()
    if s.hutchinson_probes:
        tell(f"trace (Hutchinson, {s.hutchinson_probes} probes)")
        out["hutchinson"] = hutchinson_trace(op, s.hutchinson_probes, seed=s.seed).to_dict()
    if s.trace_products:
        tell(f"trace (Hutch++, {s.trace_products} products)")
        out["trace"] = hutchpp_trace(op, s.trace_products, seed=s.seed).to_dict()
    density = None
    if s.density_probes:
        tell(f"density (SLQ, {s.density_probes} probes × {s.density_steps} steps)")
        density = slq_density(op, s.density_probes, s.density_steps, seed=s.seed, sigma=s.sigma)
    out.update(n_samples=n, batch_size=s.batch_size, n_params=int(op.shape[0]))
    return out, density, op.config()
