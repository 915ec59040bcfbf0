"""Warming jobs over the content: sources, batches, one job at a time, state for any instance."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import httpx

from cache import JobProgress
from service.app import create_app
from tests.apps import ADMIN, EDITOR, Api, make_settings
from tests.polling import eventually


async def _articles(api: Api, n: int) -> list[str]:
    slugs = []
    for i in range(n):
        doc = await api.create(
            "/api/v1/articles",
            {"title": f"Warm {i}", "body": "x" * 50, "author": "ann", "status": "published"},
        )
        slugs.append(doc["slug"])
    return slugs


async def _finished(api: Api, job_id: str) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    async def ended() -> bool:
        job = (await api.client.get(f"/admin/cache/warm/{job_id}", headers=ADMIN)).json()
        seen.append(job)
        return job["state"] not in ("queued", "running")

    await eventually(ended, timeout_seconds=20)
    return seen[-1]


async def test_a_keys_job_loads_each_batch_of_articles_with_one_statement(
    api: Api, content: dict[str, Any]
) -> None:
    slugs = await _articles(api, 5)
    await api.settle()
    await api.state.invalidator.purge(None)
    api.sql.reset()
    r = await api.client.post(
        "/admin/cache/warm",
        json={"source": "keys", "keys": [f"article:{s}" for s in slugs] + ["article:nope"]},
        headers=ADMIN,
    )
    assert r.status_code == 202
    job_id = r.json()["job_id"]
    assert r.headers["location"] == f"/admin/cache/warm/{job_id}"
    job = await _finished(api, job_id)
    assert job["state"] == "done"
    assert (job["total"], job["done"], job["skipped"], job["errors"]) == (6, 5, 1, 0)
    assert job["started_at"] and job["finished_at"] and job["source"] == "keys"
    assert len(api.sql.statements) == 1  # one batch: one statement for six slugs
    assert "ANY" in api.sql.statements[0].upper()
    for slug in slugs:
        hit = await api.client.get(f"/api/v1/articles/{slug}")
        assert hit.headers["x-cache"] == "HIT"
    # Warming a second time skips what is fresh, and loads nothing.
    api.sql.reset()
    r = await api.client.post(
        "/admin/cache/warm",
        json={"source": "keys", "keys": slugs, "namespace": "article"},
        headers=ADMIN,
    )
    job = await _finished(api, r.json()["job_id"])
    assert (job["done"], job["skipped"]) == (0, 5)
    assert api.sql.statements == []


async def test_recent_warms_the_newest_articles_and_the_first_pages(
    api: Api, content: dict[str, Any]
) -> None:
    slugs = await _articles(api, 3)
    await api.settle()
    await api.state.invalidator.purge(None)
    r = await api.client.post(
        "/admin/cache/warm", json={"source": "recent", "limit": 2}, headers=ADMIN
    )
    job = await _finished(api, r.json()["job_id"])
    assert job["state"] == "done" and job["errors"] == 0
    # the two newest articles, and the first page of articles, authors, categories, tags, series
    assert (job["total"], job["done"]) == (7, 7)
    for path in (
        f"/api/v1/articles/{slugs[-1]}",
        f"/api/v1/articles/{slugs[-2]}",
        "/api/v1/articles",
        "/api/v1/authors",
        "/api/v1/categories",
        "/api/v1/tags",
    ):
        assert (await api.client.get(path)).headers["x-cache"] == "HIT", path
    assert (await api.client.get(f"/api/v1/articles/{slugs[0]}")).headers["x-cache"] == "MISS"


async def test_hot_warms_what_was_read_most(servers: Any, app_on: Any) -> None:
    from tests.servers import truncate

    await truncate(servers.database_url)
    async with app_on(
        servers.database_url, servers.redis_url, cache_hot_keys_sample_rate=1.0
    ) as api:
        await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
        slugs = await _articles(api, 4)
        for slug, reads in zip(slugs, (5, 3, 1, 0), strict=True):
            for _ in range(reads):
                await api.client.get(f"/api/v1/articles/{slug}")
        await api.client.get("/api/v1/tags?per_page=5")
        await api.state.stats.flush()
        top = await api.state.warming.plan(_request(source="hot", namespace="article", limit=2))
        assert [t.identity for t in top] == slugs[:2]
        await api.state.invalidator.purge(None)
        r = await api.client.post("/admin/cache/warm", json={"limit": 10}, headers=ADMIN)
        job = await _finished(api, r.json()["job_id"])
        assert (job["total"], job["done"], job["source"]) == (4, 4, "hot")
        assert (await api.client.get("/api/v1/tags?per_page=5")).headers["x-cache"] == "HIT"
        assert (await api.client.get(f"/api/v1/articles/{slugs[3]}")).headers["x-cache"] == "MISS"
        await api.state.invalidator.purge(None)


def _request(**fields: Any) -> Any:
    from service.admin_requests import WarmRequest

    return WarmRequest(**fields)


async def test_one_job_at_a_time_any_instance_answers_and_cancel_stops_it(
    api: Api, content: dict[str, Any], servers: Any
) -> None:
    release = asyncio.Event()

    async def slow(progress: JobProgress) -> None:
        progress.total = 10
        progress.add(done=3)
        await release.wait()

    job_id = await api.state.warming.jobs.start({"source": "keys"}, slow)
    r = await api.client.post("/admin/cache/warm", json={}, headers=ADMIN)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["job_id"] == job_id
    other = create_app(make_settings(servers, api.state.settings.cache_prefix))
    async with (
        other.router.lifespan_context(other),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://b") as c2,
    ):
        seen: list[dict[str, Any]] = []

        async def progressed() -> bool:
            seen.append((await c2.get(f"/admin/cache/warm/{job_id}", headers=ADMIN)).json())
            return bool(seen[-1]["done"] == 3 and seen[-1]["state"] == "running")

        await eventually(progressed, timeout_seconds=5)
        job = seen[-1]
        assert job["total"] == 10 and job["keys_per_second"] >= 0
        stats = (await c2.get("/stats")).json()["warming"]
        assert stats["state"] == "running" and stats["current"]["job_id"] == job_id
        r = await c2.delete(f"/admin/cache/warm/{job_id}", headers=ADMIN)
        assert r.status_code == 202
    job = await _finished(api, job_id)
    assert job["state"] == "cancelled"
    r = await api.client.delete(f"/admin/cache/warm/{job_id}", headers=ADMIN)
    assert r.status_code == 409
    stats = (await api.stats())["warming"]
    assert stats["state"] == "idle" and stats["last_run"]["job_id"] == job_id


async def test_a_job_whose_runner_died_is_failed_once_its_lease_lapses(
    api: Api, content: dict[str, Any]
) -> None:
    # What a runner killed mid-job leaves: its lock (the lease) and a running job's state.
    redis, scheme = api.state.redis, api.state.keys.article.scheme
    await redis.set(scheme.warming_lock, "dead0001", px=300)
    await redis.hset(
        scheme.warming_job("dead0001"),
        mapping={
            "job_id": "dead0001",
            "state": "running",
            "source": "hot",
            "total": 9,
            "done": 2,
            "skipped": 0,
            "errors": 0,
            "started_at": "2026-01-01T00:00:00Z",
        },
    )
    r = await api.client.get("/admin/cache/warm/dead0001", headers=ADMIN)
    assert r.json()["state"] == "running"
    assert (await api.client.post("/admin/cache/warm", json={}, headers=ADMIN)).status_code == 409
    await asyncio.sleep(0.4)
    job = (await api.client.get("/admin/cache/warm/dead0001", headers=ADMIN)).json()
    assert (job["state"], job["done"]) == ("failed", 2)
    assert job["error"] and job["finished_at"]
    r = await api.client.post("/admin/cache/warm", json={}, headers=ADMIN)
    assert r.status_code == 202
    await _finished(api, r.json()["job_id"])


async def test_bad_warm_requests_are_400_and_need_an_admin(api: Api) -> None:
    for body in (
        {"source": "keys"},
        {"source": "keys", "keys": ["no-namespace"]},
        {"namespace": "nope"},
        {"source": "cold"},
        {"limit": 0},
        {"source": "hot", "keys": ["article:a"]},
    ):
        r = await api.client.post("/admin/cache/warm", json=body, headers=ADMIN)
        assert r.status_code == 400, body
    assert (await api.client.post("/admin/cache/warm", json={})).status_code == 401
    assert (await api.client.post("/admin/cache/warm", json={}, headers=EDITOR)).status_code == 403
    assert (await api.client.get("/admin/cache/warm/nope", headers=ADMIN)).status_code == 404


async def _command(api: Api, servers: Any, *args: str, **env: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        *args,
        env={
            **os.environ,
            "DATABASE_URL": servers.database_url,
            "REDIS_URL": servers.redis_url,
            "CACHE_PREFIX": api.state.settings.cache_prefix,
            **env,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode or 0, out.decode()


async def test_the_warm_command_reports_a_summary_and_fills_the_cache(
    api: Api, content: dict[str, Any], servers: Any
) -> None:
    slugs = await _articles(api, 3)
    await api.settle()
    await api.state.invalidator.purge(None)
    status, out = await _command(
        api, servers, "warm", "--source", "keys", "--namespace", "article", "--keys", *slugs
    )
    assert status == 0, out
    assert "done: 3 keys, 3 loaded, 0 skipped, 0 errors" in out
    for slug in slugs:
        assert (await api.client.get(f"/api/v1/articles/{slug}")).headers["x-cache"] == "HIT"
    # While a job runs, the command does not start a second one.
    release = asyncio.Event()

    async def hold(progress: JobProgress) -> None:
        await release.wait()

    job_id = await api.state.warming.jobs.start({"source": "hot"}, hold)
    status, out = await _command(api, servers, "warm", "--source", "recent")
    release.set()
    assert status == 1 and f"warming job {job_id} is running" in out


async def test_seed_warms_the_newest_content_when_asked(
    api: Api, content: dict[str, Any], servers: Any
) -> None:
    status, out = await _command(
        api,
        servers,
        "seed",
        "--articles",
        "30",
        "--authors",
        "3",
        "--categories",
        "2",
        "--tags",
        "3",
        WARM_AFTER_IMPORT="true",
        WARM_DEFAULT_LIMIT="10",
    )
    assert status == 0, out
    assert "done: 15 keys, 15 loaded" in out  # 10 newest articles and 5 first pages
    assert (await api.client.get("/api/v1/articles")).headers["x-cache"] == "HIT"


async def test_hot_keys_are_summed_over_instances(servers: Any, app_on: Any) -> None:
    from tests.servers import truncate

    await truncate(servers.database_url)
    async with app_on(
        servers.database_url, servers.redis_url, cache_hot_keys_sample_rate=1.0
    ) as api:
        await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
        first, second = await _articles(api, 2)
        other = create_app(
            make_settings(servers, api.state.settings.cache_prefix, cache_hot_keys_sample_rate=1.0)
        )
        async with (
            other.router.lifespan_context(other),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://b") as c2,
        ):
            for _ in range(3):
                await api.client.get(f"/api/v1/articles/{first}")
            for _ in range(2):
                await api.client.get(f"/api/v1/articles/{second}")
                await c2.get(f"/api/v1/articles/{second}")
        await api.state.stats.flush()  # the other one flushed as it closed
        top = await api.state.warming.plan(_request(source="hot", namespace="article"))
        assert [t.identity for t in top] == [second, first]  # 4 reads over two, then 3
        await api.state.invalidator.purge(None)


async def _last_job(api: Api) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    async def ended() -> bool:
        seen.append((await api.stats())["warming"])
        return seen[-1]["state"] == "idle" and seen[-1]["last_run"] is not None

    await eventually(ended, timeout_seconds=20)
    job: dict[str, Any] = seen[-1]["last_run"]
    return job


async def test_warm_on_startup_and_after_purge_when_asked(servers: Any, app_on: Any) -> None:
    from tests.servers import truncate

    await truncate(servers.database_url)
    async with app_on(servers.database_url, servers.redis_url) as api:
        await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
        slugs = await _articles(api, 2)
        await api.settle()
    options = {"warm_on_startup": True, "warm_after_purge": True}
    async with app_on(servers.database_url, servers.redis_url, **options) as api:
        first = await _last_job(api)  # nothing read yet: 2 newest articles, 5 first pages
        assert (first["source"], first["state"], first["done"]) == ("hot", "done", 7)
        assert (await api.client.get(f"/api/v1/articles/{slugs[0]}")).headers["x-cache"] == "HIT"
        r = await api.client.post("/admin/cache/purge", json={"namespace": "all"}, headers=ADMIN)
        assert r.status_code == 200

        async def another() -> bool:
            job = (await api.stats())["warming"]["last_run"]
            return job is not None and job["job_id"] != first["job_id"]

        await eventually(another, timeout_seconds=20)
        assert (await api.client.get("/api/v1/articles")).headers["x-cache"] == "HIT"
        await api.state.invalidator.purge(None)


async def test_the_hottest_keys_are_refreshed_before_they_expire(servers: Any, app_on: Any) -> None:
    from tests.servers import truncate

    await truncate(servers.database_url)
    options = {
        "cache_hot_keys_sample_rate": 1.0,
        "cache_ttls": "article=1.5",
        "cache_jitter_ratio": 0,
        "cache_stale_while_revalidate_seconds": 0,
        "cache_early_refresh_beta": 0,
        "warm_refresh_top_n": 5,
        "warm_refresh_interval_seconds": 0.5,
    }
    async with app_on(servers.database_url, servers.redis_url, **options) as api:
        await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
        (slug,) = await _articles(api, 1)
        await api.settle()
        assert (await api.client.get(f"/api/v1/articles/{slug}")).headers["x-cache"] == "MISS"
        await api.state.stats.flush()  # the read is now among the hot keys
        # Read again well after the TTL (1.5 s): the refresh kept the entry fresh.
        await asyncio.sleep(3.5)
        assert (await api.client.get(f"/api/v1/articles/{slug}")).headers["x-cache"] == "HIT"
        # Refreshes ran (the newest may have found the entry still fresh for long enough).
        assert (await api.stats())["warming"]["last_run"]["state"] == "done"
        await api.state.invalidator.purge(None)
