"""``/stats`` counts exactly what happened, over every process on the Redis."""

from __future__ import annotations

from typing import Any

from tests.service.conftest import ADMIN, Api, make_settings


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
