"""The statistics a dashboard polls (``/stats``) and Prometheus scrapes (``/metrics``).

One poll costs no PostgreSQL query (the outbox backlog is sampled in the background, see
:mod:`service.backlog`) and one pipelined Redis round trip of a fixed number of commands:
this worker's unsent counts, the counters hash, the two rate-bucket hashes, the workers'
reports, the running and the last warming job (one script), and ``INFO memory``, ``INFO
stats`` and ``DBSIZE`` (of each master, on a Redis Cluster, the figures summed). The near
caches' figures (``l1``) ride the workers' reports: they cost no command of their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.asyncio.cluster import RedisCluster
from starlette.requests import Request
from starlette.responses import Response

from cache import CacheUnavailableError, MemberReport
from cache.routing import AnyPipeline
from service.endpoints import ctx
from service.keyspaces import NAMESPACES
from service.metrics import CONTENT_TYPE
from service.near_figures import near_stats, tier_figures
from service.replica_figures import replica_stats
from service.responses import json_response, no_query
from service.state import AppState
from service.workers import pool_lists, rfc3339


async def stats(request: Request) -> Response:
    """The cache, rates, pools, Redis, outbox, warming, replicas and near caches of ``/stats``."""
    state = ctx(request)
    state.auth.require_stats(request)
    no_query(request)
    workers = state.workers
    # A cluster's figures are sums over its masters: each is asked in the same round trip.
    servers = state.redis.get_primaries() if isinstance(state.redis, RedisCluster) else [None]

    def queue_reads(pipe: AnyPipeline) -> None:
        workers.queue_read(pipe)
        state.warming.jobs.queue_summary(pipe)
        for node in servers:
            if node is None:
                # Command names as bytes: redis-py then leaves the replies raw. Its INFO parser
                # converts all of a section's fields, which cost a poll more than the rest.
                pipe.execute_command(b"INFO", b"memory")
                pipe.execute_command(b"INFO", b"stats")
                pipe.execute_command(b"DBSIZE")
            else:  # the cluster pipeline routes by name, and takes only text ones
                pipe.execute_command("INFO", "memory", target_nodes=node)
                pipe.execute_command("INFO", "stats", target_nodes=node)
                pipe.execute_command("DBSIZE", target_nodes=node)

    # Concurrent polls share one round trip, and so one reading: it is copied, not changed.
    reading = await state.stats.read(NAMESPACES, queue_reads, share="stats")
    cache = {
        **reading.counters,
        "tiers": tier_figures(reading.counters),
        "invalidation_failures": state.unit_of_work.invalidation_failures,
    }
    # This worker's own row is always fresh, and present even before its first heartbeat.
    me = workers.report_now()
    redis: dict[str, Any] = {
        "used_memory_bytes": None,
        "keys": None,
        "evicted_keys": None,
        "available": reading.replies is not None,
    }
    live: list[MemberReport] = [me]
    warming: dict[str, Any] = UNKNOWN_WARMING
    if reading.replies is not None:
        # A command Redis refused (e.g. INFO under an ACL) leaves its figures None.
        members_reply, jobs, *per_server = (
            None if isinstance(r, Exception) else r for r in reading.replies
        )
        if jobs is not None:
            warming = await warming_figures(state, jobs)
        if members_reply is not None:
            found = workers.parse(members_reply, reading.read_at)
            live = sorted(
                [m for m in found.live if m.member != me.member] + [me], key=lambda m: m.member
            )
            if found.stale:
                await workers.prune(found.stale)
        memory, info_stats, keys = per_server[0::3], per_server[1::3], per_server[2::3]
        redis.update(
            used_memory_bytes=summed(info_field(r, "used_memory") for r in memory),
            keys=summed(None if r is None else int(r) for r in keys),
            evicted_keys=summed(info_field(r, "evicted_keys") for r in info_stats),
        )
    db_pool, pools = pool_lists(live)
    redis.update(pools)
    return json_response(
        {
            "cache": cache,
            "rates": reading.rates,
            "db_pool": db_pool,
            "redis": redis,
            "outbox": outbox_figures(state),
            "breakers": {
                b.name: {"state": b.state.value, "opened": b.opened_count}
                for b in (state.redis_breaker, state.database_breaker)
            },
            "warming": warming,
            "db_replicas": replica_stats(state.replicas, live),
            "l1": near_stats(
                live,
                lease_ms=state.bus.lease_ms,
                lease_check=state.settings.cache_l1_lease_check,
            ),
        }
    )


def summed(figures: Iterable[int | None]) -> int | None:
    """Return the sum of ``figures`` (one per server); None when any of them is None."""
    total = 0
    for figure in figures:
        if figure is None:
            return None
        total += figure
    return total


def info_field(reply: bytes | str | dict[str, Any] | None, name: str) -> int | None:
    """Return the integer field ``name`` of an ``INFO`` reply, raw or parsed; None if absent."""
    if reply is None:
        return None
    if isinstance(reply, dict):
        value = reply.get(name)
        return None if value is None else int(value)
    raw = reply.encode() if isinstance(reply, str) else reply
    start = raw.find(b"\n" + name.encode() + b":")
    if start < 0:
        return None
    start += len(name) + 2
    end = raw.find(b"\r", start)
    return int(raw[start : end if end >= 0 else None])


def outbox_figures(state: AppState) -> dict[str, Any]:
    """Return the last outbox sample (None figures before the first) and this worker's relay.

    ``backlog`` (rows) and ``lag_seconds`` (age of the oldest row) are as of ``sampled_at``
    (RFC 3339), at most the sample interval old unless sampling fails (``sample_failures``).
    """
    sample = state.backlog.latest
    return {
        "backlog": None if sample is None else sample.backlog,
        "lag_seconds": None if sample is None else sample.lag_seconds,
        "sampled_at": None if sample is None else rfc3339(sample.sampled_at),
        "sample_failures": state.backlog.failures,
        "applied": state.relay.applied,
        "failures": state.relay.failures,
        "listening": state.relay.listening,
    }


#: What ``/stats`` says of warming when Redis cannot say: no job known to run.
UNKNOWN_WARMING: dict[str, Any] = {
    "state": "idle",
    "current": None,
    "last_run": None,
    "available": False,
}


async def warming_figures(state: AppState, reply: list[Any]) -> dict[str, Any]:
    """Return the running warming job and the last one that ended, from ``reply``.

    ``available`` is False (and ``state`` idle) when Redis could not say.

    Args:
        state: the app's state.
        reply: the reply of :meth:`cache.WarmingJobs.queue_summary`.
    """
    try:
        return await state.warming.jobs.summary(reply)
    except CacheUnavailableError:
        return UNKNOWN_WARMING


async def metrics(request: Request) -> Response:
    """The Prometheus text exposition of this instance (the sum of its workers)."""
    state = ctx(request)
    state.auth.require_stats(request)
    no_query(request)
    return Response(
        state.metrics.exposition(),
        headers={"Cache-Control": "no-store"},
        media_type=CONTENT_TYPE,
    )
