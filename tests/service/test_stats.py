"""``/stats`` counts exactly what happened, over every process on the Redis."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.engine import Engine
from starlette.applications import Starlette

from service.app import create_app
from service.state import AppState
from tests.apps import ADMIN, Api, StatementLog, make_settings
from tests.polling import eventually
from tests.servers import run_sql


@asynccontextmanager
async def instance(
    servers: Any, prefix: str, name: str, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, AppState, Starlette]]:
    """Another running app (instance ``name``) on the same servers and key prefix."""
    app = create_app(make_settings(servers, prefix, instance_name=name, **overrides))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://o") as c,
    ):
        yield c, app.state.ctx, app


def instances(stats: dict[str, Any]) -> list[str]:
    return [w["instance"] for w in stats["db_pool"]["workers"]]


async def test_stats_count_exactly_the_hits_and_misses_made(
    api: Api, content: dict[str, Any]
) -> None:
    for _ in range(3):
        await api.client.get("/api/v1/articles/hello-world")
    await api.client.get("/api/v1/tags")
    stats = await api.stats()
    cache = stats["cache"]
    assert (cache["hits"], cache["misses"]) == (2, 2)
    assert cache["hit_ratio"] == 0.5
    article = cache["namespaces"]["article"]
    assert (article["hits"], article["misses"]) == (2, 1)
    assert abs(article["hit_ratio"] - 2 / 3) < 1e-9
    assert cache["namespaces"]["tags"]["misses"] == 1
    assert cache["namespaces"]["authors"] == {
        **cache["namespaces"]["authors"],
        "hits": 0,
        "hit_ratio": 0.0,
    }
    assert set(stats["db_pool"]) >= {"size", "checked_out", "checked_in", "overflow"}
    assert stats["db_pool"]["checked_out"] == 0
    assert set(stats["redis"]) >= {"used_memory_bytes", "keys", "evicted_keys", "pool_in_use"}
    assert stats["redis"]["used_memory_bytes"] > 0
    assert stats["warming"] == {"state": "idle", "current": None, "last_run": None}
    outbox = stats["outbox"]
    assert isinstance(outbox["backlog"], int) and outbox["lag_seconds"] >= 0
    assert datetime.fromisoformat(outbox["sampled_at"]).timestamp() <= time.time()


async def test_purge_all_resets_the_counters(api: Api, content: dict[str, Any]) -> None:
    await api.client.get("/api/v1/articles/hello-world")
    r = await api.client.post("/admin/cache/purge", json={"namespace": "all"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["purged"] >= 1
    cache = (await api.stats())["cache"]
    assert (cache["hits"], cache["misses"], cache["hit_ratio"]) == (0, 0, 0.0)


async def test_counters_are_summed_over_instances(
    api: Api, content: dict[str, Any], servers: Any
) -> None:
    import httpx

    from service.app import create_app

    other = create_app(make_settings(servers, api.state.settings.cache_prefix))
    async with (
        other.router.lifespan_context(other),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://b") as c2,
    ):
        await api.client.get("/api/v1/articles/hello-world")
        await c2.get("/api/v1/articles/hello-world")
        await c2.get("/api/v1/articles/hello-world")
    cache = (await api.stats())["cache"]  # the other app flushed its counts on shutdown
    assert (cache["hits"], cache["misses"]) == (2, 1)


async def test_stats_token_guards_stats_when_set(servers: Any, key_prefix: str) -> None:
    import httpx

    from service.app import create_app

    app = create_app(make_settings(servers, key_prefix, stats_token="s3cret"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        assert (await c.get("/stats")).status_code == 401
        assert (
            await c.get("/stats", headers={"Authorization": "Bearer s3cret"})
        ).status_code == 200
        assert (
            await c.get("/stats", headers={"Authorization": "Bearer admin-token"})
        ).status_code == 200


async def test_every_live_instance_is_listed_and_summed_then_leaves_at_once_on_shutdown(
    api: Api, servers: Any
) -> None:
    prefix = api.state.settings.cache_prefix
    async with instance(servers, prefix, "second") as (_, _, _):

        async def both_listed() -> bool:
            return sorted(instances(await api.stats())) == sorted(
                [api.state.settings.instance_name, "second"]
            )

        await eventually(both_listed, 5)
        stats = await api.stats()
        db_rows, redis_rows = stats["db_pool"]["workers"], stats["redis"]["workers"]
        assert {(w["instance"], w["pid"]) for w in redis_rows} == {
            (w["instance"], w["pid"]) for w in db_rows
        }
        for field in ("size", "checked_out", "checked_in", "overflow"):
            assert stats["db_pool"][field] == sum(w[field] for w in db_rows)
        assert stats["db_pool"]["size"] == 2 * api.state.settings.db_pool_size
        assert stats["redis"]["pool_in_use"] == sum(w["pool_in_use"] for w in redis_rows)
        assert stats["redis"]["pool_max"] == 2 * api.state.settings.redis_max_connections
        for row in db_rows:
            assert row["started_at"].endswith("Z") and row["reported_at"].endswith("Z")
    # The other instance removed itself on shutdown: gone from the very next poll.
    assert instances(await api.stats()) == [api.state.settings.instance_name]


async def test_an_instance_whose_heartbeat_stops_drops_out_within_ten_seconds(
    api: Api, servers: Any
) -> None:
    prefix = api.state.settings.cache_prefix
    async with instance(servers, prefix, "crashing") as (_, other, _):

        async def listed() -> bool:
            return "crashing" in instances(await api.stats())

        await eventually(listed, 5)
        await other.stats.aclose()  # its flushes, and so its heartbeats, stop here
        stopped = time.monotonic()

        async def gone() -> bool:
            return "crashing" not in instances(
                await api.stats(),
            )

        await eventually(gone, 10, interval=0.2)
        assert time.monotonic() - stopped < 10
        # The stale report was pruned from Redis by the poll that saw it.
        fields = await api.state.redis.hkeys(api.state.workers.key)
        assert fields == [api.state.workers.member.encode()]


async def test_rates_of_the_last_ten_seconds_count_the_reads_just_made(
    api: Api, content: dict[str, Any]
) -> None:
    reads = 12
    for _ in range(reads):
        assert (await api.client.get("/api/v1/articles/hello-world")).status_code == 200
    rates = (await api.stats())["rates"]
    assert set(rates) == {"10s", "1m", "5m"}
    for window, length, width in (("10s", 10, 1), ("1m", 60, 10), ("5m", 300, 10)):
        figures = rates[window]
        seconds = figures["seconds"]
        assert length <= seconds <= length + width  # whole buckets, the current one partial
        per_second = figures["per_second"]
        counted = {state: round(rate * seconds) for state, rate in per_second.items()}
        assert counted == {"hit": reads - 1, "miss": 1, "stale": 0, "bypass": 0}, window
        assert abs(figures["requests_per_second"] * seconds - reads) < 1e-6
        assert abs(figures["hit_ratio"] - (reads - 1) / reads) < 1e-9


async def test_rates_are_summed_over_instances(
    api: Api, content: dict[str, Any], servers: Any
) -> None:
    prefix = api.state.settings.cache_prefix
    async with instance(servers, prefix, "reader") as (client, _, _):
        for _ in range(5):
            await client.get("/api/v1/tags")
    await api.client.get("/api/v1/tags")
    figures = (await api.stats())["rates"]["10s"]
    assert round(figures["requests_per_second"] * figures["seconds"]) == 6
    assert round(figures["per_second"]["miss"] * figures["seconds"]) == 1


async def test_polling_stats_runs_no_sql_statement(servers: Any, key_prefix: str) -> None:
    log = StatementLog()
    # Every engine of the process: the request pool's, the relay's and the sampler's.
    event.listen(Engine, "before_cursor_execute", log)
    try:
        async with instance(
            servers,
            key_prefix,
            "quiet",
            outbox_poll_interval_seconds=60,
            outbox_sample_interval_seconds=60,
        ) as (client, state, _):
            await eventually(lambda: _has_sample(state), 5)
            log.reset()
            for _ in range(20):
                r = await client.get("/stats")
                assert r.status_code == 200
            assert log.statements == []
            assert r.json()["outbox"]["backlog"] == 0
    finally:
        event.remove(Engine, "before_cursor_execute", log)


async def _has_sample(state: AppState) -> bool:
    return state.backlog.latest is not None


async def test_outbox_backlog_and_lag_come_from_the_last_sample(
    servers: Any, key_prefix: str
) -> None:
    # No drain and no periodic sample during the test: only the samples it takes itself.
    slow = {"outbox_poll_interval_seconds": 60, "outbox_sample_interval_seconds": 3600}
    async with instance(servers, key_prefix, "sampler", **slow) as (
        client,
        state,
        _,
    ):
        await state.relay.aclose()  # nor its first drain, which may come after the insert
        baseline = await state.backlog.sample_now()
        assert baseline is not None
        rows = await run_sql(
            servers.database_url,
            "INSERT INTO cache_outbox (table_name, op, new_row, created_at) VALUES"
            " ('tags', 'INSERT', '{\"id\": 0}', clock_timestamp() - interval '30 seconds')"
            " RETURNING id",
        )
        try:
            before = (await client.get("/stats")).json()["outbox"]
            assert await state.backlog.sample_now() is not None
            outbox = (await client.get("/stats")).json()["outbox"]
        finally:
            delete = "DELETE FROM cache_outbox WHERE id = $1"
            await run_sql(servers.database_url, delete, rows[0]["id"])
    # The poll did not count the rows: it answered the sample taken before the insert.
    assert before["backlog"] == baseline.backlog
    assert outbox["backlog"] == baseline.backlog + 1
    assert 30 <= outbox["lag_seconds"] < 60
    assert outbox["sampled_at"] > before["sampled_at"]


async def read_until_near_hit(client: httpx.AsyncClient, path: str) -> int:
    """Read ``path`` until the near cache answers it (its lease needs one renewal after startup).

    Returns:
        The reads made.
    """
    reads = 0

    async def near_hit() -> bool:
        nonlocal reads
        r = await client.get(path)
        reads += 1
        assert r.status_code == 200, r.text
        return "detail=l1" in r.headers["cache-status"]

    await eventually(near_hit, 10, interval=0.05)
    return reads


async def test_near_cache_hits_show_in_the_tiers_and_in_the_workers_near_cache_row(
    api: Api, content: dict[str, Any]
) -> None:
    reads = await read_until_near_hit(api.client, "/api/v1/articles/hello-world")
    assert reads >= 2  # the first read is a miss, whose stored load fills the near cache
    stats = await api.stats()
    cache = stats["cache"]
    tiers = cache["tiers"]
    assert tiers["l1"]["hits"] == cache["l1_hits"] >= 1
    assert cache["namespaces"]["article"]["l1_hits"] == cache["l1_hits"]
    assert tiers["l1"]["hits"] + tiers["l2"]["hits"] == cache["hits"]
    assert tiers["l1"]["stale"] + tiers["l2"]["stale"] == cache["stale"]
    assert abs(tiers["l1"]["hit_ratio"] + tiers["l2"]["hit_ratio"] - cache["hit_ratio"]) < 1e-9
    assert tiers["l1"]["hit_ratio"] == tiers["l1"]["hits"] / (cache["hits"] + cache["misses"])

    l1 = stats["l1"]
    settings = api.state.settings
    assert (l1["lease_ms"], l1["lease_check"]) == (settings.cache_l1_lease_ms, True)
    (row,) = l1["workers"]
    assert (row["instance"], row["pid"]) == (settings.instance_name, os.getpid())
    assert row["entries"] >= 1 and row["lease_valid"] is True
    assert row["max_bytes"] == settings.cache_l1_max_bytes
    assert 0 < row["bytes"] <= row["max_bytes"]
    assert row["evictions"] == 0
    for field in ("max_bytes", "bytes", "entries"):
        assert l1[field] == row[field]


async def test_near_cache_of_every_live_worker_is_listed_and_summed_one_off_reports_zero(
    api: Api, content: dict[str, Any], servers: Any
) -> None:
    prefix = api.state.settings.cache_prefix
    async with instance(servers, prefix, "no-near-cache", cache_l1_max_bytes=0) as (c, _, _):

        async def both_listed() -> bool:
            return len((await api.stats())["l1"]["workers"]) == 2

        await eventually(both_listed, 5)
        await read_until_near_hit(api.client, "/api/v1/articles/hello-world")
        # The instance without a near cache reads from Redis only, and says so.
        r = await c.get("/api/v1/articles/hello-world")
        assert r.headers["x-cache"] == "HIT" and "detail=l1" not in r.headers["cache-status"]
        stats = await api.stats()
        rows = {row["instance"]: row for row in stats["l1"]["workers"]}
        assert set(rows) == {api.state.settings.instance_name, "no-near-cache"}
        off = rows["no-near-cache"]
        assert (off["max_bytes"], off["bytes"], off["entries"], off["lease_valid"]) == (
            0,
            0,
            0,
            False,
        )
        on = rows[api.state.settings.instance_name]
        assert on["entries"] >= 1 and on["lease_valid"] is True
        for field in ("max_bytes", "bytes", "entries"):
            assert stats["l1"][field] == on[field] + off[field]
        # The same live workers as the pools list.
        assert sorted((w["instance"], w["pid"]) for w in stats["db_pool"]["workers"]) == sorted(
            (w["instance"], w["pid"]) for w in stats["l1"]["workers"]
        )
