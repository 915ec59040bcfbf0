from __future__ import annotations

import pytest

from benchmarks.measure import Measurement, parse
from benchmarks.near import (
    HIT_TARGETS,
    WriteResult,
    bucket_quantile,
    histogram_buckets,
    histogram_totals,
    l1_size_bytes,
    l1_totals,
    options,
    write_findings,
    write_rows,
)

METRICS = """\
# HELP content_cache_l1_ack_wait_seconds How long writes waited for holders' acknowledgements.
# TYPE content_cache_l1_ack_wait_seconds histogram
content_cache_l1_ack_wait_seconds_bucket{le="0.001"} 3.0
content_cache_l1_ack_wait_seconds_bucket{le="+Inf"} 5.0
content_cache_l1_ack_wait_seconds_sum 0.012
content_cache_l1_ack_wait_seconds_count 5.0
content_cache_l1_ack_wait_seconds_sum{pid="2"} 0.003
content_cache_l1_ack_wait_seconds_count{pid="2"} 1.0
content_cache_l1_ack_wait_seconds_sumless 99.0
# HELP content_cache_invalidation_seconds How long each invalidation message took.
# TYPE content_cache_invalidation_seconds histogram
content_cache_invalidation_seconds_bucket{le="0.001",pid="1"} 3.0
content_cache_invalidation_seconds_bucket{le="0.002",pid="1"} 4.0
content_cache_invalidation_seconds_bucket{le="+Inf",pid="1"} 4.0
content_cache_invalidation_seconds_count{pid="1"} 4.0
content_cache_invalidation_seconds_sum{pid="1"} 0.004
content_cache_invalidation_seconds_bucket{le="0.001",pid="2"} 1.0
content_cache_invalidation_seconds_bucket{le="0.002",pid="2"} 2.0
content_cache_invalidation_seconds_bucket{le="+Inf",pid="2"} 3.0
content_cache_invalidation_seconds_count{pid="2"} 3.0
content_cache_invalidation_seconds_sum{pid="2"} 0.5
"""
#: One round's invalidations, cumulative counts by bound: p50 0.5 ms, p99 1 ms.
FAST = {0.0005: 50.0, 0.001: 99.0, 0.002: 100.0, float("inf"): 100.0}
#: p50 1 ms, p99 2.5 ms (1.5 ms above FAST's).
SLOWER = {0.001: 50.0, 0.002: 98.0, 0.003: 100.0, float("inf"): 100.0}
#: p50 1 ms, p99 4.7 ms (3.7 ms above FAST's).
SLOWEST = {0.001: 50.0, 0.002: 90.0, 0.005: 100.0, float("inf"): 100.0}


def measurement(p50_ms: float, p99_ms: float, p999_ms: float, **details: int) -> Measurement:
    return Measurement(
        requests=1000, seconds=10.0, p50_us=int(p50_ms * 1000), p99_us=int(p99_ms * 1000),
        p999_us=int(p999_ms * 1000), cpu_us_per_request=2500.0, socket_errors=0,
        statuses={"200": 1000}, details=dict(details),
    )  # fmt: skip


def test_l1_size_is_the_mean_entry_times_the_entries() -> None:
    assert l1_size_bytes(9289.4, 1000) == 9_289_400
    assert l1_size_bytes(0.2, 1) == 1, "a size of 0 would turn the L1 off"


def test_histogram_totals_add_every_label_set_and_ignore_other_names() -> None:
    got = histogram_totals(METRICS, "content_cache_l1_ack_wait_seconds")
    assert got == pytest.approx((0.015, 6.0)), got


def test_histogram_buckets_add_every_label_set_by_bound() -> None:
    got = histogram_buckets(METRICS, "content_cache_invalidation_seconds")
    assert got == {0.001: 4.0, 0.002: 6.0, float("inf"): 7.0}
    assert histogram_buckets(METRICS, "content_cache_other_seconds") == {}


def test_bucket_quantile_interpolates_within_the_bucket_as_prometheus_does() -> None:
    assert bucket_quantile(FAST, 0.5) == pytest.approx(0.0005)
    assert bucket_quantile(FAST, 0.99) == pytest.approx(0.001)
    assert bucket_quantile(SLOWER, 0.99) == pytest.approx(0.0025)
    assert bucket_quantile(SLOWEST, 0.99) == pytest.approx(0.0047)


def test_bucket_quantile_in_the_last_bucket_is_the_largest_bound_and_none_of_nothing() -> None:
    assert bucket_quantile({0.001: 1.0, float("inf"): 10.0}, 0.99) == 0.001
    assert bucket_quantile({0.001: 0.0, float("inf"): 0.0}, 0.5) is None
    assert bucket_quantile({}, 0.5) is None


def test_histogram_totals_of_an_absent_histogram_are_zero() -> None:
    assert histogram_totals(METRICS, "content_cache_l1_other_seconds") == (0.0, 0.0)


def test_l1_totals_sum_the_workers_and_default_to_zero() -> None:
    stats = {
        "cache": {"hits": 10, "l1_hits": 7},
        "l1": {"max_bytes": 1000, "bytes": 900, "entries": 3, "workers": [
            {"pid": 1, "bytes": 400, "entries": 1, "evictions": 5},
            {"pid": 2, "bytes": 500, "entries": 2, "evictions": 6},
        ]},
    }  # fmt: skip
    assert l1_totals(stats) == {
        "max_bytes": 1000, "bytes": 900, "entries": 3, "holders": 2, "evictions": 11,
        "l1_hits": 7,
    }  # fmt: skip
    assert l1_totals({"cache": {}}) == {
        "max_bytes": 0,
        "bytes": 0,
        "entries": 0,
        "holders": 0,
        "evictions": 0,
        "l1_hits": 0,
    }


def test_wrk_output_counts_cache_status_details_and_the_l1_check_reads_them() -> None:
    output = "\n".join([
        "@ requests 10", "@ duration_us 1000000", "@ errors 0", "@ p50 100", "@ p99 200",
        "@ p99.9 300", "@ statuses:200 10", "@ caches:HIT 10", "@ details:l1 6",
        "@ details:- 3", "@ details:stale 1",
    ])  # fmt: skip
    m = parse(output, cpu_seconds=0.001)
    assert m.details == {"l1": 6, "-": 3, "stale": 1}
    l1_1pct = next(s for s in HIT_TARGETS if s.name == "l1_1pct")
    assert l1_1pct.check_share("l1", m) == pytest.approx(0.6)
    assert l1_1pct.check_share("HIT", m) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("argv", "parts"),
    [
        pytest.param([], ["hits", "writes", "soak"], id="every-part"),
        pytest.param(["--skip-soak"], ["hits", "writes"], id="skip-soak"),
        pytest.param(["--only", "soak,hits"], ["hits", "soak"], id="only-in-order"),
        pytest.param(["--only", "soak", "--skip-soak"], [], id="only-the-skipped"),
    ],
)
def test_options_choose_the_parts(argv: list[str], parts: list[str]) -> None:
    assert options(argv).parts == parts


@pytest.mark.parametrize(
    "argv", [["--only", "reads"], ["--soak-seconds", "5"]], ids=["unknown-part", "short-soak"]
)
def test_options_refuse(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        options(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def write_results(w4_p99_ms: float, w4_invalidations: dict[float, float]) -> dict[str, WriteResult]:
    w0 = WriteResult("w0_idle", "w0", False, 0, [measurement(3, 6, 8), measurement(4, 7, 9),
                                                  measurement(5, 50, 60)],
                     ack_waits=[(0.0, 0.0)] * 3, invalidations=[FAST] * 3)  # fmt: skip
    w4 = WriteResult("w4_idle", "w4", False, 4, [measurement(4, w4_p99_ms, 12)] * 3,
                     ack_waits=[(1.0, 1000.0), (0.0, 0.0), (3.0, 1500.0)],
                     invalidations=[w4_invalidations, SLOWEST, w4_invalidations])  # fmt: skip
    return {"w0_idle": w0, "w4_idle": w4}


def test_write_findings_take_the_difference_of_the_medians() -> None:
    lines = write_findings(write_results(w4_p99_ms=8.5, w4_invalidations=SLOWER))
    assert lines == [
        "w4_idle - w0_idle: +0.00 ms p50, +1.50 ms p99, +3.00 ms p99.9"
        " (w0_idle's p99 over the rounds: 6.00 to 50.00 ms)",
        "invalidation, w4_idle - w0_idle: +0.50 ms p50, +1.50 ms p99"
        " (goal: p99 +≤ 2 ms with 4 holders: met)",
    ]


def test_write_findings_judge_the_goal_on_the_invalidations() -> None:
    (_, line) = write_findings(write_results(w4_p99_ms=8.5, w4_invalidations=SLOWEST))
    assert line.endswith("+3.70 ms p99 (goal: p99 +≤ 2 ms with 4 holders: NOT met)"), line


def test_write_rows_show_the_waits_per_write_and_their_mean() -> None:
    rows = write_rows(list(write_results(w4_p99_ms=8.5, w4_invalidations=SLOWER).values()))
    header, w0, w4 = rows
    wait, waited = header.index("wait ms"), header.index("waits/write")
    assert (w0[wait], w4[wait]) == ("-", "1.50"), "median of 1 ms and 2 ms per wait"
    assert (w0[waited], w4[waited]) == ("0.00", "1.00"), "median of 1, 0 and 1.5 per write"
    assert w4[header.index("p99 ms")] == "8.50"
    assert w0[header.index("holders")] == "0"
    p50, p99 = header.index("invalidation p50 ms"), header.index("invalidation p99 ms")
    assert (w0[p50], w0[p99], w4[p50], w4[p99]) == ("0.50", "1.00", "1.00", "2.50")


def test_write_findings_say_when_the_invalidations_were_not_measured() -> None:
    results = write_results(w4_p99_ms=8.5, w4_invalidations=SLOWER)
    results["w4_idle"].invalidations = []
    (_, line) = write_findings(results)
    assert line == "invalidation, w4_idle - w0_idle: not measured (goal: not judged)"
