"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from cache.errors import REDIS_FAILURES
from service import repository
from service.endpoints import ctx
from service.responses import json_response
from service.state import AppState

HEALTH_TIMEOUT_SECONDS = 2.0


async def live(request: Request) -> Response:
    """200 while the process runs."""
    return json_response({"status": "ok"})


async def _database_ok(state: AppState) -> bool:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            await repository.ping(state.engine)
    except Exception:
        return False
    return True


async def _redis_ok(state: AppState) -> bool:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            await state.redis.ping()
    except REDIS_FAILURES:
        return False
    return True


async def ready(request: Request) -> Response:
    """200 ``ok`` or ``degraded`` (Redis down) while PostgreSQL answers; 503 when it does not."""
    state = ctx(request)
    database, redis = await asyncio.gather(_database_ok(state), _redis_ok(state))
    doc = {
        "status": "ok" if database and redis else "degraded",
        "database": "ok" if database else "unavailable",
        "redis": "ok" if redis else "unavailable",
    }
    if not database:
        doc["status"] = "unavailable"
        return json_response(doc, 503, headers={"Retry-After": "2"})
    return json_response(doc)
