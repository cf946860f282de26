"""The judge's Mann-Whitney U (sluice.analysis.mannwhitney) on fixed samples. The expected
p-values were computed with scipy 1.17.1, scipy.stats.mannwhitneyu(x, y, alternative="greater")
(method "auto"), and are kept here so that this suite needs no scipy; hack/stats/compare.py
checks random samples against scipy itself wherever it is installed."""

from __future__ import annotations

import math

import pytest

from sluice.analysis.mannwhitney import greater, ranks, u_counts

INF = math.inf

CASES = {
    # name: (x, y, scipy's p-value)
    "exact, four above three": ([3.1, 4.2, 5.0, 6.3], [1.0, 2.0, 2.5], 0.02857142857142857),
    "exact, interleaved": ([19.0, 22.0, 16.0, 29.0, 24.0], [20.0, 11.0, 17.0, 12.0], 0.05555555555555555),
    "exact, x below every y": ([1.0, 2.0, 3.0], [float(i) for i in range(4, 14)], 1.0),
    "ties: normal approximation with tie correction": ([1.0, 2.0, 2.0, 3.0, 5.0], [2.0, 3.0, 4.0, 4.0, 6.0],
                                                       0.9166963029858367),
    "large, no ties: normal approximation": ([float(i) for i in range(10, 30)], [float(i) for i in range(25)],
                                             0.0008715124551262836),
    "every value the same": ([5.0] * 3, [5.0] * 3, 1.0),
    "+Inf is data, and ties with itself": ([INF] * 3 + [1.0], [0.5, 0.7, 0.9, 1.1], 0.027257239321914303),
}


@pytest.mark.parametrize("x, y, expected", CASES.values(), ids=CASES.keys())
def test_p_values_are_scipys(x: list[float], y: list[float], expected: float) -> None:
    exact = min(len(x), len(y)) <= 8 and len(set(x + y)) == len(x) + len(y)
    assert greater(x, y) == pytest.approx(expected, abs=1e-12 if exact else 1e-9)


def test_ranks_average_ties() -> None:
    assert ranks([3.0, 1.0, 3.0]) == ([2.5, 1.0, 2.5], [1, 2])
    assert ranks([INF, -INF, 0.0]) == ([3.0, 1.0, 2.0], [1, 1, 1])


def test_u_counts_are_the_arrangements() -> None:
    assert u_counts(2, 2) == (1, 1, 2, 1, 1)  # the 6 ways two of four ranks can fall
    for n1, n2 in ((1, 5), (3, 4), (8, 9)):
        counts = u_counts(n1, n2)
        assert sum(counts) == math.comb(n1 + n2, n1) and counts == counts[::-1] and len(counts) == n1 * n2 + 1


def test_an_empty_sample_is_refused() -> None:
    with pytest.raises(ValueError):
        greater([], [1.0])
