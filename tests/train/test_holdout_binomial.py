"""The exact (Clopper–Pearson) interval used for the FPR at the threshold on held-out reals."""

from __future__ import annotations

import math

import pytest

from dfscan.train.holdout.binomial import clopper_pearson


def test_edges_have_closed_forms():
    # k = 0: upper = 1 − (α/2)^(1/n); k = n: lower = (α/2)^(1/n)
    for n in (1, 10, 69, 1000):
        assert clopper_pearson(0, n) == (0.0, pytest.approx(1 - 0.025 ** (1 / n), abs=1e-12))
        assert clopper_pearson(n, n) == (pytest.approx(0.025 ** (1 / n), abs=1e-12), 1.0)


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [  # reference values: scipy.stats.beta.ppf(0.025, k, n−k+1), beta.ppf(0.975, k+1, n−k)
        (5, 20, 0.0865714691, 0.4910458717),
        (13, 69, 0.1043121690, 0.3006042281),
        (1, 1000, 2.531748749e-05, 0.005558924280),
    ],
)
def test_matches_the_beta_quantiles(k, n, lo, hi):
    got = clopper_pearson(k, n)
    assert got[0] == pytest.approx(lo, rel=1e-8)
    assert got[1] == pytest.approx(hi, rel=1e-8)


def test_interval_holds_the_rate_and_narrows_with_n():
    widths = []
    for n in (20, 200, 2000):
        lo, hi = clopper_pearson(n // 10, n)
        assert lo < 0.1 < hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    lo90, hi90 = clopper_pearson(5, 50, level=0.90)
    lo95, hi95 = clopper_pearson(5, 50)
    assert lo95 < lo90 and hi90 < hi95 and not math.isnan(lo90)


@pytest.mark.parametrize(("k", "n"), [(1, 0), (-1, 5), (6, 5)])
def test_impossible_counts_are_refused(k, n):
    with pytest.raises(ValueError):
        clopper_pearson(k, n)
