"""The HTTP endpoints: parse the request, call the reader or writer, render the answer."""

from __future__ import annotations

from collections.abc import Awaitable
from time import perf_counter
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cache import Lookup, etag_for
from service.documents import dumps
from service.responses import JSON, CachedResponse
from service.state import AppState


def ctx(request: Request) -> AppState:
    """Return the app's lifespan state."""
    state: AppState = request.app.state.ctx
    return state


async def cached(request: Request, read: Awaitable[Lookup]) -> Response:
    """Await ``read`` (a read through the cache) and return its :class:`CachedResponse`.

    ``max-age`` is capped by the ``HTTP_MAX_AGE_SECONDS`` setting; ``Server-Timing`` gets how
    long ``read`` took.
    """
    started = perf_counter()
    lookup = await read
    elapsed_ms = (perf_counter() - started) * 1000
    return CachedResponse(request, lookup, ctx(request).settings.http_max_age_seconds, elapsed_ms)


def written(document: Any, status: int = 200, location: str | None = None) -> Response:
    """Return the answer to a write: the new representation, its ETag, never cached."""
    body = dumps(document)
    headers = {"ETag": etag_for(body), "Cache-Control": "no-store"}
    if location is not None:
        headers["Location"] = location
    return Response(body, status, headers=headers, media_type=JSON)
