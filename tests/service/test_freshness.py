"""Stale-while-revalidate, negative caching, scheduled publishing and writes made by plain SQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
import httpx

from tests.apps import EDITOR, Api
from tests.polling import eventually
from tests.servers import Servers, asyncpg_dsn, run_sql, truncate

ARTICLE = "/api/v1/articles/hello-world"


async def seed(api: Api, **article: Any) -> dict[str, Any]:
    await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
    await api.create("/api/v1/tags", {"name": "News"})
    body = {"title": "Hello World", "body": "b", "author": "ann", "status": "published"}
    return await api.create("/api/v1/articles", {**body, "tags": ["news"], **article})


async def test_expired_entries_answer_stale_while_one_refresh_runs(
    servers: Servers, app_on: Any
) -> None:
    await truncate(servers.database_url)
    settings = {
        "cache_ttls": "article=0.2",
        "cache_jitter_ratio": 0,
        "cache_stale_while_revalidate_seconds": 30,
    }
    async with app_on(servers.database_url, servers.redis_url, **settings) as api:
        await seed(api)
        await api.client.get(ARTICLE)
        await asyncio.sleep(0.25)
        api.sql.reset()
        answers = await asyncio.gather(*(api.client.get(ARTICLE) for _ in range(20)))
        stale = [r for r in answers if r.headers["x-cache"] == "STALE"]
        # The first gets the stale entry at once; later ones may see the refreshed one.
        assert answers[0] in stale and {r.status_code for r in answers} == {200}
        assert {r.headers["x-cache"] for r in answers} <= {"STALE", "HIT"}
        assert {r.headers["cache-control"] for r in stale} == {"public, max-age=0"}

        async def refreshed() -> bool:
            state: str = (await api.client.get(ARTICLE)).headers["x-cache"]
            if state == "STALE":
                stale.append(state)  # the refresh is still under way
            return state == "HIT"

        await eventually(refreshed, 2)
        assert api.sql.count == 1  # one refresh for twenty stale answers
        # A write still invalidates at once: no stale answer outlives it.
        await asyncio.sleep(0.25)
        r = await api.client.patch(ARTICLE, json={"title": "Changed"}, headers=EDITOR)
        assert r.status_code == 200
        after = await api.client.get(ARTICLE)
        assert (after.headers["x-cache"], after.json()["title"]) == ("MISS", "Changed")
        assert (await api.stats())["cache"]["stale"] == len(stale)


async def test_404s_are_cached_until_a_create_makes_them_wrong(api: Api) -> None:
    await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
    paths = [ARTICLE, ARTICLE + "/comments", "/api/v1/tags/news", "/api/v1/articles?tag=news"]
    for path in paths:
        first = await api.client.get(path)
        assert (first.status_code, first.headers["x-cache"]) == (404, "MISS"), path
        assert first.headers["content-type"] == "application/problem+json"
        api.sql.reset()
        second = await api.client.get(path, headers={"If-None-Match": first.headers["etag"]})
        assert (second.status_code, second.headers["x-cache"]) == (404, "HIT"), path
        assert second.json() == first.json() and api.sql.count == 0
    await api.client.post("/api/v1/tags", json={"name": "News"}, headers=EDITOR)
    await api.client.post(
        "/api/v1/articles",
        json={"title": "Hello World", "body": "b", "author": "ann", "status": "published",
              "tags": ["news"]},
        headers=EDITOR,
    )  # fmt: skip
    for path in paths:
        assert (await api.client.get(path)).status_code == 200, path


async def test_a_draft_published_by_patch_replaces_its_cached_404(api: Api) -> None:
    await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
    await api.create(
        "/api/v1/articles", {"title": "Hello World", "body": "b", "author": "ann"}
    )  # a draft
    assert (await api.client.get(ARTICLE)).status_code == 404
    assert (await api.client.get(ARTICLE)).headers["x-cache"] == "HIT"
    await api.client.patch(ARTICLE, json={"status": "published"}, headers=EDITOR)
    assert (await api.client.get(ARTICLE)).status_code == 200


async def test_scheduled_article_appears_everywhere_within_a_second(
    servers: Servers, app_on: Any
) -> None:
    await truncate(servers.database_url)
    async with app_on(servers.database_url, servers.redis_url, cache_ttl_seconds=300) as api:
        when = datetime.now(UTC) + timedelta(seconds=1.5)
        await seed(api, published_at=when.isoformat())
        views: dict[str, Callable[[httpx.Response], bool]] = {
            ARTICLE: lambda r: r.status_code == 200,
            "/api/v1/articles": lambda r: r.json()["total"] == 1,
            "/api/v1/articles?tag=news": lambda r: r.json()["total"] == 1,
            "/api/v1/authors/ann": lambda r: r.json()["article_count"] == 1,
            "/api/v1/authors": lambda r: r.json()["items"][0]["article_count"] == 1,
            "/api/v1/tags/news": lambda r: r.json()["article_count"] == 1,
        }
        for path, visible in views.items():
            await api.client.get(path)
            r = await api.client.get(path)
            assert r.headers["x-cache"] == "HIT" and not visible(r), path
        await asyncio.sleep(max(0.0, when.timestamp() - time.time()))
        late = []
        for path, visible in views.items():
            # No write happens: the entries must have been stored to expire by then.
            late.append(await eventually(partial(_shows, api, path, visible), 1.0))
        assert max(late) <= 1.0


async def _shows(api: Api, path: str, visible: Callable[[httpx.Response], bool]) -> bool:
    return bool(visible(await api.client.get(path)))


async def test_plain_sql_writes_are_invalidated_within_two_seconds(
    servers: Servers, app_on: Any
) -> None:
    await truncate(servers.database_url)
    async with app_on(servers.database_url, servers.redis_url) as api:
        article = await seed(api)
        await api.client.get(ARTICLE)
        await api.client.get("/api/v1/authors/ann")
        assert (await api.client.get(ARTICLE)).headers["x-cache"] == "HIT"

        await run_sql(servers.database_url, "UPDATE articles SET title = 'By psql' WHERE id = $1",
                      article["id"])  # fmt: skip
        took = await eventually(lambda: _title_is(api, "By psql"), 2.0)
        await run_sql(servers.database_url, "UPDATE authors SET display_name = 'Ann B'")
        await eventually(lambda: _author_is(api, "Ann B"), 2.0)
        await run_sql(servers.database_url, "DELETE FROM articles")
        await eventually(lambda: _status_is(api, 404), 2.0)
        assert took < 2.0

        async def outbox_is_empty() -> bool:
            return bool((await api.stats())["outbox"]["backlog"] == 0)

        # The relay lets a burst of notifications gather before it drains, within the bound.
        await eventually(outbox_is_empty, 2.0)
        print(f"\nplain-SQL UPDATE visible after {took * 1000:.0f} ms")


async def test_outbox_is_replayed_after_a_restart_and_a_lost_listener(
    servers: Servers, app_on: Any
) -> None:
    await truncate(servers.database_url)
    async with app_on(servers.database_url, servers.redis_url) as api:
        await seed(api)
        await api.client.get(ARTICLE)
    # The service is down; rows change; the cached entry is still in Redis.
    await run_sql(servers.database_url, "UPDATE articles SET title = 'While down'")
    async with app_on(servers.database_url, servers.redis_url) as api:
        # Applied at startup, before the first read.
        assert await _title_is(api, "While down")
        await api.client.get(ARTICLE)
        # Cut the relay's LISTEN connection; a change made meanwhile is still applied.
        await run_sql(
            servers.database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%' AND datname = current_database()",
        )
        await run_sql(servers.database_url, "UPDATE articles SET title = 'While cut'")
        await eventually(lambda: _title_is(api, "While cut"), 2.0)
        assert (await api.stats())["outbox"]["backlog"] == 0


async def test_service_writes_are_applied_by_the_outbox_alone(api: Api) -> None:
    """With the write's own invalidation lost, the outbox still applies the write."""
    await seed(api)
    await api.client.get(ARTICLE)
    await api.client.get(ARTICLE)

    async def lost(tags: Any) -> None:  # the commit-time invalidation never arrives
        return None

    api.state.unit_of_work._invalidate = lost  # type: ignore[method-assign]
    await api.client.patch(ARTICLE, json={"title": "Outbox only"}, headers=EDITOR)
    await eventually(lambda: _title_is(api, "Outbox only"), 2.0)


async def test_service_writes_wake_the_relays_only_when_their_invalidation_did_not_run(
    servers: Servers, app_on: Any
) -> None:
    """The service's writes invalidate themselves: their outbox rows notify no relay, unless
    their own invalidation was skipped (the Redis breaker is open) or failed."""
    await truncate(servers.database_url)
    listener = await asyncpg.connect(**asyncpg_dsn(servers.database_url))
    heard: list[str] = []
    try:
        await listener.add_listener("cache_outbox", lambda *args: heard.append(args[3]))

        async def heard_up_to(marker: str) -> list[str]:
            # Notifications come in commit order: once the marker is in, all before it are.
            await run_sql(servers.database_url, f"SELECT pg_notify('cache_outbox', '{marker}')")
            await eventually(lambda: _heard(heard, marker), 5.0)
            return heard

        # No poll within the test.
        async with app_on(
            servers.database_url, servers.redis_url, outbox_poll_interval_seconds=3600
        ) as api:
            await api.state.relay.aclose()
            await seed(api)
            r = await api.client.patch(ARTICLE, json={"title": "Quiet"}, headers=EDITOR)
            assert r.status_code == 200
            rows = await run_sql(servers.database_url, "SELECT table_name FROM cache_outbox")
            assert "articles" in {row["table_name"] for row in rows}  # recorded all the same
            assert await heard_up_to("first") == ["first"]
            api.state.redis_breaker.trip()
            r = await api.client.patch(ARTICLE, json={"title": "Skipped"}, headers=EDITOR)
            assert r.status_code == 200
            assert await heard_up_to("second") == ["first", "", "second"]
    finally:
        await listener.close()


async def _heard(heard: list[str], marker: str) -> bool:
    return marker in heard


async def _title_is(api: Api, title: str) -> bool:
    r = await api.client.get(ARTICLE)
    return r.status_code == 200 and r.json()["title"] == title


async def _author_is(api: Api, name: str) -> bool:
    r = await api.client.get("/api/v1/authors/ann")
    return bool(r.json()["display_name"] == name)


async def _status_is(api: Api, status: int) -> bool:
    return (await api.client.get(ARTICLE)).status_code == status


async def test_a_plain_sql_truncate_empties_what_it_touched(servers: Servers, app_on: Any) -> None:
    await truncate(servers.database_url)
    async with app_on(servers.database_url, servers.redis_url) as api:
        await seed(api)
        await api.client.get(ARTICLE)
        assert (await api.client.get(ARTICLE)).headers["x-cache"] == "HIT"
        await run_sql(servers.database_url, "TRUNCATE articles CASCADE")
        await eventually(lambda: _status_is(api, 404), 2.0)
