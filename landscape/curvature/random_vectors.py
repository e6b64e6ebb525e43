"""Seeded random vectors (float64, CPU generator) shared by the estimators."""
from __future__ import annotations

import torch


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def randn(n: int, seed_or_gen: int | torch.Generator, m: int | None = None) -> torch.Tensor:
    """Standard Gaussian float64 vector (n,) or matrix (n, m)."""
    g = seed_or_gen if isinstance(seed_or_gen, torch.Generator) else generator(seed_or_gen)
    return torch.randn((n,) if m is None else (n, m), generator=g, dtype=torch.float64)


def rademacher(n: int, gen: torch.Generator, m: int | None = None) -> torch.Tensor:
    """Random +-1 float64 vector (n,) or matrix (n, m)."""
    shape = (n,) if m is None else (n, m)
    return torch.randint(0, 2, shape, generator=gen, dtype=torch.int8).to(torch.float64) * 2 - 1
