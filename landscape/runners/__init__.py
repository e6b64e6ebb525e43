"""One runner per quantity: ``run_<quantity>(model, data, settings, store) -> Run``.

The only path by which a quantity is computed: ``landscape <command>`` builds the settings from
its options and writes through a :class:`~landscape.store.resume.ResultFolder`, ``landscape
analyze`` builds them from its budget and writes through a
:class:`~landscape.store.resume.ResultCache`; the runner alone decides what identifies the
result (its settings' ``to_dict()``, the images, the checkpoint), so the same checkpoint and
settings give the same numbers and the same identity by either path. Nothing here reads an
argparse namespace.

- :mod:`.features`: :func:`run_fourier`, :func:`run_variance`, :func:`run_robustness`,
  :func:`run_cka`, :func:`run_lesion`;
- :mod:`.surface`: :func:`run_surface` (and :func:`random_plane`, the directions both paths
  draw);
- :mod:`.hessian`: :func:`run_spectrum`, :func:`run_curvature` (and :func:`hessian_pool`, the
  training images both paths draw them from);
- :mod:`.loss`: :func:`resolve_loss`, the one resolution of the loss preset (training weight
  decay, L2 convention, augmentation, the paper's transform) for the Hessian and the surface.
"""
from __future__ import annotations

from .features import (
    FEATURE_RUNNERS,
    Run,
    robustness_identity,
    run_cka,
    run_fourier,
    run_lesion,
    run_robustness,
    run_variance,
)
from .hessian import hessian_pool, run_curvature, run_spectrum
from .loss import Loss, resolve_loss
from .surface import plane_identity, random_plane, run_surface

__all__ = ["FEATURE_RUNNERS", "Loss", "Run", "hessian_pool", "plane_identity", "random_plane",
           "resolve_loss", "robustness_identity", "run_cka", "run_curvature", "run_fourier",
           "run_lesion", "run_robustness", "run_spectrum", "run_surface", "run_variance"]
