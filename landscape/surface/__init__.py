"""Loss surfaces: loss and accuracy at ``theta0 + x*d1 (+ y*d2)`` over a grid, resumable HDF5.

Pieces: :mod:`.plan` (what a run chooses, and the pure, clock-injected measurement that picks
it), :mod:`.evaluate` (the evaluator: in-place perturbation, loop/vmap/worker evaluation),
:mod:`.layers` (BN folding, first-layer reuse), :mod:`.store` (the crash-safe result file) and
:mod:`.compute` (the resumable, distributable driver :func:`compute_surface`).
"""
from .compute import ESTIMATE_ABOVE, compute_surface, estimate_line
from .evaluate import SurfaceEvaluator
from .plan import PLAN_KEYS, Plan, measure_plan
from .store import (
    FORMAT,
    FORMAT_VERSION,
    SurfaceFile,
    SurfaceResult,
    file_bytes,
    grid_points,
    load_surface,
    parse_grid,
    read_directions_file,
    surface_shape,
    value_names,
    write_directions_file,
)

__all__ = ["ESTIMATE_ABOVE", "FORMAT", "FORMAT_VERSION", "PLAN_KEYS", "Plan", "SurfaceEvaluator",
           "SurfaceFile", "SurfaceResult", "compute_surface", "estimate_line", "file_bytes",
           "grid_points", "load_surface", "measure_plan", "parse_grid", "read_directions_file",
           "surface_shape", "value_names", "write_directions_file"]
