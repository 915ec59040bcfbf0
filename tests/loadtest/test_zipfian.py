"""The YCSB Zipfian draws: ranks in range, skewed as 1/(k+1)**theta, reproducible by seed."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from loadtest.zipfian import ZipfianGenerator, zeta


def test_draws_follow_the_zipf_law_within_ycsb_approximation() -> None:
    n, draws = 2000, 200_000
    generator = ZipfianGenerator(n, 0.99, random.Random(1))
    counts = Counter(generator.next() for _ in range(draws))
    assert min(counts) >= 0 and max(counts) <= n - 1
    total = zeta(n, 0.99)
    for rank in (0, 1, 9):
        expected = (rank + 1) ** -0.99 / total
        assert counts[rank] / draws == pytest.approx(expected, rel=0.1)
    top_100 = sum(counts[k] for k in range(100)) / draws
    assert top_100 == pytest.approx(sum((k + 1) ** -0.99 for k in range(100)) / total, rel=0.05)


def test_same_seed_draws_the_same_ranks() -> None:
    first = ZipfianGenerator(500, rng=random.Random(7))
    second = ZipfianGenerator(500, rng=random.Random(7))
    assert [first.next() for _ in range(1000)] == [second.next() for _ in range(1000)]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_few_items_draw_only_their_ranks(n: int) -> None:
    generator = ZipfianGenerator(n, rng=random.Random(3))
    assert set(generator.next() for _ in range(2000)) == set(range(n))


@pytest.mark.parametrize(("n", "theta"), [(0, 0.99), (10, 0.0), (10, 1.0)])
def test_bad_arguments_are_refused(n: int, theta: float) -> None:
    with pytest.raises(ValueError):
        ZipfianGenerator(n, theta)
