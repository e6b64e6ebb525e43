"""Curvature of a model's loss: the Hessian as a linear operator and the estimators that use it.

Modules (each one quantity or piece, curvlinops style):

- ``operators``: the :class:`LinearOperator` interface, dense/generic wrappers, sums, ``c * I``,
  and :func:`check_repeated_products`;
- ``base``: :class:`CurvatureOperator`, the data loop every curvature kind shares (batches,
  parameter selection, augmentation, weighted mean, torchrun sharding, gradient), and
  :func:`check_curvature_options` (a backend or mode a kind cannot serve is refused in one line);
- three sibling kinds on it: ``hessian_operator``: :class:`LossHessian` (with its product
  modes); ``ggn``: :class:`GGNOperator` (``J^T H_out J``); ``fisher``:
  :class:`EmpiricalFisherOperator` (``mean_n g_n g_n^T``); the GGN and EF share the double-vjp
  graph of ``jacobian_operator``. ``hessian_operator`` also holds :class:`HessianOperator` (a
  kind's data term + an L2 term; ``curvature=`` picks the kind) and :func:`dense_hessian`
  (reference). Every estimator below takes any kind;
- ``l2``: the L2 terms ("half": ``wd/2 ||theta||^2``; "paper": ``wd * sum_p ||p||_2``) and
  their Hessians as operators;
- ``modes``: the product mode ("auto": a cached choice, else measured inside the first real
  products); ``mode_cache``: the persistent cache of those choices;
- ``block_size``: the one rule for how many probe vectors go through one product call;
- ``lanczos``: :func:`top_eigenvalues` (Lanczos / eigsh / pyhessian) and Gauss quadrature;
- ``subspace``: :func:`subspace_eigenpairs`, block-started Rayleigh-Ritz (warm starts);
- ``trace``: Hutchinson and Hutch++; ``density``: SLQ spectral density;
- ``results``: the result dataclasses; ``pyhessian_backend``: the pyhessian package as a backend.
"""
from . import mode_cache
from .base import CurvatureOperator, check_curvature_options
from .block_size import probe_block_size
from .density import slq_density
from .fisher import EmpiricalFisherOperator
from .ggn import GGNOperator
from .hessian_operator import (
                               CURVATURES,
                               HessianOperator,
                               LossHessian,
                               curvature_term_of,
                               dense_hessian,
                               eval_mode,
                               loss_hessian_of,
                               math_attention,
                               select_names,
)
from .l2 import L2_KINDS, PaperL2Hessian, l2_hessian, l2_penalty
from .lanczos import (
                               WHICH,
                               Lanczos,
                               lanczos_eigenpairs,
                               lanczos_quadrature,
                               start_vector,
                               top_eigenvalues,
)
from .modes import DEFAULT_MODE, MODES, ModeChoice, choose_mode
from .operators import (
                               DenseOperator,
                               LinearOperator,
                               ScaledIdentity,
                               ScaledOperator,
                               SumOperator,
                               as_operator,
                               check_repeated_products,
)
from .pyhessian_backend import pyhessian_density
from .results import DensityResult, EigenResult, TraceResult
from .subspace import subspace_eigenpairs
from .trace import hutchinson_trace, hutchpp_trace

__all__ = [
    "CURVATURES", "CurvatureOperator", "EmpiricalFisherOperator", "check_curvature_options",
    "curvature_term_of", "GGNOperator", "mode_cache", "probe_block_size",
    "DEFAULT_MODE", "L2_KINDS", "MODES", "WHICH", "DenseOperator", "DensityResult", "EigenResult",
    "HessianOperator", "Lanczos", "LinearOperator", "LossHessian", "ModeChoice",
    "PaperL2Hessian", "ScaledIdentity", "ScaledOperator", "SumOperator", "TraceResult",
    "as_operator",
    "check_repeated_products", "choose_mode", "dense_hessian", "eval_mode", "hutchinson_trace",
    "hutchpp_trace", "l2_hessian", "l2_penalty", "lanczos_eigenpairs", "lanczos_quadrature",
    "loss_hessian_of",
    "math_attention", "pyhessian_density", "select_names", "slq_density", "start_vector",
    "subspace_eigenpairs", "top_eigenvalues",
]
