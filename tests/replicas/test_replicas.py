"""Cache-miss loads on a real streaming replica: served there, never older than a write.

A primary and a replica made by ``pg_basebackup -R`` (see :mod:`tests.replicas.servers`); the
app runs with ``DATABASE_REPLICA_URLS`` naming the replica. Where statements ran is counted by
each server's ``pg_stat_statements``, independently of the app's own counts.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from redis.asyncio import Redis

from cache import KeyScheme
from tests.apps import EDITOR, Api, AppOn
from tests.faults.servers import PrivateRedis
from tests.polling import eventually
from tests.replicas.servers import StreamingPair
from tests.servers import run_sql
from tests.service.test_metrics import promtool_check, samples, scrape

#: Sampled often, with a lag bound a paused replay passes quickly.
SETTINGS: dict[str, Any] = {
    "database_replica_max_lag_seconds": 1.0,
    "database_replica_sample_interval_seconds": 0.1,
}


#: A lag bound no paused replay of these tests reaches: loads find the replica behind themselves.
PATIENT: dict[str, Any] = {"database_replica_max_lag_seconds": 60.0}


@asynccontextmanager
async def replicated_app(
    app_on: AppOn, pair: StreamingPair, redis: PrivateRedis, **overrides: Any
) -> AsyncIterator[Api]:
    """An app whose primary is the pair's primary and whose one replica is the pair's replica."""
    values = {**SETTINGS, **overrides}
    async with app_on(
        pair.primary.url(), redis.url, database_replica_urls=pair.replica.url(), **values
    ) as api:
        yield api


async def content_statements(url: str) -> int:
    """Statements on the content tables that ``url``'s server ran so far (pg_stat_statements)."""
    rows = await run_sql(
        url,
        "SELECT coalesce(sum(calls), 0)::bigint AS n FROM pg_stat_statements"
        " WHERE query LIKE '%articles.%' AND query NOT LIKE '%pg_stat_statements%'",
    )
    return int(rows[0]["n"])


class Counts:
    """Content statements each server ran between :meth:`start` and :meth:`delta`."""

    def __init__(self, pair: StreamingPair) -> None:
        self.pair = pair
        self.before = (0, 0)

    async def now(self) -> tuple[int, int]:
        return (
            await content_statements(self.pair.replica.url()),
            await content_statements(self.pair.primary.url()),
        )

    async def start(self) -> None:
        self.before = await self.now()

    async def delta(self) -> dict[str, int]:
        replica, primary = await self.now()
        return {"replica": replica - self.before[0], "primary": primary - self.before[1]}


async def replica_row(api: Api) -> dict[str, Any]:
    """The replica's row of ``/stats``'s ``db_replicas``."""
    rows = (await api.stats())["db_replicas"]["replicas"]
    assert len(rows) == 1, rows
    return dict(rows[0])


async def settle_replica(api: Api, pair: StreamingPair) -> None:
    """Apply the outbox, then wait until the replica has replayed the invalidation watermark."""
    await api.settle()
    # A client of its own: the app's has timeouts too tight for a busy test machine.
    client = Redis.from_url(api.state.settings.redis_url or "")
    try:
        raw = await client.get(KeyScheme(api.state.settings.cache_prefix).watermark())
    finally:
        await client.aclose()
    assert raw is not None, "no watermark recorded"
    watermark = int(raw)

    async def replayed() -> bool:
        rows = await run_sql(pair.replica.url(), "SELECT pg_last_wal_replay_lsn() - '0/0' AS p")
        return int(rows[0]["p"]) >= watermark

    await eventually(replayed, 10)


async def wait_for_state(api: Api, state: str, timeout_seconds: float = 15) -> dict[str, Any]:
    """Wait until ``/stats`` says the replica is in ``state``; return its row."""
    row: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal row
        row = await replica_row(api)
        return bool(row["state"] == state)

    await eventually(reached, timeout_seconds, interval=0.05)
    return row


async def publish(api: Api, slug: str, title: str) -> None:
    await api.create(
        "/api/v1/articles",
        {"title": title, "slug": slug, "body": "b", "author": "ann", "status": "published"},
    )


async def retitle(api: Api, slug: str, title: str) -> None:
    r = await api.client.patch(f"/api/v1/articles/{slug}", json={"title": title}, headers=EDITOR)
    assert r.status_code == 200, r.text


async def title_of(api: Api, slug: str) -> tuple[str, str]:
    r = await api.client.get(f"/api/v1/articles/{slug}")
    assert r.status_code == 200, r.text
    return r.headers["x-cache"], r.json()["title"]


async def test_cache_misses_are_loaded_from_the_replica_and_hits_touch_no_server(
    pair: StreamingPair, app_on: AppOn, private_redis: PrivateRedis
) -> None:
    async with replicated_app(app_on, pair, private_redis) as api:
        await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
        slugs = [f"post-{i}" for i in range(5)]
        for slug in slugs:
            await publish(api, slug, f"{slug} v0")
        await settle_replica(api, pair)
        await wait_for_state(api, "up")
        counts = Counts(pair)
        await counts.start()
        for slug in slugs:
            assert await title_of(api, slug) == ("MISS", f"{slug} v0")
        r = await api.client.get("/api/v1/articles")
        assert r.status_code == 200 and r.headers["x-cache"] == "MISS", r.text
        assert await counts.delta() == {"replica": 6, "primary": 0}
        await counts.start()
        for slug in slugs:
            assert await title_of(api, slug) == ("HIT", f"{slug} v0")
        assert await counts.delta() == {"replica": 0, "primary": 0}

        stats = (await api.stats())["db_replicas"]
        assert stats["primary_loads"] == 0, stats
        assert stats["replicas"][0]["loads"] == 6, stats
        assert sum(stats["replicas"][0]["skipped"].values()) == 0, stats
        text = await scrape(api)
        loads = {
            labels["server"]: value for labels, value in samples(text, "content_db_loads_total")
        }
        assert loads == {"primary": 0, pair.replica.url().split("@")[1]: 6}, loads
        promtool_check(text)


async def test_a_write_is_never_answered_with_the_old_value_while_replay_is_paused(
    pair: StreamingPair, app_on: AppOn, private_redis: PrivateRedis
) -> None:
    async with replicated_app(app_on, pair, private_redis, **PATIENT) as api:
        await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
        await publish(api, "alpha", "alpha v0")
        await settle_replica(api, pair)
        assert await title_of(api, "alpha") == ("MISS", "alpha v0")  # from the replica
        await run_sql(pair.replica.url(), "SELECT pg_wal_replay_pause()")

        counts = Counts(pair)
        served_by_primary = 0
        for version in range(1, 6):
            await retitle(api, "alpha", f"alpha v{version}")
            await counts.start()
            # Acknowledged: the item and the list answer the new title at once.
            assert await title_of(api, "alpha") == ("MISS", f"alpha v{version}")
            page = await api.client.get("/api/v1/articles")
            assert [a["title"] for a in page.json()["items"]] == [f"alpha v{version}"]
            delta = await counts.delta()
            assert delta == {"replica": 0, "primary": 2}, (version, delta)
            served_by_primary += delta["primary"]
        # The replica still holds what each write replaced.
        old = await run_sql(pair.replica.url(), "SELECT title FROM articles WHERE slug = 'alpha'")
        assert old[0]["title"] == "alpha v0"
        row = await replica_row(api)
        assert row["skipped"]["behind"] == served_by_primary == 10, row

        await run_sql(pair.replica.url(), "SELECT pg_wal_replay_resume()")
        await settle_replica(api, pair)
        await retitle(api, "alpha", "alpha v6")
        await settle_replica(api, pair)
        await counts.start()
        assert await title_of(api, "alpha") == ("MISS", "alpha v6")
        assert await counts.delta() == {"replica": 1, "primary": 0}
        print(f"\npaused replay: {served_by_primary} loads fell back to the primary; {row}")


async def test_without_the_replay_check_the_paused_replica_would_answer_the_old_value(
    pair: StreamingPair, app_on: AppOn, private_redis: PrivateRedis
) -> None:
    """The control: what the check above prevents does happen on these servers without it."""
    async with replicated_app(app_on, pair, private_redis, **PATIENT) as api:
        await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
        await publish(api, "alpha", "alpha v0")
        await settle_replica(api, pair)
        await run_sql(pair.replica.url(), "SELECT pg_wal_replay_pause()")
        replica: Any = api.state.replicas.replicas[0]

        async def admits_any(_: object) -> bool:
            return True

        replica.load_reads = replica._reads.guarded(admits_any)
        await retitle(api, "alpha", "alpha v1")
        assert await title_of(api, "alpha") == ("MISS", "alpha v0")


async def test_writes_by_plain_sql_reach_readers_through_the_outbox_despite_a_paused_replica(
    pair: StreamingPair, app_on: AppOn, private_redis: PrivateRedis
) -> None:
    async with replicated_app(app_on, pair, private_redis, **PATIENT) as api:
        await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
        await publish(api, "alpha", "alpha v0")
        await settle_replica(api, pair)
        assert await title_of(api, "alpha") == ("MISS", "alpha v0")
        await run_sql(pair.replica.url(), "SELECT pg_wal_replay_pause()")
        await run_sql(pair.primary.url(), "UPDATE articles SET title = 'alpha v1'")
        await api.settle()  # the relay applies the trigger's outbox row
        assert await title_of(api, "alpha") == ("MISS", "alpha v1")
        assert (await replica_row(api))["skipped"]["behind"] == 1


async def test_a_lagging_replica_is_skipped_and_counted_until_replay_resumes(
    pair: StreamingPair, app_on: AppOn, private_redis: PrivateRedis
) -> None:
    async with replicated_app(app_on, pair, private_redis) as api:
        await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
        await publish(api, "alpha", "alpha v0")
        await settle_replica(api, pair)
        await wait_for_state(api, "up")
        await run_sql(pair.replica.url(), "SELECT pg_wal_replay_pause()")
        await publish(api, "beta", "beta v0")  # WAL the replica does not replay
        row = await wait_for_state(api, "lagging")
        assert row["lag_seconds"] > 1.0, row

        counts = Counts(pair)
        await counts.start()
        assert await title_of(api, "alpha") == ("MISS", "alpha v0")
        assert await counts.delta() == {"replica": 0, "primary": 1}
        row = await replica_row(api)
        assert row["skipped"]["lagging"] == 1 and row["skipped"]["behind"] == 0, row
        text = await scrape(api)
        name = row["name"]
        skipped = {
            labels["reason"]: value
            for labels, value in samples(text, "content_db_replica_skipped_total")
            if labels["replica"] == name
        }
        assert skipped["lagging"] == 1, skipped
        lag = samples(text, "content_db_replica_lag_seconds")
        assert lag[0][0] == {"replica": name} and lag[0][1] > 1.0, lag
        assert samples(text, "content_db_replica_usable") == [({"replica": name}, 0.0)]

        await run_sql(pair.replica.url(), "SELECT pg_wal_replay_resume()")
        await wait_for_state(api, "up")
        await settle_replica(api, pair)
        await counts.start()
        assert await title_of(api, "beta") == ("MISS", "beta v0")
        assert await counts.delta() == {"replica": 1, "primary": 0}


async def test_a_stopped_replica_is_skipped_and_counted_until_it_is_back(
    pair: StreamingPair, app_on: AppOn, private_redis: PrivateRedis
) -> None:
    async with replicated_app(app_on, pair, private_redis) as api:
        await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
        await publish(api, "alpha", "alpha v0")
        await publish(api, "beta", "beta v0")
        await settle_replica(api, pair)
        await wait_for_state(api, "up")
        assert await title_of(api, "alpha") == ("MISS", "alpha v0")  # a pooled connection

        pair.replica.stop()
        await wait_for_state(api, "down")
        await api.state.invalidator.purge("article")
        started = time.monotonic()
        assert await title_of(api, "alpha") == ("MISS", "alpha v0")
        assert time.monotonic() - started < 1.0  # no wait for the dead server
        row = await replica_row(api)
        assert row["skipped"]["down"] == 1, row
        ready = await api.client.get("/health/ready")
        assert (ready.status_code, ready.json()["status"]) == (200, "ok")

        pair.replica.start()
        await wait_for_state(api, "up")
        counts = Counts(pair)
        await counts.start()
        assert await title_of(api, "beta") == ("MISS", "beta v0")
        assert await counts.delta() == {"replica": 1, "primary": 0}


VERSION = re.compile(r" v(\d+)$")


async def test_no_read_misses_an_acknowledged_write_with_a_delayed_and_paused_replica(
    pair: StreamingPair, app_on: AppOn, private_redis: PrivateRedis
) -> None:
    """Readers and writers through two apps while the replica replays each commit 20 ms late
    and is paused and resumed at random: every read is at least the last acknowledged version.
    """
    rng = random.Random(20261126)
    await run_sql(pair.replica.url(), "ALTER SYSTEM SET recovery_min_apply_delay = '20ms'")
    await run_sql(pair.replica.url(), "SELECT pg_reload_conf()")
    hot = ("alpha", "beta", "gamma")
    short = {"cache_ttls": "article=0.05,articles=0.05", "cache_early_refresh_beta": 5.0}
    try:
        async with AsyncExitStack() as stack:
            apps = [
                await stack.enter_async_context(
                    replicated_app(app_on, pair, private_redis, **short)
                )
                for _ in range(2)
            ]
            await apps[0].create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
            for slug in hot:
                await publish(apps[0], slug, f"{slug} v0")
            acked = dict.fromkeys(hot, 0)
            remaining = 3000
            violations: list[str] = []

            def check(title: str, floor: int, where: str) -> None:
                match = VERSION.search(title)
                assert match is not None, title
                if int(match.group(1)) < floor:
                    violations.append(f"{where}: {title!r} read after v{floor} was acknowledged")

            async def writer(slug: str) -> None:
                nonlocal remaining
                version = 0
                while remaining > 0:
                    remaining -= 1
                    version += 1
                    await retitle(rng.choice(apps), slug, f"{slug} v{version}")
                    acked[slug] = max(acked[slug], version)
                    await asyncio.sleep(rng.random() * 0.01)

            async def reader() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    api = rng.choice(apps)
                    floors = dict(acked)
                    if rng.random() < 0.7:
                        slug = rng.choice(hot)
                        check((await title_of(api, slug))[1], floors[slug], f"item {slug}")
                    else:
                        r = await api.client.get("/api/v1/articles?sort=title")
                        for item in r.json()["items"]:
                            check(item["title"], floors[item["slug"]], "list")

            async def replay_switch() -> None:
                while remaining > 0:
                    await run_sql(pair.replica.url(), "SELECT pg_wal_replay_pause()")
                    await asyncio.sleep(rng.random() * 0.3)
                    await run_sql(pair.replica.url(), "SELECT pg_wal_replay_resume()")
                    await asyncio.sleep(rng.random() * 0.3)

            await asyncio.gather(
                *(writer(s) for s in hot), *(reader() for _ in range(8)), replay_switch()
            )
            figures = [(await a.stats())["db_replicas"] for a in apps]
    finally:
        await run_sql(pair.replica.url(), "ALTER SYSTEM RESET recovery_min_apply_delay")
        await run_sql(pair.replica.url(), "SELECT pg_reload_conf()")
    assert violations == [], (len(violations), violations[:5])
    replica = figures[0]["replicas"][0]
    assert replica["loads"] > 0 and replica["skipped"]["behind"] > 0, figures[0]
    print(f"\nrandomized run with a delayed, paused replica: {figures[0]}")
