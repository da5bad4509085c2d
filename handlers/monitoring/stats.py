"""Drift statistics in the standard library: PSI over baseline bins and the two-sample KS test.

The Lambda layer has no numpy, so everything here is ``math`` and ``bisect``. Bin assignment
must match ``training_jobs.baselines`` exactly (a test checks both on the same data): a value
goes to bin ``bisect_right(edges, value)``, so the ``k`` interior edges give ``k + 1`` bins and
a value equal to an edge belongs to the bin above it.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

# An empty bin would make PSI infinite; both sides are floored at this proportion instead.
PSI_FLOOR = 1e-4


def bin_proportions(values: Sequence[float], edges: Sequence[float]) -> list[float]:
    """The share of ``values`` in each of the ``len(edges) + 1`` bins the interior edges define."""
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[bisect_right(edges, value)] += 1
    total = len(values)
    return [count / total for count in counts] if total else [0.0] * len(counts)


def psi(expected: Sequence[float], actual: Sequence[float], floor: float = PSI_FLOOR) -> float:
    """Population stability index: ``sum((a - e) * ln(a / e))`` over bins, proportions floored.

    ``expected`` is the baseline's bin proportions, ``actual`` the window's, bin for bin.
    """
    if len(expected) != len(actual):
        raise ValueError(f"{len(expected)} baseline bins but {len(actual)} observed bins")
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e_, a_ = max(e, floor), max(a, floor)
        total += (a_ - e_) * math.log(a_ / e_)
    return total


def ks_statistic(first: Sequence[float], second: Sequence[float]) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    if not first or not second:
        raise ValueError("the KS test needs two non-empty samples")
    a, b = sorted(first), sorted(second)
    n, m = len(a), len(b)
    i = j = 0
    gap = 0.0
    while i < n and j < m:
        # Step past every copy of the smaller value in both samples before comparing (ties).
        value = min(a[i], b[j])
        while i < n and a[i] == value:
            i += 1
        while j < m and b[j] == value:
            j += 1
        gap = max(gap, abs(i / n - j / m))
    return gap


def kolmogorov_survival(lam: float, terms: int = 100) -> float:
    """``Q_KS(lam) = 2 * sum_{k>=1} (-1)^(k-1) exp(-2 k^2 lam^2)``, clipped to [0, 1]."""
    if lam < 1e-3:
        return 1.0
    total = 0.0
    for k in range(1, terms + 1):
        term = 2.0 * (-1) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-12:
            break
    return min(max(total, 0.0), 1.0)


def ks_test(first: Sequence[float], second: Sequence[float]) -> tuple[float, float]:
    """``(D, p)``: the KS statistic and its asymptotic p-value (Stephens' small-sample correction).

    ``p = Q_KS((sqrt(ne) + 0.12 + 0.11 / sqrt(ne)) * D)`` with ``ne = n m / (n + m)``, as in
    Numerical Recipes' ``kstwo``.
    """
    statistic = ks_statistic(first, second)
    effective = math.sqrt(len(first) * len(second) / (len(first) + len(second)))
    return statistic, kolmogorov_survival((effective + 0.12 + 0.11 / effective) * statistic)


def mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None
