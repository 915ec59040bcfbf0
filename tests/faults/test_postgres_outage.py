"""PostgreSQL stopped mid-load, or its pool exhausted: hits answer, misses 503 at once, recovery.

The outage test stops a private PostgreSQL (``pg_ctl stop -m immediate``, as a crash would);
the app uses the shared Redis under its own key prefix.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.apps import Api
from tests.faults.servers import PrivatePostgres
from tests.polling import eventually
from tests.servers import Servers, truncate

ARTICLE = "/api/v1/articles/kept"
COMMENTS = "/api/v1/articles/kept/comments"
AUTHOR = "/api/v1/authors/ann"


async def seed(api: Api) -> None:
    await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
    await api.create(
        "/api/v1/articles",
        {"title": "Kept", "slug": "kept", "body": "b", "author": "ann", "status": "published"},
    )


async def test_stopped_postgres_hits_answer_stale_serves_misses_503_then_recovery(
    servers: Servers, private_postgres: PrivatePostgres, app_on: Any
) -> None:
    url = private_postgres.url("content")
    await truncate(url)
    settings = {
        # article entries stay fresh; comment entries expire at once but may serve stale
        "cache_ttls": "article=60,comments=0.2",
        "cache_stale_while_revalidate_seconds": 0,
        "cache_stale_if_error_seconds": 60,
        "breaker_probe_interval_seconds": 0.1,
        "db_connect_timeout_seconds": 0.5,
    }
    async with app_on(url, servers.redis_url, **settings) as api:
        await seed(api)
        await api.client.get(ARTICLE)
        await api.client.get(COMMENTS)
        await asyncio.sleep(0.25)  # the comments entry is now past its fresh period

        private_postgres.stop()
        try:
            hit = await api.client.get(ARTICLE)
            assert (hit.status_code, hit.headers["x-cache"]) == (200, "HIT")
            stale = await api.client.get(COMMENTS)
            assert (stale.status_code, stale.headers["x-cache"]) == (200, "STALE")
            assert stale.headers["cache-control"] == "public, max-age=0"
            for _ in range(5):
                started = time.monotonic()
                miss = await api.client.get(AUTHOR)
                took = time.monotonic() - started
                assert miss.status_code == 503 and miss.headers["retry-after"]
                assert miss.headers["content-type"] == "application/problem+json"
                assert took < 1.0, took
                print(f"\nmiss with PostgreSQL stopped: 503 in {took * 1000:.1f} ms")
            ready = await api.client.get("/health/ready")
            assert ready.status_code == 200 and ready.json()["postgres"] == "unavailable"
            assert ready.json()["status"] == "degraded"
            stats = await api.stats()
            assert stats["cache"]["stale_if_error"] >= 1
            assert stats["breakers"]["database"]["state"] == "open"
        finally:
            private_postgres.start()

        async def author_answers() -> bool:
            return bool((await api.client.get(AUTHOR)).status_code == 200)

        await eventually(author_answers, 10)
        assert (await api.client.get("/health/ready")).status_code == 200
        fresh = await api.client.get(COMMENTS)
        assert fresh.status_code == 200


async def test_exhausted_pool_answers_503_after_the_pool_timeout(
    servers: Servers, app_on: Any
) -> None:
    await truncate(servers.database_url)
    settings = {"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout_seconds": 0.3}
    async with app_on(servers.database_url, servers.redis_url, **settings) as api:
        await seed(api)
        async with api.state.engine.connect():  # the pool's only connection, held
            started = time.monotonic()
            r = await api.client.get(ARTICLE)
            took = time.monotonic() - started
        assert r.status_code == 503 and r.headers["retry-after"]
        assert 0.3 <= took < 1.5, took
        assert api.state.database_breaker.allows()  # a busy pool is not a dead server
        assert (await api.client.get(ARTICLE)).status_code == 200
