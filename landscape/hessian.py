"""Compatibility module: the curvature code lives in :mod:`landscape.curvature` (one module per
piece: operators, the loss Hessian, L2 terms, product modes, Lanczos, warm-started subspace
solver, trace, SLQ density, results, the pyhessian backend). Importing from here keeps working."""
from .curvature import *  # noqa: F401,F403
from .curvature import __all__  # noqa: F401
