"""WAL positions: the primary's, a streaming replica's replay position, and the lag they imply.

A position is a PostgreSQL WAL location (``pg_lsn``) as the number of bytes since ``0/0``, an
integer below 2**64; they only grow, across a failover too (the new timeline goes on from the
old one's position). They are what :mod:`cache.watermarks` calls source positions.

* The position of a change is a position at or past the end of its commit record. Read by
  another session once the change is visible, ``pg_current_wal_insert_lsn()`` always is: a
  transaction becomes visible only once its commit record is inserted. After the service's own
  commit, ``pg_current_wal_flush_lsn()`` is too, unless ``synchronous_commit`` is ``off`` (the
  commit waited for its record to be flushed); it is the tighter of the two, since a replica
  receives only flushed WAL, and :data:`COMMITTED_POSITION` takes it when it may.
* A replica's position is ``pg_last_wal_replay_lsn()``: the end of the last record it replayed.
  A statement whose snapshot is taken after the replica reported position P sees every
  transaction whose commit record ends at or before P. It is NULL on a server that never was
  in recovery; on a promoted one it stays where recovery ended.
* The lag of a replica is measured against the primary's flush position (what it could have
  received), sampled over time (:func:`replication_lag_seconds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlalchemy import Boolean, Numeric, literal_column, select

from service.statements import Read

#: The position of the service's own change, read once it has committed (see above).
COMMITTED_POSITION: Final = Read(
    select(
        literal_column(
            "CASE WHEN current_setting('synchronous_commit') = 'off'"
            " THEN pg_current_wal_insert_lsn() ELSE pg_current_wal_flush_lsn() END - '0/0'::pg_lsn",
            Numeric(),
        ).label("position")
    )
)

#: The primary's WAL insert and flush positions, in bytes.
PRIMARY_POSITIONS: Final = Read(
    select(
        literal_column("pg_current_wal_insert_lsn() - '0/0'::pg_lsn", Numeric()).label("inserted"),
        literal_column("pg_current_wal_flush_lsn() - '0/0'::pg_lsn", Numeric()).label("flushed"),
    )
)

#: The SQL of the position of every change visible to the statement that evaluates it.
INSERT_POSITION_SQL: Final = "pg_current_wal_insert_lsn() - '0/0'::pg_lsn"

#: Whether the server is in recovery (a standby), and its replay position in bytes (or NULL).
REPLAY_STATUS: Final = Read(
    select(
        literal_column("pg_is_in_recovery()", Boolean()).label("in_recovery"),
        literal_column("pg_last_wal_replay_lsn() - '0/0'::pg_lsn", Numeric()).label("replayed"),
    )
)

#: A replica's replay position in bytes (NULL when not in recovery), sent as it is on a
#: checked-out connection before a load's statement.
REPLAY_POSITION_SQL: Final = "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn"


def replication_lag_seconds(
    history: Sequence[tuple[float, int]], replayed: int, now: float
) -> float | None:
    """Return how long ago the primary first held WAL that a replica has not replayed yet.

    Args:
        history: samples of the primary's flush position, ``(time, position)`` oldest first,
            times in seconds on the clock of ``now``.
        replayed: the replica's replay position, in bytes.
        now: the time of the replica's sample, in seconds.

    Returns:
        0.0 when the replica has replayed every sampled position; else the age of the oldest
        sample past its replay position, in seconds (the replica misses WAL that the primary
        held then: it lags by at least that much, and by at most one sampling interval more).
        None without samples (nothing to compare with).
    """
    if not history:
        return None
    for sampled_at, position in history:
        if position > replayed:
            return max(0.0, now - sampled_at)
    return 0.0
