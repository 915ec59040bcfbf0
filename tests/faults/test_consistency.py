"""A randomized run of concurrent readers and writers: no read misses an acknowledged write.

Two app instances share the database and the Redis (as two workers do). Writers set the
titles of a few hot articles to increasing versions; readers read the items and the list page
through either instance. For every read, each article's version must be at least the last one
acknowledged before that read started. Entries expire within milliseconds and are refreshed
in the background (stale-while-revalidate and early refresh), and each database read is
delayed at random, so that loads race writes all the time.

The always-run version does 10,000 operations; ``-m slow`` runs 100,000.
"""

from __future__ import annotations

import asyncio
import random
from contextlib import AsyncExitStack
from typing import Any

import pytest

from tests.apps import EDITOR, Api, app_with_articles
from tests.consistency import AcknowledgedVersions
from tests.servers import Servers, truncate

HOT = ("alpha", "beta", "gamma")
SETTINGS: dict[str, Any] = {
    "cache_ttls": "article=0.05,articles=0.05",
    "cache_jitter_ratio": 0.5,
    "cache_stale_while_revalidate_seconds": 0.2,
    "cache_early_refresh_beta": 5.0,
}


def slow_database(api: Api, rng: random.Random) -> None:
    """Delay each database read of ``api`` by 0 to 3 ms on both sides, as a loaded server would."""
    reader: Any = api.state.reader
    read = reader._read

    async def delayed(fn: Any) -> Any:
        await asyncio.sleep(rng.random() * 0.003)
        result = await read(fn)
        await asyncio.sleep(rng.random() * 0.003)
        return result

    reader._read = delayed


async def run(servers: Servers, app_on: Any, operations: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    await truncate(servers.database_url)
    async with AsyncExitStack() as stack:
        apps = [
            await stack.enter_async_context(
                app_on(servers.database_url, servers.redis_url, **SETTINGS)
            )
            for _ in range(2)
        ]
        await apps[0].publish_articles(*HOT)
        for api in apps:
            slow_database(api, rng)

        acked = AcknowledgedVersions(HOT)
        counts = {"reads": 0, "writes": 0}
        remaining = operations

        async def writer(slug: str) -> None:
            nonlocal remaining
            version = 0
            while remaining > 0:
                remaining -= 1
                version += 1
                api = rng.choice(apps)
                r = await api.client.patch(
                    f"/api/v1/articles/{slug}", json={"title": f"{slug} v{version}"}, headers=EDITOR
                )
                assert r.status_code == 200, r.text
                acked.acknowledge(slug, version)
                counts["writes"] += 1
                await asyncio.sleep(rng.random() * 0.004)

        async def reader() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                api = rng.choice(apps)
                floors = acked.floors()
                if rng.random() < 0.7:
                    slug = rng.choice(HOT)
                    r = await api.client.get(f"/api/v1/articles/{slug}")
                    assert r.status_code == 200, r.text
                    acked.check(floors, slug, r.json()["title"], f"item {slug}")
                else:
                    r = await api.client.get("/api/v1/articles?sort=title")
                    assert r.status_code == 200, r.text
                    for item in r.json()["items"]:
                        acked.check(floors, item["slug"], item["title"], "list")
                counts["reads"] += 1

        await asyncio.gather(*(writer(s) for s in HOT), *(reader() for _ in range(12)))
        stats = (await apps[0].stats())["cache"]
    counts["checked"] = acked.checked
    counts["violations"] = len(acked.violations)
    counts["store_rejected"] = stats["store_rejected"]
    counts["stale"] = stats["stale"]
    counts["refreshes"] = stats["refreshes"]
    assert acked.violations == [], acked.summary()
    return counts


async def test_no_read_misses_an_acknowledged_write(servers: Servers, app_on: Any) -> None:
    counts = await run(servers, app_on, 10_000, seed=20261124)
    assert counts["reads"] + counts["writes"] >= 10_000 and counts["violations"] == 0
    print(f"\nrandomized run: {counts}")


@pytest.mark.slow
async def test_no_read_misses_an_acknowledged_write_long(servers: Servers, app_on: Any) -> None:
    counts = await run(servers, app_on, 100_000, seed=7)
    assert counts["reads"] + counts["writes"] >= 100_000 and counts["violations"] == 0
    print(f"\nrandomized run: {counts}")


async def test_a_load_paused_across_a_write_does_not_store_the_old_row(
    servers: Servers, app_on: Any
) -> None:
    """The stale set, forced on the real servers: read old row, write commits, then store."""
    async with app_with_articles(app_on, servers, "alpha") as api:
        reader: Any = api.state.reader
        read = reader._read
        has_read, proceed = asyncio.Event(), asyncio.Event()

        async def paused(fn: Any) -> Any:
            result = await read(fn)  # the old row is in hand
            has_read.set()
            await proceed.wait()
            return result

        reader._read = paused
        old = asyncio.create_task(api.client.get("/api/v1/articles/alpha"))
        await has_read.wait()
        reader._read = read
        w = await api.client.patch(
            "/api/v1/articles/alpha", json={"title": "alpha v1"}, headers=EDITOR
        )
        assert w.status_code == 200  # committed, invalidated, acknowledged
        proceed.set()
        assert (await old).json()["title"] == "alpha v0"  # began before the write: may be old
        await api.settle()  # the outbox's copy of the write, applied now rather than later
        after = await api.client.get("/api/v1/articles/alpha")
        assert (after.headers["x-cache"], after.json()["title"]) == ("MISS", "alpha v1")
        assert (await api.stats())["cache"]["store_rejected"] == 1
