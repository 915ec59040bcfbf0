"""Outbox retention (Sentinel mode): applied rows are kept for a while, replayed, then dropped.

On the run's PostgreSQL and Redis, with a relay of the test's own (the app's is stopped) whose
retention period is short.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from service.outbox import OutboxRelay
from tests.apps import AppOn, app_with_articles
from tests.servers import Servers, run_sql

ARTICLE = "/api/v1/articles/kept"
RETENTION_SECONDS = 1.0


async def kept_rows(database_url: str) -> list[str]:
    rows = await run_sql(database_url, "SELECT table_name FROM cache_outbox_applied ORDER BY id")
    return [row["table_name"] for row in rows]


async def test_applied_rows_are_kept_replayed_onto_a_redis_that_lacks_them_then_dropped(
    servers: Servers, app_on: AppOn
) -> None:
    async with app_with_articles(app_on, servers, "kept", title="Old") as api:
        await api.state.relay.aclose()  # this test's relay alone drains from here on
        await run_sql(servers.database_url, "TRUNCATE cache_outbox_applied")
        relay = OutboxRelay(
            api.state.background_engine,
            api.state.invalidator,
            retention_seconds=RETENTION_SECONDS,
        )
        scheme_prefix = api.state.settings.cache_prefix
        entry = api.state.keys.article.key("kept").redis_key
        assert (await api.client.get(ARTICLE)).headers["x-cache"] == "MISS"
        redis = Redis.from_url(servers.redis_url)
        try:
            old_entry = await redis.get(entry)
            assert old_entry is not None
            await run_sql(servers.database_url, "UPDATE articles SET title = 'New'")

            assert await relay.drain() == 1
            assert await kept_rows(servers.database_url) == ["articles"]
            assert await redis.exists(entry) == 0
            r = await api.client.get(ARTICLE)
            assert (r.headers["x-cache"], r.json()["title"]) == ("MISS", "New")

            # A Redis that lacks the invalidation: the replaced entry is back in it.
            await redis.set(entry, old_entry, px=60_000)
            if api.state.near is not None:
                api.state.near.clear()  # as a switch to a master that lacks it does
            assert (await api.client.get(ARTICLE)).json()["title"] == "Old"
            assert await relay.replay_applied() == 1
            assert await redis.exists(entry) == 0
            assert await redis.exists(f"{scheme_prefix}:epoch") == 0, "leases were not revoked"
            r = await api.client.get(ARTICLE)
            assert (r.headers["x-cache"], r.json()["title"]) == ("MISS", "New")

            await asyncio.sleep(RETENTION_SECONDS + 0.2)
            assert await relay.replay_applied() == 0, "a row older than the period was replayed"
            assert await relay.drain() == 0
            assert await kept_rows(servers.database_url) == [], "the drain did not drop old rows"
        finally:
            await redis.aclose()
