"""Each worker's report to the others: who it is and how busy its connection pools are.

Every worker of every instance reports itself in the ``workers`` group of a
:class:`cache.MemberRegistry` (member ``{instance}:{pid}``) with each statistics flush, so that
``/stats``, answered by any one worker, lists every live worker and sums their pools. A report
is ``{"instance": str, "pid": int, "started_at": RFC 3339, "db_pool": {size, checked_out,
checked_in, overflow}, "redis": {pool_in_use, pool_max}}``, and the figures of the parts that
add their own (``db_replicas``: see :mod:`service.replica_figures`; ``l1``: see
:mod:`service.near_figures`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from cache import KeyScheme, MemberRegistry, MemberReport
from cache.routing import RedisClient, connection_bound, connections_in_use

GROUP: Final = "workers"
#: A worker whose report is older than this many seconds is no longer listed (at least three
#: flush intervals, so that a flush delayed by a busy loop does not drop a live worker).
STALE_AFTER_SECONDS: Final = 5.0
DB_POOL_FIELDS: Final = ("size", "checked_out", "checked_in", "overflow")
REDIS_POOL_FIELDS: Final = ("pool_in_use", "pool_max")


def rfc3339(unix_seconds: float) -> str:
    """Return ``unix_seconds`` as RFC 3339 in UTC with a ``Z`` suffix (milliseconds)."""
    moment = datetime.fromtimestamp(unix_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def db_pool_figures(engine: AsyncEngine) -> dict[str, int]:
    """Return the SQLAlchemy pool's size, checked-out, checked-in and overflow connections."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):  # an engine made elsewhere, with a pool of no size
        return {"size": 0, "checked_out": 0, "checked_in": 0, "overflow": 0}
    return {
        "size": pool.size(),
        "checked_out": pool.checkedout(),
        "checked_in": pool.checkedin(),
        # QueuePool counts overflow from -size until the pool has made `size` connections.
        "overflow": max(0, pool.overflow()),
    }


def redis_pool_figures(redis: RedisClient) -> dict[str, int]:
    """Return the Redis client's busy connections and its bound (summed over a cluster's nodes)."""
    return {"pool_in_use": connections_in_use(redis), "pool_max": connection_bound(redis)}


def create_worker_registry(
    redis: RedisClient,
    scheme: KeyScheme,
    engine: AsyncEngine,
    *,
    instance: str,
    flush_interval_seconds: float,
    parts: Mapping[str, Callable[[], object]] | None = None,
) -> MemberRegistry:
    """Return this worker's registry in the ``workers`` group; its report reads the pools.

    The caller registers it as a flush part of the statistics and calls ``leave()`` on
    shutdown.

    Args:
        redis: the client; owned by the caller.
        scheme: the key scheme.
        engine: the request engine, whose pool is reported.
        instance: this instance's name.
        flush_interval_seconds: how often the statistics flush (and this report) runs.
        parts: more figures of the report, by name: each function returns a JSON value.
    """
    more = dict(parts or {})
    pid = os.getpid()
    started_at = rfc3339(time.time())

    def report() -> dict[str, Any]:
        return {
            "instance": instance,
            "pid": pid,
            "started_at": started_at,
            "db_pool": db_pool_figures(engine),
            "redis": redis_pool_figures(redis),
            **{name: figures() for name, figures in more.items()},
        }

    return MemberRegistry(
        redis,
        scheme,
        GROUP,
        f"{instance}:{pid}",
        report,
        stale_after_seconds=max(STALE_AFTER_SECONDS, 3 * flush_interval_seconds),
    )


def pool_lists(
    reports: Iterable[MemberReport],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the ``db_pool`` and ``redis`` pool figures: live workers listed and summed.

    Returns:
        ``({"size": sum, ..., "workers": [row, ...]}, {"pool_in_use": sum, "pool_max": sum,
        "workers": [row, ...]})``; each row holds ``instance``, ``pid``, ``started_at``,
        ``reported_at`` (RFC 3339) and the worker's figures.
    """
    db: dict[str, Any] = dict.fromkeys(DB_POOL_FIELDS, 0)
    rd: dict[str, Any] = dict.fromkeys(REDIS_POOL_FIELDS, 0)
    db_rows: list[dict[str, Any]] = []
    redis_rows: list[dict[str, Any]] = []
    for member in reports:
        report = member.report
        who = {
            "instance": report.get("instance"),
            "pid": report.get("pid"),
            "started_at": report.get("started_at"),
            "reported_at": rfc3339(member.reported_at),
        }
        db_rows.append({**who, **_figures(report.get("db_pool"), DB_POOL_FIELDS, db)})
        redis_rows.append({**who, **_figures(report.get("redis"), REDIS_POOL_FIELDS, rd)})
    db["workers"] = db_rows
    rd["workers"] = redis_rows
    return db, rd


def _figures(
    figures: Mapping[str, Any] | None, fields: Iterable[str], totals: dict[str, Any]
) -> dict[str, int]:
    row = {name: int((figures or {}).get(name) or 0) for name in fields}
    for name, value in row.items():
        totals[name] += value
    return row
