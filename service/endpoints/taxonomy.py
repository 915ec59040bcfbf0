"""Authors, categories and tags: the same four operations over three kinds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from service.endpoints import cached, ctx, list_query, path_key, written
from service.keyspaces import AUTHOR, CATEGORY, TAG
from service.models import Author, Category, Tag
from service.responses import body, no_query
from service.schemas import (
    AuthorCreate,
    AuthorPatch,
    CategoryCreate,
    CategoryPatch,
    PageParams,
    TagCreate,
    TagPatch,
)

Endpoint = Callable[[Request], Awaitable[Response]]

#: kind to (model, create body, patch body, collection path)
KINDS: dict[str, tuple[Any, type[BaseModel], type[BaseModel], str]] = {
    AUTHOR: (Author, AuthorCreate, AuthorPatch, "/api/v1/authors"),
    CATEGORY: (Category, CategoryCreate, CategoryPatch, "/api/v1/categories"),
    TAG: (Tag, TagCreate, TagPatch, "/api/v1/tags"),
}


def collection_endpoint(kind: str) -> Endpoint:
    """Return the endpoint of ``/api/v1/{kind}s``: GET a page, POST a new one (editor)."""
    model, create, _, path = KINDS[kind]

    async def endpoint(request: Request) -> Response:
        state = ctx(request)
        if request.method == "POST":
            state.auth.require(request, "editor")
            no_query(request)
            doc = await state.writer.create_entity(model, await body(request, create))  # type: ignore[arg-type]
            return written(doc, 201, location=f"{path}/{doc[model.key_name]}")
        params = list_query(request, PageParams)
        return await cached(request, state.reader.entities(kind, params), paged=True)

    endpoint.__name__ = f"{kind}_collection"
    endpoint.__doc__ = f"GET: a page of {kind}s. POST: create one (editor)."
    return endpoint


def item_endpoint(kind: str) -> Endpoint:
    """Return the endpoint of ``/api/v1/{kind}s/{key}``: GET, PATCH (editor), DELETE (editor)."""
    model, _, patch_model, _ = KINDS[kind]

    async def endpoint(request: Request) -> Response:
        state = ctx(request)
        key = path_key(request, "key")
        no_query(request)
        if request.method in ("GET", "HEAD"):
            return await cached(request, state.reader.entity(kind, key))
        state.auth.require(request, "editor")
        if request.method == "PATCH":
            patch = await body(request, patch_model)
            return written(await state.writer.patch_entity(model, key, patch))  # type: ignore[arg-type]
        await state.writer.delete_entity(model, key)
        return Response(status_code=204)

    endpoint.__name__ = f"{kind}_item"
    endpoint.__doc__ = f"GET one {kind}; PATCH it (editor); DELETE it (editor)."
    return endpoint
