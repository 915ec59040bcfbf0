"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from cache.errors import REDIS_FAILURES
from cache.routing import ping
from service import repository
from service.lifecycle import Lifecycle, Phase
from service.problems import problem
from service.responses import json_response
from service.state import AppState

HEALTH_TIMEOUT_SECONDS = 2.0


async def live(request: Request) -> Response:
    """200 while the process runs."""
    return json_response({"status": "ok"})


async def _postgres_ok(state: AppState) -> bool:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            # Not the request pool: a saturated pool is not a database that is down.
            await repository.ping(state.background_engine)
    except Exception:
        return False
    return True


async def _redis_ok(state: AppState) -> bool:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            await ping(state.redis)
    except REDIS_FAILURES:
        return False
    return True


_NOT_READY = {
    "starting": "the service is starting",
    "draining": "the service is draining after SIGTERM",
    "unavailable": "neither Redis nor PostgreSQL answers",
}


def _not_ready(readiness: str, **servers: str) -> Response:
    """A 503 problem document; ``readiness`` says why, ``servers`` how each one is."""
    return problem(
        503,
        _NOT_READY[readiness],
        title="Not ready",
        headers={"Retry-After": "2"},
        readiness=readiness,
        **servers,
    )


async def ready(request: Request) -> Response:
    """Whether a load balancer should send this instance requests.

    200 ``{"status": "ok" | "degraded", "redis": "ok" | "unavailable", "postgres": ...}``:
    ``degraded`` when one of the two does not answer (hits still serve while PostgreSQL is
    down; reads bypass the cache while Redis is down). 503, a problem document whose
    ``readiness`` is ``starting`` before the lifespan has built everything, ``draining`` from
    SIGTERM on, or ``unavailable`` (with ``redis`` and ``postgres``) when neither answers. Each
    server gets at most ``HEALTH_TIMEOUT_SECONDS``.
    """
    lifecycle: Lifecycle = request.app.state.lifecycle
    if lifecycle.phase is Phase.STARTING:
        return _not_ready("starting")
    if lifecycle.phase is Phase.DRAINING:
        return _not_ready("draining")
    state: AppState = request.app.state.ctx
    postgres, redis = await asyncio.gather(_postgres_ok(state), _redis_ok(state))
    doc = {
        "status": "ok" if postgres and redis else "degraded",
        "redis": "ok" if redis else "unavailable",
        "postgres": "ok" if postgres else "unavailable",
    }
    if not (postgres or redis):
        return _not_ready("unavailable", redis="unavailable", postgres="unavailable")
    return json_response(doc)
