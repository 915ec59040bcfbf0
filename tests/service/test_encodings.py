"""Compressed answers from bytes compressed once, and the cache's response headers."""

from __future__ import annotations

import gzip
from typing import Any

import pytest

from cache.compression import brotli
from tests.apps import EDITOR, Api

LONG_BODY = "Cache-aside reads go to Redis first and to PostgreSQL on a miss. " * 40
PATH = "/api/v1/articles/long-read"


@pytest.fixture
async def long_article(api: Api, content: dict[str, Any]) -> dict[str, Any]:
    return await api.create(
        "/api/v1/articles",
        {"title": "Long read", "body": LONG_BODY, "author": "ann", "status": "published"},
    )


async def raw_get(api: Api, path: str, **headers: str) -> tuple[Any, bytes]:
    """GET ``path`` and return the answer with its body as sent (not decoded)."""
    async with api.client.stream("GET", path, headers=headers) as r:
        return r, b"".join([chunk async for chunk in r.aiter_raw()])


async def test_gzip_client_gets_stored_gzip_bytes_with_an_etag_of_their_own(
    api: Api, long_article: dict[str, Any]
) -> None:
    plain, plain_body = await raw_get(api, PATH, **{"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    zipped, zipped_body = await raw_get(api, PATH, **{"Accept-Encoding": "gzip"})
    assert zipped.headers["x-cache"] == "HIT"
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "accept-encoding"
    assert gzip.decompress(zipped_body) == plain_body
    assert len(zipped_body) < len(plain_body) / 2
    assert int(zipped.headers["content-length"]) == len(zipped_body)
    assert zipped.headers["etag"] != plain.headers["etag"]
    # Every hit answers the same stored bytes: compressed once, not per request.
    _, again = await raw_get(api, PATH, **{"Accept-Encoding": "gzip"})
    assert again == zipped_body


async def test_if_none_match_works_for_each_encoding(
    api: Api, long_article: dict[str, Any]
) -> None:
    plain, _ = await raw_get(api, PATH, **{"Accept-Encoding": "identity"})
    zipped, _ = await raw_get(api, PATH, **{"Accept-Encoding": "gzip"})
    r, body = await raw_get(
        api, PATH, **{"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["etag"]}
    )
    assert (r.status_code, body, r.headers["etag"]) == (304, b"", zipped.headers["etag"])
    r, _ = await raw_get(
        api, PATH, **{"Accept-Encoding": "gzip", "If-None-Match": plain.headers["etag"]}
    )
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    r, _ = await raw_get(
        api, PATH, **{"Accept-Encoding": "identity", "If-None-Match": plain.headers["etag"]}
    )
    assert r.status_code == 304


@pytest.mark.skipif(brotli is None, reason="the brotli package is not installed")
async def test_br_is_preferred_unless_the_client_weighs_gzip_higher(
    api: Api, long_article: dict[str, Any]
) -> None:
    assert brotli is not None
    _, plain_body = await raw_get(api, PATH, **{"Accept-Encoding": "identity"})
    r, body = await raw_get(api, PATH, **{"Accept-Encoding": "gzip, deflate, br"})
    assert r.headers["content-encoding"] == "br"
    assert brotli.decompress(body) == plain_body
    r, _ = await raw_get(api, PATH, **{"Accept-Encoding": "br;q=0.5, gzip;q=0.9"})
    assert r.headers["content-encoding"] == "gzip"
    r, _ = await raw_get(api, PATH, **{"Accept-Encoding": "br;q=0, gzip;q=0"})
    assert "content-encoding" not in r.headers


async def test_small_answers_are_not_compressed(api: Api, content: dict[str, Any]) -> None:
    r, _ = await raw_get(api, "/api/v1/tags/caching", **{"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and "content-encoding" not in r.headers
    assert r.headers["vary"] == "accept-encoding"


async def test_cache_status_and_server_timing_say_where_the_answer_came_from(
    api: Api, long_article: dict[str, Any]
) -> None:
    miss = await api.client.get(PATH)
    assert miss.headers["cache-status"] == "content-service; fwd=miss; stored"
    timing = dict(p.strip().split(";dur=") for p in miss.headers["server-timing"].split(","))
    assert set(timing) == {"cache", "db"} and float(timing["db"]) > 0
    hit = await api.client.get(PATH)
    assert hit.headers["cache-status"].startswith("content-service; hit; ttl=")
    assert hit.headers["server-timing"].startswith("cache;dur=")
    assert "db;" not in hit.headers["server-timing"]
    absent = await api.client.get("/api/v1/articles/nothing-here")
    assert absent.status_code == 404
    assert absent.headers["cache-status"] == "content-service; fwd=miss; stored"


async def test_if_match_with_the_etag_of_a_compressed_answer_is_honoured(
    api: Api, long_article: dict[str, Any]
) -> None:
    zipped, _ = await raw_get(api, PATH, **{"Accept-Encoding": "gzip"})
    r = await api.client.patch(
        PATH, json={"title": "Longer read"}, headers={**EDITOR, "If-Match": zipped.headers["etag"]}
    )
    assert r.status_code == 200, r.text
    r = await api.client.patch(
        PATH, json={"title": "Again"}, headers={**EDITOR, "If-Match": zipped.headers["etag"]}
    )
    assert r.status_code == 412
