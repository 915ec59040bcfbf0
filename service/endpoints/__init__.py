"""The HTTP endpoints: parse the request, call the reader or writer, render the answer."""

from __future__ import annotations

from collections.abc import Awaitable
from time import perf_counter
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from cache import Lookup, PendingHit, etag_for
from service.documents import dumps
from service.errors import InvalidInputError
from service.pages import check_depth, link_for_query, next_cursor_of
from service.problems import failed_members, failures_detail
from service.responses import JSON, CachedResponse, query
from service.schemas import PageParams, PathKey, RowId
from service.state import AppState

P = TypeVar("P", bound=PageParams)
V = TypeVar("V")

_PATH_KEY: TypeAdapter[str] = TypeAdapter(PathKey)
_ROW_ID: TypeAdapter[int] = TypeAdapter(RowId)


#: the scope key under which :meth:`service.read_path.ArticleReadPath.answer_hit` leaves the
#: cache's pending hit of the request, whose read the endpoint then takes if it was no hit
EARLIER_READ = "content_service.earlier_read"


def earlier_read(request: Request) -> PendingHit[Any] | None:
    """Return the request's pending hit that was no hit (see :data:`EARLIER_READ`), if any."""
    pending: PendingHit[Any] | None = request.scope.get(EARLIER_READ)
    return pending


def ctx(request: Request) -> AppState:
    """Return the app's lifespan state."""
    state: AppState = request.app.state.ctx
    return state


async def cached(request: Request, read: Awaitable[Lookup], *, paged: bool = False) -> Response:
    """Await ``read`` (a read through the cache) and return its :class:`CachedResponse`.

    ``max-age`` is capped by the ``HTTP_MAX_AGE_SECONDS`` setting; ``Server-Timing`` gets how
    long ``read`` took. A ``paged`` answer (a list) gets its ``Link`` header, from the request's
    query and the stored body's ``next_cursor`` (read from the body's tail, on hits too;
    see :func:`service.pages.link_for_query`).
    """
    started = perf_counter()
    lookup = await read
    elapsed_ms = (perf_counter() - started) * 1000
    link = None
    if paged and lookup.status == 200:
        scope = request.scope
        link = link_for_query(scope["path"], scope["query_string"], next_cursor_of(lookup.body))
    max_age_cap = ctx(request).settings.http_max_age_seconds
    return CachedResponse(request.scope["headers"], lookup, max_age_cap, elapsed_ms, link)


def _path_value(request: Request, name: str, rule: TypeAdapter[V]) -> V:
    try:
        return rule.validate_python(request.path_params[name])
    except ValidationError as exc:
        errors = failed_members(exc, name)
        raise InvalidInputError(failures_detail(errors), errors=errors) from exc


def path_key(request: Request, name: str) -> str:
    """Return the path parameter ``name``: a slug or username (see :data:`schemas.PathKey`).

    Checked before any lookup, so that the database never sees a value it cannot hold.

    Raises:
        InvalidInputError: it holds a NUL character.
    """
    return _path_value(request, name, _PATH_KEY)


def is_path_key(value: str) -> bool:
    """Return whether ``value`` is a valid path key (see :func:`path_key`)."""
    try:
        _PATH_KEY.validate_python(value)
    except ValidationError:
        return False
    return True


def path_id(request: Request, name: str) -> int:
    """Return the path parameter ``name``: a row id (see :data:`schemas.RowId`).

    Raises:
        InvalidInputError: it is 0 or beyond PostgreSQL's ``bigint``.
    """
    return _path_value(request, name, _ROW_ID)


def list_query(request: Request, model: type[P]) -> P:
    """Validate a list's query string; refuse an offset page deeper than ``MAX_PAGE_DEPTH``.

    Raises:
        InvalidInputError: a parameter is repeated, or the page reaches past ``MAX_PAGE_DEPTH``
            rows (the detail points to ``cursor``).
        pydantic.ValidationError: a parameter is unknown or breaks its rule (``page`` with
            ``cursor``).
    """
    params = query(request, model)
    if params.cursor is None:
        check_depth(params.page, params.per_page, ctx(request).settings.max_page_depth)
    return params


def written(document: Any, status: int = 200, location: str | None = None) -> Response:
    """Return the answer to a write: the new representation, its ETag, never cached."""
    body = dumps(document)
    headers = {"ETag": etag_for(body), "Cache-Control": "no-store"}
    if location is not None:
        headers["Location"] = location
    return Response(body, status, headers=headers, media_type=JSON)
