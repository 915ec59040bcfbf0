from __future__ import annotations

import pytest

from benchmarks.meters import Usage, median_usage

GET, MGET, EVAL = "redis_calls:get", "redis_calls:mget", "redis_calls:eval"


def assert_figures(got: Usage, expected: dict[str, float]) -> None:
    assert got.figures == pytest.approx(expected), (
        f"figures {dict(got.figures)}, expected {expected}"
    )


@pytest.mark.parametrize(
    ("window", "rates", "expected"),
    [
        pytest.param(
            Usage(10, {"redis_cpu_us": 5000, "pg_transactions": 40}),
            Usage(1, {"redis_cpu_us": 100, "pg_transactions": 2}),
            {"redis_cpu_us": 4000, "pg_transactions": 20},
            id="rate-times-window",
        ),
        pytest.param(
            Usage(2, {MGET: 3}),
            Usage(1, {MGET: 1, EVAL: 1, "pg_transactions": 2}),
            {MGET: 1},
            id="only-the-window-figures",
        ),
        pytest.param(
            Usage(4, {"pg_cpu_us": 100}),
            Usage(1, {"pg_cpu_us": 50}),
            {"pg_cpu_us": 0},
            id="never-below-zero",
        ),
    ],
)
def test_background_is_taken_off_the_window_figures_only(
    window: Usage, rates: Usage, expected: dict[str, float]
) -> None:
    got = window.minus_background(rates)
    assert got.seconds == window.seconds
    assert_figures(got, expected)


def test_merged_keeps_both_and_the_longer_window() -> None:
    got = Usage(1.5, {"redis_cpu_us": 10, GET: 2}).merged(Usage(11, {"pg_transactions": 3}))
    assert got.seconds == 11
    assert_figures(got, {"redis_cpu_us": 10, GET: 2, "pg_transactions": 3})


def test_divided_divides_every_figure() -> None:
    got = Usage(3, {"redis_cpu_us": 300, MGET: 6}).divided(3)
    assert_figures(got, {"redis_cpu_us": 100, MGET: 2})


def test_calls_are_named_without_their_prefix_most_first() -> None:
    got = Usage(1, {GET: 1, "redis_calls:sadd": 6, "redis_calls:evalsha": 2, "pg_cpu_us": 9})
    assert list(got.calls().items()) == [("sadd", 6), ("evalsha", 2), ("get", 1)]
    assert got.total_calls() == 9


@pytest.mark.parametrize(
    ("rounds", "expected"),
    [
        pytest.param(
            [Usage(1, {"redis_cpu_us": 7}), Usage(2, {"redis_cpu_us": 30}),
             Usage(3, {"redis_cpu_us": 9})],
            {"redis_cpu_us": 9},
            id="median-of-each",
        ),
        pytest.param(
            [Usage(1, {GET: 3}), Usage(1, {}), Usage(1, {GET: 1})],
            {GET: 1},
            id="a-command-not-run-counts-zero",
        ),
        pytest.param(
            [Usage(1, {"pg_cpu_us": 5}), Usage(1, {"pg_cpu_us": 7}), Usage(1, {})],
            {},
            id="a-figure-a-round-could-not-read-is-left-out",
        ),
    ],
)  # fmt: skip
def test_median_usage_takes_each_figure_alone(
    rounds: list[Usage], expected: dict[str, float]
) -> None:
    assert_figures(median_usage(rounds), expected)
