"""The near cache in the service: two workers answer from their L1, and a write drops both.

Two apps share the database and the Redis, as two workers do; each holds a near cache and a
lease. Also run on a Redis Cluster (``tests/cluster``), where the bus uses shard channels.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.apps import EDITOR, Api
from tests.servers import Servers, truncate

LEASE_MS = 400


async def invalidations_observed(api: Api) -> float:
    """How many invalidation messages ``api`` timed (``content_cache_invalidation_seconds``)."""
    metrics = (await api.client.get("/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "content_cache_invalidation_seconds"
        for sample in family.samples
        if sample.name.endswith("_count")
    )


async def published(api: Api, slug: str) -> None:
    await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
    await api.create(
        "/api/v1/articles",
        {"title": f"{slug} v0", "slug": slug, "body": "b", "author": "ann",
         "status": "published"},
    )  # fmt: skip


async def read_until_near(api: Api, path: str) -> dict[str, Any]:
    """Read ``path`` until the answer comes from the near cache (its lease needs one renewal)."""
    deadline = time.monotonic() + 5
    while True:
        r = await api.client.get(path)
        assert r.status_code == 200, r.text
        if "detail=l1" in r.headers["cache-status"]:
            assert r.headers["x-cache"] == "HIT"
            return dict(r.json())
        assert time.monotonic() < deadline, r.headers["cache-status"]
        await asyncio.sleep(0.02)


@asynccontextmanager
async def two_workers(servers: Servers, app_on: Any) -> AsyncIterator[tuple[Api, Api]]:
    """Two apps on emptied tables, each a near-cache holder with a lease of ``LEASE_MS``."""
    await truncate(servers.database_url)
    settings = {"cache_l1_lease_ms": LEASE_MS}
    async with (
        app_on(servers.database_url, servers.redis_url, **settings) as one,
        app_on(servers.database_url, servers.redis_url, **settings) as two,
    ):
        yield one, two


async def test_two_workers_answer_from_l1_and_a_write_drops_it_from_both(
    servers: Servers, app_on: Any
) -> None:
    async with two_workers(servers, app_on) as (one, two):
        await published(one, "alpha")
        for api in (one, two):
            assert (await read_until_near(api, "/api/v1/articles/alpha"))["title"] == "alpha v0"
        acknowledgements = one.state.bus.acknowledgements
        timed = await invalidations_observed(one)
        w = await one.client.patch(
            "/api/v1/articles/alpha", json={"title": "alpha v1"}, headers=EDITOR
        )
        assert w.status_code == 200
        # Acknowledged by both holders (one is the writer itself), no lease waited out.
        assert one.state.bus.acknowledgements >= acknowledgements + 2
        assert one.state.bus.lapsed == 0
        assert await invalidations_observed(one) > timed
        for api in (two, one):
            r = await api.client.get("/api/v1/articles/alpha")
            assert r.json()["title"] == "alpha v1"
            assert "detail=l1" not in r.headers["cache-status"]
        assert (await read_until_near(two, "/api/v1/articles/alpha"))["title"] == "alpha v1"


async def test_a_worker_that_stops_hearing_delays_a_write_by_its_lease_and_stops_answering(
    servers: Servers, app_on: Any
) -> None:
    async with two_workers(servers, app_on) as (one, two):
        await published(one, "beta")
        await read_until_near(two, "/api/v1/articles/beta")
        # The second worker's bus stops: no acknowledgement, no renewal (a frozen worker).
        task = two.state.bus._task
        assert task is not None
        task.cancel()
        started = time.monotonic()
        w = await one.client.patch(
            "/api/v1/articles/beta", json={"title": "beta v1"}, headers=EDITOR
        )
        waited = time.monotonic() - started
        assert w.status_code == 200
        assert one.state.bus.lapsed >= 1  # the outbox relay may have waited for it too
        assert waited < LEASE_MS / 1000 * 1.03 + 0.5, waited
        # Its fence lapsed before the write was answered: it reads through to Redis.
        r = await two.client.get("/api/v1/articles/beta")
        assert r.json()["title"] == "beta v1"
        assert "detail=l1" not in r.headers["cache-status"]
