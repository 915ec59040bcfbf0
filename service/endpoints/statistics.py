"""The statistics a dashboard polls (``/stats``) and Prometheus scrapes (``/metrics``)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cache.errors import REDIS_FAILURES, CacheUnavailableError
from service.endpoints import ctx
from service.endpoints.health import HEALTH_TIMEOUT_SECONDS
from service.gauges import db_pool_figures
from service.keyspaces import NAMESPACES
from service.metrics import CONTENT_TYPE
from service.responses import json_response, no_query
from service.state import AppState


async def redis_figures(state: AppState) -> dict[str, Any]:
    """Return Redis's memory, key count, evictions and the client pool's busy connections."""
    pool: Any = state.redis.connection_pool
    figures: dict[str, Any] = {
        "used_memory_bytes": None,
        "keys": None,
        "evicted_keys": None,
        "pool_in_use": pool.in_use,
        "pool_max": pool.max_connections,
        "available": True,
    }
    try:
        async with state.redis.pipeline(transaction=False) as pipe:
            pipe.info("memory")
            pipe.info("stats")
            pipe.dbsize()
            memory, stats, keys = await pipe.execute()
    except REDIS_FAILURES:
        figures["available"] = False
        return figures
    figures.update(
        used_memory_bytes=int(memory["used_memory"]),
        keys=int(keys),
        evicted_keys=int(stats["evicted_keys"]),
    )
    return figures


async def stats(request: Request) -> Response:
    """The cache, pool, Redis and warming figures of the contract's ``/stats``."""
    state = ctx(request)
    state.auth.require_stats(request)
    no_query(request)
    cache = await state.stats.snapshot(NAMESPACES)
    cache["invalidation_failures"] = state.writer.invalidation_failures
    return json_response(
        {
            "cache": cache,
            "db_pool": db_pool_figures(state.engine),
            "redis": await redis_figures(state),
            "outbox": await outbox_figures(state),
            "breakers": {
                b.name: {"state": b.state.value, "opened": b.opened_count}
                for b in (state.redis_breaker, state.database_breaker)
            },
            "warming": await warming_figures(state),
        }
    )


async def outbox_figures(state: AppState) -> dict[str, Any]:
    """Return the outbox backlog (None when PostgreSQL cannot say) and this process's relay."""
    backlog: int | None
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            backlog = await state.relay.backlog()
    except Exception:
        backlog = None
    return {
        "backlog": backlog,
        "applied": state.relay.applied,
        "failures": state.relay.failures,
        "listening": state.relay.listening,
    }


async def warming_figures(state: AppState) -> dict[str, Any]:
    """Return the running warming job and the last one that ended ("unknown" without Redis)."""
    try:
        return await state.warming.jobs.summary()
    except CacheUnavailableError:
        return {"state": "unknown", "current": None, "last_run": None}


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
