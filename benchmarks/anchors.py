"""The anchor apps: what the service's answers are measured against.

Each is a uvicorn factory (``uvicorn --factory benchmarks.anchors:redis_get``) serving
``GET /a/{slug}``, so that one wrk script drives them and the service alike:

* ``constant``: Starlette answering constant bytes (the framework's ceiling);
* ``redis_get``: Starlette answering the value of one redis-py asyncio ``GET`` of the key under
  which the service stores the article at ``slug`` (``REDIS_URL``, ``CACHE_PREFIX``): the
  ceiling of any cache that goes to Redis once per hit. The stored value is answered as it is,
  header and all; 404 when the key does not exist;
* ``asyncpg``: Starlette answering an article read with one statement on a raw asyncpg pool
  (``DATABASE_URL``; no SQLAlchemy, no cache), rendered with orjson in the contract's shape:
  the floor that a cache miss is compared with.

The clients and pools are opened in the lifespan and closed there.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cache import KeyScheme
from service.documents import article_document, dumps
from service.keyspaces import ContentKeys

PATH = "/a/{slug}"
BODY = b'{"id":1,"slug":"hello","title":"Hello"}'

#: The article, its author, category, tags, series and comment count in one statement, the same
#: shape as ``service.repository.article_by_slug`` restricted to visible articles.
ARTICLE_SQL = """
SELECT a.id, a.slug, a.title, a.summary,
       au.id AS author_id, au.username AS author_username,
       au.display_name AS author_display_name,
       c.id AS category_id, c.slug AS category_slug, c.name AS category_name,
       (SELECT coalesce(json_agg(json_build_object('id', t.id, 'slug', t.slug, 'name', t.name)
                                 ORDER BY t.slug), '[]'::json)
          FROM article_tags at JOIN tags t ON t.id = at.tag_id
         WHERE at.article_id = a.id) AS tags,
       s.id AS series_id, s.slug AS series_slug, s.name AS series_name,
       a.series_position AS series_position,
       a.published_at, a.updated_at, a.body, a.body_format, a.status,
       (SELECT count(*) FROM comments m WHERE m.article_id = a.id) AS comment_count,
       a.created_at
  FROM articles a
  JOIN authors au ON au.id = a.author_id
  LEFT JOIN categories c ON c.id = a.category_id
  LEFT JOIN series s ON s.id = a.series_id
 WHERE a.slug = $1 AND a.status = 'published' AND a.published_at <= now()
"""

_NOT_FOUND = Response(b'{"status":404}', status_code=404, media_type="application/json")


def asyncpg_dsn(database_url: str) -> str:
    """Return the libpq form of a SQLAlchemy URL (``postgresql+asyncpg://`` to ``postgresql://``)."""
    scheme, sep, rest = database_url.partition("://")
    return scheme.split("+", 1)[0] + sep + rest


def constant() -> Starlette:
    """Return an app whose route answers :data:`BODY` whatever the slug."""

    async def endpoint(request: Request) -> Response:
        return Response(BODY, media_type="application/json")

    return Starlette(routes=[Route(PATH, endpoint)])


def redis_get() -> Starlette:
    """Return an app whose route answers the raw value of the service's key of the article."""
    scheme = KeyScheme(os.environ.get("CACHE_PREFIX", "cs"))
    namespace = ContentKeys.from_scheme(scheme).article
    state: dict[str, Redis] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis = Redis.from_url(os.environ["REDIS_URL"])
        state["redis"] = redis
        try:
            yield
        finally:
            await redis.aclose()

    async def endpoint(request: Request) -> Response:
        key = namespace.key(request.path_params["slug"]).redis_key
        value = await state["redis"].get(key)
        if value is None:
            return _NOT_FOUND
        return Response(value, media_type="application/json")

    return Starlette(routes=[Route(PATH, endpoint)], lifespan=lifespan)


async def _json_codec(connection: asyncpg.Connection) -> None:
    """Decode ``json`` columns with orjson, as the service's engine does."""
    await connection.set_type_codec(
        "json",
        schema="pg_catalog",
        encoder=lambda value: orjson.dumps(value).decode(),
        decoder=orjson.loads,
    )


def asyncpg_article() -> Starlette:
    """Return an app whose route answers the visible article at the slug, read by asyncpg.

    The pool holds 10 to 20 connections, the service's default pool size plus overflow. The
    row is rendered by the service's own :func:`service.documents.article_document` and
    ``dumps``, so that the anchor and a miss differ by the cache and the query layer only.
    """
    state: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            asyncpg_dsn(os.environ["DATABASE_URL"]), min_size=10, max_size=20, init=_json_codec
        )
        state["pool"] = pool
        try:
            yield
        finally:
            await pool.close()

    async def endpoint(request: Request) -> Response:
        row = await state["pool"].fetchrow(ARTICLE_SQL, request.path_params["slug"])
        if row is None:
            return _NOT_FOUND
        return Response(dumps(article_document(row)), media_type="application/json")

    return Starlette(routes=[Route(PATH, endpoint)], lifespan=lifespan)
