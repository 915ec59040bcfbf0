"""The replica lag measured from samples of the primary's WAL position."""

from __future__ import annotations

import pytest

from service.wal import replication_lag_seconds

HISTORY = [(100.0, 1_000), (101.0, 2_000), (103.0, 5_000)]


@pytest.mark.parametrize(
    ("history", "replayed", "now", "lag"),
    [
        ([], 0, 200.0, None),  # nothing to compare with
        (HISTORY, 5_000, 104.0, 0.0),  # replayed all the primary held
        (HISTORY, 9_000, 104.0, 0.0),  # past the newest sample
        (HISTORY, 4_999, 104.0, 1.0),  # misses what the primary held at 103
        (HISTORY, 1_500, 104.0, 3.0),  # misses what it held at 101
        (HISTORY, 999, 104.0, 4.0),  # misses even the oldest sample
        ([(100.0, 1_000)], 0, 99.0, 0.0),  # a clock step back never gives a negative lag
    ],
)
def test_lag_is_the_age_of_the_oldest_position_not_replayed(
    history: list[tuple[float, int]], replayed: int, now: float, lag: float | None
) -> None:
    assert replication_lag_seconds(history, replayed, now) == lag, (history, replayed, now)
