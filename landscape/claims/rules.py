"""The exact tests and intervals behind every verdict (the rules: :mod:`landscape.claims`).

Fixed on principle before looking at any data:

* :func:`mann_whitney_exact` - between families, the exact two-sided Mann-Whitney test over
  checkpoints (U, AUC = U/(n1 n2), p from the permutation distribution of the rank sum,
  counted by dynamic programming over (possibly tied, mid-) ranks; without ties it equals
  ``scipy.stats.mannwhitneyu(method="exact")``);
* :func:`sign_test_exact` - within a model, the exact two-sided sign test over checkpoints;
* :func:`jonckheere_exact` - a trend over ordered groups (data size), the exact two-sided
  Jonckheere-Terpstra test (the sum of the pairwise Mann-Whitney counts, its null distribution
  enumerated over every assignment of the observed values to groups of the observed sizes);
* :func:`welch_interval`, :func:`t_interval`, :func:`slope_interval` - the seed-level
  t-intervals (Welch-Satterthwaite between families, one-sample within a model, OLS slope with
  n-2 degrees of freedom for a trend);
* :func:`min_p` - the smallest two-sided p a test can reach at its n: when it is >= ``ALPHA``
  the row says so ("n=5 cannot reach p<0.05") and p < ``ALPHA`` is replaced by the most the test
  can show: every checkpoint (pair) pointing the same way.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import numpy as np

ALPHA = 0.05             # the exact test's level for "agrees" / "disagrees"


def _midranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values``, ties given their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    v = values[order]
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[j + 1] == v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def _subset_sum_counts(scores: Sequence[int], k: int) -> dict[int, int]:
    """{s: number of k-subsets of ``scores`` summing to s} (dynamic programming)."""
    table: list[dict[int, int]] = [dict() for _ in range(k + 1)]
    table[0][0] = 1
    for sc in scores:
        for size in range(k, 0, -1):
            prev = table[size - 1]
            cur = table[size]
            for s, c in prev.items():
                cur[s + sc] = cur.get(s + sc, 0) + c
    return table[k]


def mann_whitney_exact(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """(U, AUC, p): ``U`` = #{x_i > y_j} + ½·#{x_i = y_j}, AUC = U/(n1·n2), and the exact
    two-sided p = min(1, 2·min(P(U' <= U), P(U' >= U))) under the permutation distribution of
    the rank sum of ``x`` (every n1-subset of the pooled mid-ranks equally likely; Mann & Whitney
    1947). Raises ValueError for an empty side."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError("mann_whitney_exact needs two non-empty samples")
    u = float(sum((ai > bj) + 0.5 * (ai == bj) for ai in a for bj in b))
    ranks = _midranks(np.concatenate([a, b]))
    twice = [int(round(2 * r)) for r in ranks]          # mid-ranks are multiples of 1/2
    counts = _subset_sum_counts(twice, n1)
    total = math.comb(n1 + n2, n1)
    obs = sum(twice[:n1])
    lo = sum(c for s, c in counts.items() if s <= obs) / total
    hi = sum(c for s, c in counts.items() if s >= obs) / total
    return u, u / (n1 * n2), min(1.0, 2.0 * min(lo, hi))


def sign_test_exact(values: Sequence[float]) -> tuple[int, int, float]:
    """(positives, non-zero values, exact two-sided p): the binomial(n, ½) test of the signs,
    p = min(1, 2·min(P(K <= k), P(K >= k))); zeros are left out. n = 0 gives p = 1."""
    v = [float(t) for t in values if float(t) != 0.0]
    n, k = len(v), sum(t > 0 for t in v)
    if n == 0:
        return 0, 0, 1.0
    lo = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    hi = sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n
    return k, n, min(1.0, 2.0 * min(lo, hi))


def _jt_stat(groups: Sequence[Sequence[float]]) -> float:
    """Jonckheere-Terpstra J: the sum over ordered group pairs i < j of #{x_i < x_j} + ½ ties."""
    s = 0.0
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            s += sum((a < b) + 0.5 * (a == b) for a in groups[i] for b in groups[j])
    return s


def jonckheere_exact(groups: Sequence[Sequence[float]], max_assignments: int = 200_000
                     ) -> tuple[float, float, float]:
    """(J, J/max, exact two-sided p) for a monotone trend across ``groups`` in their order
    (Jonckheere 1954): J counts the pairs from a lower and a higher group ordered upwards (ties
    ½); J/max = J over the number of such pairs (1: perfectly rising, 0: perfectly falling); p
    from every assignment of the pooled values to groups of the observed sizes (at most
    ``max_assignments``; ValueError beyond)."""
    gs = [list(map(float, g)) for g in groups if len(g)]
    sizes = [len(g) for g in gs]
    pooled = [v for g in gs for v in g]
    n_pairs = sum(sizes[i] * sizes[j] for i in range(len(sizes))
                  for j in range(i + 1, len(sizes)))
    if len(gs) < 2 or n_pairs == 0:
        raise ValueError("jonckheere_exact needs at least two non-empty groups")
    total = math.factorial(len(pooled))
    for s in sizes:
        total //= math.factorial(s)
    if total > max_assignments:
        raise ValueError(f"jonckheere_exact: {total} assignments > {max_assignments}")
    obs = _jt_stat(gs)
    labels = np.array(_assignments(sizes), dtype=np.int8)            # (A, N) group of each value
    v = np.asarray(pooled)
    cmp = (v[:, None] < v[None, :]) + 0.5 * (v[:, None] == v[None, :])   # value i below j
    js = np.einsum("aij,ij->a", (labels[:, :, None] < labels[:, None, :]).astype(np.float64),
                   cmp)
    le = int((js <= obs + 1e-9).sum())
    ge = int((js >= obs - 1e-9).sum())
    return obs, obs / n_pairs, min(1.0, 2.0 * min(le, ge) / total)


def _assignments(sizes: Sequence[int]) -> list[list[int]]:
    """Every way to give the positions 0..N-1 to groups of ``sizes`` (a group index per
    position)."""
    n = sum(sizes)
    out: list[list[int]] = []

    def fill(rest: list[int], k: int, lab: list[int]) -> None:
        if k == len(sizes) - 1:
            for i in rest:
                lab[i] = k
            out.append(list(lab))
            return
        for pick in combinations(rest, sizes[k]):
            for i in pick:
                lab[i] = k
            fill([i for i in rest if i not in pick], k + 1, lab)

    fill(list(range(n)), 0, [0] * n)
    return out


def min_p(test: str, sizes: Sequence[int]) -> float:
    """The smallest exact two-sided p ``test`` can give at these sizes: "sign" (n) 2·½ⁿ,
    "mann-whitney" (n1, n2) 2/C(n1+n2, n1), "jonckheere" (group sizes) 2·∏nᵢ!/N! (untied)."""
    if test == "sign":
        return min(1.0, 2.0 * 0.5 ** sizes[0]) if sizes[0] else 1.0
    if test == "mann-whitney":
        return min(1.0, 2.0 / math.comb(sizes[0] + sizes[1], sizes[0]))
    if test == "jonckheere":
        total = math.factorial(sum(sizes))
        for s in sizes:
            total //= math.factorial(s)
        return min(1.0, 2.0 / total)
    raise ValueError(f"unknown test {test!r}")


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """mean ± t(n-1)·sd/√n; None for fewer than two values."""
    from scipy.stats import t as student_t
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return None
    m, se = float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))
    h = float(student_t.ppf(0.5 + level / 2.0, len(v) - 1)) * se
    return m - h, m + h


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95
                   ) -> tuple[float, float] | None:
    """Welch's interval for mean(a) - mean(b) (Welch-Satterthwaite degrees of freedom); None
    when a side has fewer than two values."""
    from scipy.stats import t as student_t
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(x) < 2 or len(y) < 2:
        return None
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    d = float(x.mean() - y.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return d, d
    df = (va + vb) ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(y) - 1))
    h = float(student_t.ppf(0.5 + level / 2.0, df)) * se
    return d - h, d + h


def slope_interval(x: Sequence[float], y: Sequence[float], level: float = 0.95
                   ) -> tuple[float, tuple[float, float] | None]:
    """(OLS slope of y on x, its t-interval with n-2 degrees of freedom; None for n < 3 or
    fewer than two distinct x)."""
    from scipy.stats import t as student_t
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    sxx = float(((xs - xs.mean()) ** 2).sum())
    if len(xs) < 2 or sxx == 0:
        return float("nan"), None
    b = float(((xs - xs.mean()) * (ys - ys.mean())).sum() / sxx)
    if len(xs) < 3:
        return b, None
    resid = ys - ys.mean() - b * (xs - xs.mean())
    se = math.sqrt(float((resid ** 2).sum()) / (len(xs) - 2) / sxx)
    h = float(student_t.ppf(0.5 + level / 2.0, len(xs) - 2)) * se
    return b, (b - h, b + h)


def decide(lo: float, hi: float, null: float, direction: int, favour_share: float, p: float,
           reachable: bool, seed_level: bool = True) -> str:
    """The verdict (``landscape.claims``): "agrees" when the interval [lo, hi] excludes ``null``
    on the paper's side (``direction``), the exact test's statistic leans that way
    (``favour_share`` > ½: AUC, share of positive signs, J/max, all oriented to the paper) and its
    p < ALPHA; "disagrees" the mirror image; "inconclusive" otherwise, and always without a
    seed-level interval. Where the test cannot reach p < ALPHA at this n (``reachable`` False,
    e.g. a sign test over 5 checkpoints: at best p = 0.0625) p < ALPHA is not required, but the
    test must show the most it can: every checkpoint (pair) the same way (``favour_share`` 1 or
    0); the row says so."""
    from .evidence import AGREES, DISAGREES, INCONCLUSIVE
    if not (seed_level and math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    lo_d, hi_d = sorted((direction * (lo - null), direction * (hi - null)))
    if lo_d > 0 and (p < ALPHA and favour_share > 0.5 if reachable else favour_share >= 1.0):
        return AGREES
    if hi_d < 0 and (p < ALPHA and favour_share < 0.5 if reachable else favour_share <= 0.0):
        return DISAGREES
    return INCONCLUSIVE
