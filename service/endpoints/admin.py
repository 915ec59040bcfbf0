"""Cache administration: purge (and warming jobs)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cache.errors import CacheUnavailableError
from service.endpoints import ctx
from service.errors import InvalidInputError, UnavailableError
from service.keyspaces import NAMESPACES
from service.responses import body, json_response, no_query
from service.schemas import PurgeRequest


async def purge(request: Request) -> Response:
    """Delete the entries of one namespace, or everything (``all``, which also resets stats)."""
    state = ctx(request)
    state.auth.require(request, "admin")
    no_query(request)
    data = await body(request, PurgeRequest)
    if data.namespace != "all" and data.namespace not in NAMESPACES:
        known = ", ".join(("all", *NAMESPACES))
        raise InvalidInputError(f"unknown namespace {data.namespace!r}; one of {known}")
    try:
        if data.namespace == "all":
            purged = await state.invalidator.purge(None)
            await state.stats.reset()
        else:
            purged = await state.invalidator.purge(data.namespace)
    except CacheUnavailableError as exc:
        raise UnavailableError("Redis is unavailable; nothing could be purged") from exc
    return json_response({"purged": purged})
