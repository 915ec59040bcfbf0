"""Limits: body size and JSON bounds, and rate limits counted in Redis.

Reads past ``RATE_LIMIT_READS`` get a 429 problem with ``Retry-After`` and the draft's headers;
writes count per token; ``X-Forwarded-For`` is believed only from ``TRUSTED_PROXIES``; with no
limit configured nothing is added and Redis holds no counter; a Redis outage fails open; a limit
holds across the two workers of a real ``serve --workers 2``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from service.ratelimits import RateLimitMiddleware
from tests.servers import truncate
from tests.service.served import serving

EDITOR = {"Authorization": "Bearer editor-token"}
ADMIN = {"Authorization": "Bearer admin-token"}
POLICY = re.compile(r'^"reads";q=3;w=60$')
STATE = re.compile(r'^"reads";r=(\d+);t=(\d+)$')


async def limit_keys(redis_url: str, prefix: str) -> list[str]:
    """Return the rate-limit counters' keys of ``prefix``."""
    client = Redis.from_url(redis_url)
    try:
        return [k.decode() async for k in client.scan_iter(f"{prefix}:limits:*")]
    finally:
        await client.aclose()


def author(name: str) -> dict[str, str]:
    return {"username": f"{name}-{uuid.uuid4().hex[:8]}", "display_name": name}


async def test_reads_past_the_limit_get_429_with_retry_after_and_the_headers(
    servers: Any, app_on: Any
) -> None:
    async with app_on(servers.database_url, servers.redis_url, rate_limit_reads="3/minute") as api:
        remaining = []
        for _ in range(3):
            r = await api.client.get("/api/v1/articles")
            assert r.status_code == 200
            assert POLICY.match(r.headers["ratelimit-policy"])
            found = STATE.match(r.headers["ratelimit"])
            assert found, r.headers["ratelimit"]
            remaining.append(int(found[1]))
        assert remaining == [2, 1, 0]

        r = await api.client.get("/api/v1/articles")
        assert r.status_code == 429
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == 429 and r.json()["title"] == "Too many requests"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert STATE.match(r.headers["ratelimit"])[1] == "0"  # type: ignore[index]
        assert "x-request-id" in r.headers

        # Operations endpoints are not limited, nor do they carry the headers; writes neither.
        r = await api.client.get("/health/live")
        assert r.status_code == 200 and "ratelimit" not in r.headers
        r = await api.client.post("/api/v1/authors", json=author("w"), headers=EDITOR)
        assert r.status_code == 201 and "ratelimit" not in r.headers


async def test_writes_are_limited_per_token_and_the_token_is_not_in_redis(
    servers: Any, app_on: Any, key_prefix: str
) -> None:
    await truncate(servers.database_url)
    async with app_on(servers.database_url, servers.redis_url, rate_limit_writes="2/minute") as api:
        for _ in range(2):
            r = await api.client.post("/api/v1/authors", json=author("e"), headers=EDITOR)
            assert r.status_code == 201
            assert r.headers["ratelimit-policy"] == '"writes";q=2;w=60'
        r = await api.client.post("/api/v1/authors", json=author("e"), headers=EDITOR)
        assert r.status_code == 429 and "retry-after" in r.headers
        # Another token has its own count; reads are not limited.
        r = await api.client.post("/api/v1/authors", json=author("a"), headers=ADMIN)
        assert r.status_code == 201
        r = await api.client.get("/api/v1/authors")
        assert r.status_code == 200 and "ratelimit" not in r.headers

    keys = await limit_keys(servers.redis_url, key_prefix)
    assert len(keys) >= 2
    assert not any("editor-token" in k or "admin-token" in k for k in keys)


@pytest.mark.parametrize("trusted", ["", "127.0.0.1/32"])
async def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(
    servers: Any, app_on: Any, trusted: str
) -> None:
    # The test client's peer address is 127.0.0.1.
    async with app_on(
        servers.database_url,
        servers.redis_url,
        rate_limit_reads="1/minute",
        trusted_proxies=trusted,
    ) as api:
        statuses = [
            (await api.client.get("/api/v1/tags", headers={"X-Forwarded-For": xff})).status_code
            for xff in ("10.0.0.1", "10.0.0.2", "10.0.0.1, 127.0.0.1")
        ]
    if trusted:
        # Two clients behind the proxy; the third comes through two proxy hops.
        assert statuses == [200, 200, 429]
    else:
        # The header is ignored: the three requests are one client's.
        assert statuses == [200, 429, 429]


async def test_with_no_limit_configured_nothing_is_added_nor_counted(
    servers: Any, app_on: Any, key_prefix: str
) -> None:
    async with app_on(servers.database_url, servers.redis_url) as api:
        r = await api.client.get("/api/v1/articles")
        assert r.status_code == 200
        assert "ratelimit" not in r.headers and "ratelimit-policy" not in r.headers
        app = api.client._transport.app
        assert app.rate_limits is None
        layer = app.middleware_stack
        while layer is not None:
            assert not isinstance(layer, RateLimitMiddleware)
            layer = getattr(layer, "app", None)
    assert await limit_keys(servers.redis_url, key_prefix) == []


async def test_a_redis_outage_fails_open(
    servers: Any, app_on: Any, private_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with app_on(servers.database_url, private_redis.url, rate_limit_reads="2/minute") as api:
        r = await api.client.get("/api/v1/categories")
        assert r.status_code == 200 and "ratelimit" in r.headers
        private_redis.kill()
        with caplog.at_level(logging.WARNING, logger="service.ratelimits"):
            statuses = [(await api.client.get("/api/v1/categories")) for _ in range(5)]
        assert [r.status_code for r in statuses] == [200] * 5
        assert not any("ratelimit" in r.headers for r in statuses)
        warnings = [rec for rec in caplog.records if rec.name == "service.ratelimits"]
        # At most one warning per interval (the breaker may skip Redis before any failure).
        assert len(warnings) <= 1


async def test_a_body_over_max_body_bytes_is_a_413(servers: Any, app_on: Any) -> None:
    async with app_on(servers.database_url, servers.redis_url, max_body_bytes=200) as api:
        big = {"username": "big", "display_name": "x" * 300}
        r = await api.client.post("/api/v1/authors", json=big, headers=EDITOR)
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/problem+json"
        assert "200 bytes" in r.json()["detail"]

        # Without a Content-Length (chunked), the count of what was read decides.
        async def chunks() -> Any:
            yield b'{"username": "big", "display_name": "'
            yield b"x" * 300
            yield b'"}'

        r = await api.client.post(
            "/api/v1/authors",
            content=chunks(),
            headers={**EDITOR, "Content-Type": "application/json"},
        )
        assert r.status_code == 413


async def test_a_too_deep_or_too_long_json_body_is_a_400(servers: Any, app_on: Any) -> None:
    async with app_on(servers.database_url, servers.redis_url) as api:
        deep: Any = "leaf"
        for _ in range(40):
            deep = [deep]
        body = {**author("deep"), "bio": deep}
        r = await api.client.post("/api/v1/authors", json=body, headers=EDITOR)
        assert r.status_code == 400
        assert "nested deeper than 32" in r.json()["detail"]

        long = {**author("long"), "bio": "x" * (512 * 1024 + 1)}
        r = await api.client.post("/api/v1/authors", json=long, headers=EDITOR)
        assert r.status_code == 400
        assert "characters" in r.json()["detail"]


async def test_the_read_limit_holds_across_two_workers(servers: Any, tmp_path: Path) -> None:
    limit = 20
    with serving(
        servers.database_url,
        servers.redis_url,
        tmp_path / "service.log",
        "--workers", "2",
        RATE_LIMIT_READS=f"{limit}/minute",
    ) as served:  # fmt: skip
        # A new connection per request, so that both workers answer some.
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=served.url, limits=limits, timeout=10) as client:
            answers = await asyncio.gather(*(client.get("/api/v1/tags") for _ in range(limit + 1)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * limit + [429]
    # uvicorn's own X-Forwarded-For handling is off: the service alone decides.
    refused = next(r for r in answers if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
