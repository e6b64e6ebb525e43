"""The one torch.distributed layer: rank, world size, sharding work items, gathering to the writer.

Launch with ``torchrun --nproc-per-node N -m landscape ...``; without torchrun everything degrades
to a single process (rank 0 of 1). gloo on CPU, NCCL on GPU. Surfaces and Hessian spectra both use
:func:`shard` (each rank takes items ``rank, rank + world, ...``) and :func:`gather_to_writer`.
"""
from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def is_distributed() -> bool:
    """True inside an initialized process group."""
    return dist.is_available() and dist.is_initialized()


def init_from_env(backend: str | None = None) -> bool:
    """Initialize the process group when launched by torchrun (WORLD_SIZE > 1); idempotent.

    Returns True when running distributed. The backend defaults to NCCL with CUDA, else gloo.
    """
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        from .errors import LandscapeError
        raise LandscapeError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} "
                             "not set: start a distributed run with torchrun "
                             "(torchrun --nproc-per-node N -m landscape ...)")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend)
    _stop_on_sigterm()
    atexit.register(finish)
    return True


def finish() -> None:
    """Destroy the process group (idempotent; a no-op in one process).

    Leaving it to interpreter teardown lets a gloo rank abort at exit ("terminate called without
    an active exception", exit -6) after its work is done, which torchrun reports as a failed
    job. :func:`init_from_env` registers this with :mod:`atexit`, so every entry point (CLI, API,
    scripts) leaves through it.
    """
    if is_distributed():
        dist.destroy_process_group()


class PeerStopped(Exception):
    """torchrun stopped the job (a SIGTERM to torchrun, or another rank ended); raised on the
    writer only, the other ranks exit quietly."""


def _stop_on_sigterm() -> None:
    """torchrun sends SIGTERM to every rank when the job is stopped (a SIGTERM or Ctrl-C to
    torchrun) or when one rank dies. The writer (rank 0) turns it into :class:`PeerStopped`, so
    the CLI says so in one line; every other rank exits quietly (``SystemExit(143)``, the
    status of a SIGTERM), so a stopped job prints one line, not one per rank. Either way
    ``finally`` blocks (locks, temp files) run."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        if not is_writer():
            raise SystemExit(128 + signal.SIGTERM)
        raise PeerStopped("stopped by SIGTERM from torchrun (the job was stopped, or another "
                          "rank ended)")

    with contextlib.suppress(ValueError):  # not the main thread: leave the default
        signal.signal(signal.SIGTERM, stop)


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_writer() -> bool:
    """Rank 0 writes files; the others compute and send."""
    return rank() == 0


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items`` (strided: rank, rank + world, ...)."""
    return list(items[rank()::world_size()])


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def gather_to_writer(obj: Any) -> list[Any] | None:
    """Collect one picklable object per rank on the writer (list in rank order); None elsewhere."""
    if not is_distributed():
        return [obj]
    out: list[Any] | None = [None] * world_size() if is_writer() else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_gather(obj: Any) -> list[Any]:
    """Every rank gets every rank's object (rank order)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In-place sum of a tensor over ranks (no-op in one process); returns it."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj: Any) -> Any:
    """The writer's object on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
