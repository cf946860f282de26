"""The one-sided Mann-Whitney U test the judge compares canary and stable samples with.

scipy.stats.mannwhitneyu(x, y, alternative="greater") answered this before, but scipy and
numpy were most of the operator's image for some twenty lines of arithmetic. This module gives
scipy's p-values (method="auto", use_continuity=True) with the standard library alone:

- exact, when either sample has at most 8 values and no value occurs twice: the share of the
  C(n1 + n2, n1) equally likely rank arrangements whose U is at least the observed one,
  counted in integers (the coefficients of a Gaussian binomial), so no rounding until the end;
- otherwise the normal approximation, with scipy's tie correction of the variance and its
  continuity correction of 0.5.

hack/stats/compare.py checks both against scipy on random samples wherever scipy is installed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

EXACT_UP_TO = 8  # scipy's 'auto': exact when either sample is this small and nothing is tied


def ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) and the size of every group of equal values:
    ranks([3.0, 1.0, 3.0]) == ([2.5, 1.0, 2.5], [1, 2])."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranked = [0.0] * len(values)
    groups: list[int] = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start:end + 1]:
            ranked[i] = (start + end) / 2 + 1
        groups.append(end - start + 1)
        start = end + 1
    return ranked, groups


@lru_cache(maxsize=64)
def u_counts(n1: int, n2: int) -> tuple[int, ...]:
    """How many of the C(n1 + n2, n1) arrangements give U = 0, 1, ..., n1 * n2: the coefficients
    of the Gaussian binomial [n1 + n2 choose n1]_q = prod_i (1 - q^(n2 + i)) / (1 - q^i).
    u_counts(2, 2) == (1, 1, 2, 1, 1)."""
    small, large = min(n1, n2), max(n1, n2)
    top = small * large
    poly = [1]
    for i in range(1, small + 1):
        grown = poly + [0] * (large + i)
        for k, c in enumerate(poly):  # times (1 - q^(large + i))
            grown[k + large + i] -= c
        for k in range(i, len(grown)):  # divided by (1 - q^i): exact, the product is a polynomial
            grown[k] += grown[k - i]
        poly = grown[:top + 1]
    return tuple(poly)


def _exact(u: int, n1: int, n2: int) -> float:
    counts = u_counts(n1, n2)
    at_least = sum(counts[max(u, 0):])
    return at_least / math.comb(n1 + n2, n1)  # int / int: correctly rounded


def _normal(u: float, n1: int, n2: int, groups: list[int]) -> float:
    n = n1 + n2
    tie_term = float(sum(t ** 3 - t for t in groups))
    variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))
    numerator = u - n1 * n2 / 2 - 0.5  # continuity: the mass at U itself counts as at least U
    if variance <= 0:  # every value the same: U sits at its mean, and nothing is shifted
        return 1.0 if numerator <= 0 else 0.0
    z = numerator / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2))  # the normal survival function at z


def greater(x: Sequence[float], y: Sequence[float]) -> float:
    """The p-value that x is not stochastically greater than y (small: x is greater).
    x and y hold no NaN; ±Inf is data. Raises ValueError for an empty sample."""
    n1, n2 = len(x), len(y)
    if not n1 or not n2:
        raise ValueError("the Mann-Whitney test needs at least one value in each sample")
    ranked, groups = ranks([*x, *y])
    u = sum(ranked[:n1]) - n1 * (n1 + 1) / 2
    exact = min(n1, n2) <= EXACT_UP_TO and max(groups) == 1
    p = _exact(round(u), n1, n2) if exact else _normal(u, n1, n2, groups)
    return min(1.0, max(0.0, p))
