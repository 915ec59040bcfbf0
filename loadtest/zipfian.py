"""Zipf-distributed ranks, as YCSB draws its request keys.

The algorithm is YCSB's ``ZipfianGenerator`` (Cooper et al., "Benchmarking Cloud Serving
Systems with YCSB", SoCC 2010), itself from Gray et al., "Quickly Generating Billion-Record
Synthetic Databases", SIGMOD 1994: one uniform draw per rank, in constant time, after an O(n)
computation of the generalized harmonic number zeta(n, theta).
"""

from __future__ import annotations

import random

YCSB_THETA = 0.99
"""YCSB's default Zipf constant: rank 0 takes about 12 % of 2,000 items' draws."""


def zeta(n: int, theta: float) -> float:
    """Return the generalized harmonic number ``sum(1 / i**theta for i in 1..n)``."""
    return float(sum(1.0 / float(i) ** theta for i in range(1, n + 1)))


class ZipfianGenerator:
    """Draws ranks ``0 .. n-1``, rank ``k`` with a probability proportional to ``(k+1)**-theta``.

    Rank 0 is the most popular. Callers that want the popular items spread over their key space
    (YCSB's "scrambled" Zipfian) map ranks through a fixed permutation of their items.

    Not safe to share between threads; each simulated user should own one, with its own
    ``random.Random``.
    """

    def __init__(self, n: int, theta: float = YCSB_THETA, rng: random.Random | None = None) -> None:
        """Precompute the constants for ``n`` items.

        Args:
            n: Number of items, at least 1.
            theta: Zipf constant, in ``(0, 1)``; YCSB's default is 0.99.
            rng: Source of uniform draws; a new unseeded one when omitted.

        Raises:
            ValueError: ``n`` is below 1 or ``theta`` is outside ``(0, 1)``.
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if not 0.0 < theta < 1.0:
            raise ValueError(f"theta must be in (0, 1), got {theta}")
        self.n = n
        self.theta = theta
        self._rng = rng or random.Random()
        self._zetan = zeta(n, theta)
        self._alpha = 1.0 / (1.0 - theta)
        self._half_pow_theta = 0.5**theta
        zeta2 = zeta(2, theta)
        self._eta = (1.0 - (2.0 / n) ** (1.0 - theta)) / (1.0 - zeta2 / self._zetan) if n > 2 else 0
        # YCSB's closed form is an approximation from rank 2 on; with fewer items only the two
        # exact branches of next() are taken.

    def next(self) -> int:
        """Return the next rank, in ``0 .. n-1``."""
        u = self._rng.random()
        uz = u * self._zetan
        if uz < 1.0 or self.n == 1:
            return 0
        if uz < 1.0 + self._half_pow_theta or self.n == 2:
            return 1
        rank = int(self.n * (self._eta * u - self._eta + 1.0) ** self._alpha)
        return min(rank, self.n - 1)
