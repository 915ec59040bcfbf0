"""The entity kinds' endpoints: the same five operations over each kind of the registry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from service.endpoints import cached, ctx, list_query, path_key, written
from service.kinds import EntityKind
from service.responses import body, no_query
from service.schemas import PageParams

Endpoint = Callable[[Request], Awaitable[Response]]


def collection_endpoint(kind: EntityKind) -> Endpoint:
    """Return the endpoint of ``/api/v1/{plural}``: GET a page, POST a new one (editor)."""

    async def endpoint(request: Request) -> Response:
        state = ctx(request)
        if request.method == "POST":
            state.auth.require(request, "editor")
            no_query(request)
            doc = await state.entity_writes.create(kind, await body(request, kind.create))
            return written(doc, 201, location=f"{kind.path}/{doc[kind.key]}")
        params = list_query(request, PageParams)
        return await cached(request, state.reader.entities(kind.name, params), paged=True)

    endpoint.__name__ = f"{kind.name}_collection"
    endpoint.__doc__ = f"GET: a page of {kind.plural}. POST: create one (editor)."
    return endpoint


def item_endpoint(kind: EntityKind) -> Endpoint:
    """Return the endpoint of ``/api/v1/{plural}/{<key>}``: GET, PATCH and DELETE (editor)."""

    async def endpoint(request: Request) -> Response:
        state = ctx(request)
        key = path_key(request, kind.key)
        no_query(request)
        if request.method in ("GET", "HEAD"):
            return await cached(request, state.reader.entity(kind.name, key))
        state.auth.require(request, "editor")
        if request.method == "PATCH":
            patch = await body(request, kind.patch)
            return written(await state.entity_writes.patch(kind, key, patch))
        await state.entity_writes.delete(kind, key)
        return Response(status_code=204)

    endpoint.__name__ = f"{kind.name}_item"
    endpoint.__doc__ = f"GET one {kind.name}; PATCH it (editor); DELETE it (editor)."
    return endpoint
