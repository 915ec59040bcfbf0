"""Baseline apps for the hit-path benchmark: what the service's hit is compared with.

* ``constant``: Starlette answering constant bytes (the framework's ceiling);
* ``redis_get``: Starlette answering the bytes of one redis-py asyncio ``GET`` per request
  (the ceiling of any cache that goes to Redis once per hit).

Both are uvicorn factories: ``uvicorn --factory benchmarks.baselines:constant``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = b'{"id":1,"slug":"hello","title":"Hello"}'
KEY = "bench:baseline"


def constant() -> Starlette:
    """Return an app whose only route answers :data:`BODY`."""

    async def endpoint(request: Request) -> Response:
        return Response(BODY, media_type="application/json")

    return Starlette(routes=[Route("/", endpoint)])


def redis_get() -> Starlette:
    """Return an app whose only route answers the value at :data:`KEY` in ``REDIS_URL``."""
    state: dict[str, Redis] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis = Redis.from_url(os.environ["REDIS_URL"])
        await redis.set(KEY, BODY)
        state["redis"] = redis
        yield
        await redis.aclose()

    async def endpoint(request: Request) -> Response:
        return Response(await state["redis"].get(KEY), media_type="application/json")

    return Starlette(routes=[Route("/", endpoint)], lifespan=lifespan)
