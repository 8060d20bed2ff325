"""A rate's exact 95 % interval (Clopper–Pearson), torch-free and dependency-free.

Used for the false-positive rate on held-out reals at a detector's threshold: with a few dozen
reals per fold a rate of 0 % or 6 % says little without its interval, and the exact interval
never undercovers (Wilson's can, for rates near 0, which is where a good threshold sits).
"""

from __future__ import annotations

import math


def _cdf(k: int, n: int, p: float) -> float:
    """P(X ≤ k) for X ~ Binomial(n, p), summed in log space (n may be thousands)."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    terms = [
        base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        for i in range(k + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def _solve(f, target: float) -> float:
    """The p in [0, 1] where the decreasing function f crosses ``target`` (bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval of a rate of ``k`` events in ``n`` trials.

    The lower bound is the p at which k or more events have probability (1 − level)/2, the
    upper the p at which k or fewer have it; 0 and 1 at the edges (k = 0, k = n).
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    alpha = (1.0 - level) / 2
    lower = 0.0 if k == 0 else _solve(lambda p: _cdf(k - 1, n, p), 1.0 - alpha)
    upper = 1.0 if k == n else _solve(lambda p: _cdf(k, n, p), alpha)
    return lower, upper
