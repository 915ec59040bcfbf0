"""The article read path answers plain GETs exactly as the route behind it would, and hands on
everything else.

On the run's PostgreSQL and Redis: one app, asked each question twice, once through its whole
stack (where the read path answers) and once through Starlette's stack alone (the route).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from service.app import ContentApp, create_app
from service.errors import UnavailableError
from service.read_path import ArticleReadPath
from tests.apps import EDITOR, make_settings
from tests.servers import Servers, truncate

#: headers that differ between any two answers
VARYING = {"x-request-id", "server-timing", "date"}
_SECONDS = re.compile(r"(ttl|max-age)=\d+")


def read_path_of(app: ContentApp) -> ArticleReadPath:
    """The read path in ``app``'s stack (built here if no request built it yet)."""
    app.middleware_stack = app.middleware_stack or app.build_middleware_stack()
    assert app.read_path is not None
    return app.read_path


class Counted:
    """An ASGI app that counts the requests it is handed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await self.app(scope, receive, send)


@asynccontextmanager
async def both(
    servers: Servers, key_prefix: str, handlers: dict[Any, Any] | None = None
) -> AsyncIterator[tuple[Any, ...]]:
    """Yield clients through the whole stack and through Starlette's alone, and the count.

    ``handlers`` replace some of the app's exception handlers, before its stack is built.
    """
    app = create_app(make_settings(servers, key_prefix))
    assert isinstance(app, ContentApp)
    app.exception_handlers.update(handlers or {})
    async with app.router.lifespan_context(app):
        path = read_path_of(app)
        behind = path.app = Counted(path.app)

        async def starlette_alone(scope: Scope, receive: Receive, send: Send) -> None:
            scope["app"] = app  # as Starlette's own entry sets it
            await behind.app(scope, receive, send)

        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=target, raise_app_exceptions=False),
                base_url="http://test",
            )
            for target in (app, starlette_alone)
        ]
        try:
            yield clients[0], clients[1], behind, app
        finally:
            for client in clients:
                await client.aclose()


def answer(r: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body; without what two answers of one entry may differ by.

    That is: the headers in :data:`VARYING`, the seconds left (``ttl``, ``max-age``: a second
    may turn between two answers) and the tier that answered (an entry read again from Redis
    is held in L1 from then on).
    """
    headers = {k: v for k, v in r.headers.items() if k not in VARYING}
    for name in ("cache-status", "cache-control"):
        if name in headers:
            headers[name] = _SECONDS.sub("", headers[name]).replace("; detail=l1", "")
    return r.status_code, headers, r.content


async def test_plain_gets_are_answered_as_the_route_answers_them(
    servers: Servers, key_prefix: str
) -> None:
    await truncate(servers.database_url)
    async with both(servers, key_prefix) as (whole, alone, behind, _):
        for body in (
            {"username": "ann", "display_name": "Ann"},
            {"title": "Read", "slug": "read", "body": "b" * 3000, "author": "ann",
             "status": "published"},
        ):  # fmt: skip
            path = "/api/v1/articles" if "slug" in body else "/api/v1/authors"
            assert (await whole.post(path, json=body, headers=EDITOR)).status_code == 201
        await whole.get("/api/v1/articles/read")  # a miss: stored; then hits on both sides
        await whole.get("/api/v1/articles/read")
        etag = (await whole.get("/api/v1/articles/read")).headers["etag"]
        behind.calls = 0
        questions: list[dict[str, Any]] = [
            {},
            {"headers": {"accept-encoding": "gzip"}},
            {"headers": {"accept-encoding": "br, gzip"}},
            {"headers": {"accept-encoding": "identity"}},
            {"headers": {"if-none-match": etag}},
            {"headers": {"if-none-match": '"other"'}},
        ]
        for question in questions:
            through_path = await whole.get("/api/v1/articles/read", **question)
            through_route = await alone.get("/api/v1/articles/read", **question)
            assert answer(through_path) == answer(through_route), question
        assert behind.calls == 0, "the read path handed on a plain GET"
        statuses = {(await whole.get("/api/v1/articles/read", **q)).status_code for q in questions}
        assert statuses == {200, 304}

        # A cached absence: the same problem document.
        missing = [await c.get("/api/v1/articles/none") for c in (whole, alone, whole, alone)]
        assert answer(missing[2]) == answer(missing[3])
        assert missing[2].status_code == 404
        assert missing[2].headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/v1/articles/read?x=1"),
        ("HEAD", "/api/v1/articles/read"),
        ("GET", "/api/v1/articles/read/comments"),
        ("GET", "/api/v1/articles/"),
        ("GET", "/api/v1/articles"),
        ("DELETE", "/api/v1/articles/read"),
    ],
)
async def test_anything_but_a_plain_get_goes_to_the_route(
    servers: Servers, key_prefix: str, method: str, path: str
) -> None:
    async with both(servers, key_prefix) as (whole, alone, behind, _):
        await alone.request(method, path)  # what it reads is cached for both from here on
        through_path = await whole.request(method, path)
        assert behind.calls == 1, "the read path answered it"
        through_route = await alone.request(method, path)
        assert answer(through_path) == answer(through_route)


async def test_a_slug_the_route_refuses_is_refused_alike(servers: Servers, key_prefix: str) -> None:
    async with both(servers, key_prefix) as (whole, alone, behind, _):
        answers = [answer(await c.get("/api/v1/articles/re%00ad")) for c in (whole, alone)]
        assert behind.calls == 0, "the read path handed it on"
    assert answers[0] == answers[1]
    assert answers[0][0] == 400


@pytest.mark.parametrize(
    "error, status",
    [
        (UnavailableError("the database is unavailable"), 503),
        (OSError("connection refused"), 503),
        (RuntimeError("a bug"), 500),
    ],
)
async def test_an_error_is_answered_by_the_routes_handler(
    servers: Servers, key_prefix: str, error: Exception, status: int
) -> None:
    async with both(servers, key_prefix) as (whole, alone, _, app):
        reader = app.state.ctx.reader

        def failing(slug: str, after: Any = None) -> Awaitable[Any]:
            async def fail() -> Any:
                raise error

            return fail()

        reader.article = failing  # the read's failure, whatever its cause
        answers = [answer(await c.get("/api/v1/articles/read")) for c in (whole, alone)]
    assert answers[0] == answers[1]
    assert answers[0][0] == status
    assert answers[0][1]["content-type"] == "application/problem+json"


async def test_its_answers_are_counted_under_the_route(servers: Servers, key_prefix: str) -> None:
    async with both(servers, key_prefix) as (whole, _, behind, _app):
        for _ in range(3):
            assert (await whole.get("/api/v1/articles/nothing-here")).status_code == 404
        assert behind.calls == 0
        metrics = (await whole.get("/metrics")).text
    series = 'http_requests_total{method="GET",route="/api/v1/articles/{slug}",status="404"}'
    assert f"{series} 3.0" in metrics.splitlines()


async def test_a_handler_that_fails_gets_the_unexpected_errors_answer(
    servers: Servers, key_prefix: str
) -> None:
    async def failing_handler(request: Any, exc: Exception) -> Any:
        raise RuntimeError("the handler failed")

    handlers = {UnavailableError: failing_handler}
    async with both(servers, key_prefix, handlers) as (whole, alone, _, app):
        reader = app.state.ctx.reader

        def failing(slug: str, after: Any = None) -> Awaitable[Any]:
            async def fail() -> Any:
                raise UnavailableError("the database is unavailable")

            return fail()

        reader.article = failing
        answers = [answer(await c.get("/api/v1/articles/read")) for c in (whole, alone)]
    assert answers[0] == answers[1]
    assert answers[0][0] == 500
