"""The read path of the hottest route: a plain ``GET /api/v1/articles/{slug}``, without routing.

On a cache hit the service's own work is small (a near-cache answer takes a few microseconds of
the cache's code); Starlette's layers around it cost more: its error layer, its exception layer
(which builds a request per call), the router matching the path against the table, and the
endpoint's request-response wrapper (another request, another layer of exception handling).
:class:`ArticleReadPath` sits in front of them and answers exactly that route's plain GETs with
the endpoint's own code (:func:`service.endpoints.cached` over
:meth:`service.reads.ContentReader.article`), so that the answer, its headers and its counting
are those of the route; everything else goes on to Starlette unchanged: other paths and methods
(HEAD too), a query string (the endpoint refuses it), a slug the endpoint refuses, a root path,
any request before the lifespan has built the service.

An error raised while answering is answered by the handler Starlette would have chosen (the
first of the exception's classes, in method resolution order, in
:data:`service.problems.EXCEPTION_HANDLERS`); an unexpected error (the handler of ``Exception``)
is raised again once its 500 is sent, as Starlette's error layer does, so that the server logs
it too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from service.endpoints import cached
from service.problems import EXCEPTION_HANDLERS
from service.state import AppState

#: the route the read path answers, as the route table spells it
ARTICLE_ROUTE = "/api/v1/articles/{slug}"
_PREFIX = ARTICLE_ROUTE.removesuffix("{slug}")

ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


class ArticleReadPath:
    """Pure ASGI: answers plain GETs of one article ahead of Starlette's layers (see above).

    Args:
        app: Starlette's stack, which answers everything else.
        routes: the app's route table; the read path labels its answers with the article
            route's entry (``scope["route"]``), as the router would, for metrics and logs.

    Raises:
        ValueError: the table has no :data:`ARTICLE_ROUTE`.
    """

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        found = [r for r in routes if isinstance(r, Route) and r.path == ARTICLE_ROUTE]
        if not found:
            raise ValueError(f"the route table has no {ARTICLE_ROUTE}")
        self._route = found[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a plain GET of an article; hand anything else to Starlette."""
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or scope["query_string"]
            or scope.get("root_path")
            or not scope["path"].startswith(_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        slug: str = scope["path"][len(_PREFIX) :]
        state: AppState | None = getattr(scope["app"].state, "ctx", None)
        if not slug or "/" in slug or "\x00" in slug or state is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self._route
        scope["path_params"] = {"slug": slug}
        request = Request(scope)
        try:
            response = await cached(request, state.reader.article(slug))
        except Exception as exc:
            handler = _handler_for(exc)
            response = await handler(request, exc)
            if handler is EXCEPTION_HANDLERS[Exception]:
                await response(scope, receive, send)
                raise
        await response(scope, receive, send)


def _handler_for(exc: Exception) -> ExceptionHandler:
    """The handler of :data:`EXCEPTION_HANDLERS` for the first of ``exc``'s classes it names."""
    for cls in type(exc).__mro__:
        handler: ExceptionHandler | None = EXCEPTION_HANDLERS.get(cls)
        if handler is not None:
            return handler
    unexpected: ExceptionHandler = EXCEPTION_HANDLERS[Exception]
    return unexpected
