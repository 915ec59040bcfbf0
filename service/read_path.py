"""The read path of the hottest route: a plain ``GET /api/v1/articles/{slug}``, without routing.

On a cache hit the service's own work is small (a near-cache answer takes a few microseconds of
the cache's code); Starlette's layers around it cost more: its error layer, its exception layer
(which builds a request per call), the router matching the path against the table, and the
endpoint's request-response wrapper (another request, another layer of exception handling).
:class:`ArticleReadPath` sits in front of them and calls the route's own endpoint with the
request, so that the answer, its headers and its counting are the route's by construction
(:meth:`ArticleReadPath.answer_hit`, which answers hits without a task, repeats what the
endpoint does for them instead); everything else goes on to Starlette unchanged: other
paths and methods (HEAD too), a query string, a root path (the path would first have to be
taken out of it), a path whose slug holds ``/`` (another route's).

An error raised while answering is answered as Starlette's exception layer would: by the
app's handler for the first of the exception's classes, in method resolution order; one that
only the handler of ``Exception`` takes (an unexpected error), or an error of a handler, gets
that handler's 500 and is raised again, as Starlette's error layer does, so that the server
logs it too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from time import perf_counter
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from cache import Lookup, PendingHit
from service.endpoints import EARLIER_READ, is_path_key
from service.responses import CachedResponse
from service.state import AppState

#: the route the read path answers, as the route table spells it
ARTICLE_ROUTE = "/api/v1/articles/{slug}"
_PREFIX = ARTICLE_ROUTE.removesuffix("{slug}")

#: an app's exception handler: the request and the exception, to an answer
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


class ArticleReadPath:
    """Pure ASGI: answers plain GETs of one article ahead of Starlette's layers (see above).

    Args:
        app: Starlette's stack, which answers everything else.
        routes: the app's route table; its :data:`ARTICLE_ROUTE` entry answers (its endpoint)
            and labels the answer (``scope["route"]``, as the router sets it, for the metrics
            and the access log).
        handlers: the app's exception handlers by exception class (Starlette's
            ``exception_handlers``); the one of ``Exception`` answers unexpected errors.

    Raises:
        ValueError: the table has no :data:`ARTICLE_ROUTE`, or ``handlers`` none for
            ``Exception``.
    """

    def __init__(
        self, app: ASGIApp, routes: list[BaseRoute], handlers: Mapping[Any, ExceptionHandler]
    ) -> None:
        self.app = app
        found = [r for r in routes if isinstance(r, Route) and r.path == ARTICLE_ROUTE]
        if not found:
            raise ValueError(f"the route table has no {ARTICLE_ROUTE}")
        if Exception not in handlers:
            raise ValueError("no handler of Exception")
        self._route = found[0]
        self._endpoint: Callable[[Request], Awaitable[Response]] = found[0].endpoint
        self._handlers = {k: v for k, v in handlers.items() if isinstance(k, type)}
        self._unexpected = handlers[Exception]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a plain GET of an article; hand anything else to Starlette.

        Raises:
            Exception: an unexpected error, after its 500 was sent (see the module).
        """
        slug = _plain_get_slug(scope)
        if slug is None:
            await self.app(scope, receive, send)
            return
        self._label(scope, slug)
        request = Request(scope, receive)
        try:
            response = await self._endpoint(request)
        except Exception as exc:
            await self._answer_error(request, exc, send)
            return
        await response(scope, receive, send)

    def answer_hit(
        self, scope: Scope, state: AppState
    ) -> CachedResponse | PendingHit[CachedResponse] | None:
        """Return the answer to ``scope`` if it is a cache hit, without a task; else None.

        For a caller that answers without a task (see :mod:`service.fast_path`): a plain GET
        of an article (as :meth:`__call__` takes) with a valid slug whose entry is a hit
        (:meth:`service.reads.ContentReader.article_hit`): now from the near cache, or once
        Redis answers (a :class:`cache.PendingHit` of the answer). The answer is the route's
        (:func:`service.endpoints.cached`'s, ``Server-Timing`` from the call to the hit), and
        the scope is labelled with the route as :meth:`__call__` labels it. On None (now or
        from ``finish()``) nothing was counted: the request goes on to :meth:`__call__`.

        Args:
            scope: the request's ASGI scope.
            state: the app's lifespan state.

        Returns:
            The answer now, a :class:`cache.PendingHit` of it, or None. Never raises a Redis
            error (a failed read finishes with None).
        """
        slug = _plain_get_slug(scope)
        if slug is None or not is_path_key(slug):
            return None
        started = perf_counter()
        hit = state.reader.article_hit(slug)
        if hit is None:
            return None
        max_age_cap = state.settings.http_max_age_seconds

        def answer(lookup: Lookup) -> CachedResponse:
            elapsed_ms = (perf_counter() - started) * 1000
            self._label(scope, slug)
            return CachedResponse(scope["headers"], lookup, max_age_cap, elapsed_ms)

        if isinstance(hit, Lookup):
            return answer(hit)
        scope[EARLIER_READ] = hit  # for the endpoint, should it be no hit
        finish = hit.finish

        def finish_answer() -> CachedResponse | None:
            lookup = finish()
            return None if lookup is None else answer(lookup)

        return PendingHit(hit.read, finish_answer)

    def _label(self, scope: Scope, slug: str) -> None:
        """Label ``scope`` with the route and its slug, as the router would."""
        scope["route"] = self._route
        scope["path_params"] = {"slug": slug}

    async def _answer_error(self, request: Request, exc: Exception, send: Send) -> None:
        handler = self._unexpected
        for cls in type(exc).__mro__:
            if cls in self._handlers:
                handler = self._handlers[cls]
                break
        try:
            response = await handler(request, exc)
        except Exception as failure:
            response = await self._unexpected(request, failure)
            await response(request.scope, request.receive, send)
            raise
        await response(request.scope, request.receive, send)
        if handler is self._unexpected:
            raise exc


def _plain_get_slug(scope: Scope) -> str | None:
    """Return the slug of a plain GET of an article (see the module), else None."""
    if (
        scope["type"] != "http"
        or scope["method"] != "GET"
        or scope["query_string"]
        or scope.get("root_path")
        or not scope["path"].startswith(_PREFIX)
    ):
        return None
    slug: str = scope["path"][len(_PREFIX) :]
    if not slug or "/" in slug:
        return None
    return slug
