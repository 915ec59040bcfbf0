"""``/stats`` of ``content-service serve --workers 2``: both workers listed; a killed one drops out.

The service runs as in production, two uvicorn workers sharing one Redis; one worker is killed
with SIGKILL, so that it cannot remove its report: its heartbeat just stops. Each worker's near
cache is listed in ``/stats`` and has its own gauges in ``/metrics``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.faults.servers import free_port, stop_process, wait_for_port
from tests.polling import eventually
from tests.service.test_metrics import promtool_check, samples

INSTANCE = "two-workers"


@pytest.fixture
def two_workers(servers: Any, key_prefix: str) -> Iterator[str]:
    """The base URL of ``serve --workers 2`` on the run's servers, under its own key prefix."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": servers.database_url,
        "REDIS_URL": servers.redis_url,
        "CACHE_PREFIX": key_prefix,
        "INSTANCE_NAME": INSTANCE,
        "STATS_FLUSH_INTERVAL_SECONDS": "0.2",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--workers", "2", "--port", str(port),
         "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(server)


async def test_both_workers_are_listed_and_a_killed_one_drops_out_within_ten_seconds(
    two_workers: str,
) -> None:
    # A new connection per poll: a kept-alive one may belong to the worker that gets killed.
    no_keep_alive = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=two_workers, timeout=5, limits=no_keep_alive) as client:

        async def workers() -> list[dict[str, Any]]:
            r = await client.get("/stats")
            assert r.status_code == 200
            rows: list[dict[str, Any]] = r.json()["db_pool"]["workers"]
            return rows

        async def two_listed() -> bool:
            return len(await workers()) == 2

        await eventually(two_listed, 20, interval=0.2)
        stats = (await client.get("/stats")).json()
        pids = [w["pid"] for w in stats["db_pool"]["workers"]]
        assert {w["instance"] for w in stats["db_pool"]["workers"]} == {INSTANCE}
        assert sorted(w["pid"] for w in stats["redis"]["workers"]) == sorted(pids)
        assert stats["db_pool"]["size"] == 2 * 10  # DB_POOL_SIZE of each worker

        victim, survivor = pids
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()

        async def victim_gone() -> bool:
            return victim not in [w["pid"] for w in await workers()]

        await eventually(victim_gone, 10, interval=0.2)
        assert time.monotonic() - killed < 10
        assert survivor in [w["pid"] for w in await workers()]


async def test_each_worker_reports_its_near_cache_in_stats_and_metrics(two_workers: str) -> None:
    # One kept-alive connection: every read goes to the same worker, whose near cache fills.
    async with httpx.AsyncClient(base_url=two_workers, timeout=5) as client:

        async def near_hit() -> bool:
            r = await client.get("/api/v1/tags", params={"per_page": 7})
            assert r.status_code == 200, r.text
            return "detail=l1" in r.headers["cache-status"]

        await eventually(near_hit, 20, interval=0.1)

        async def both_leases_valid() -> bool:
            rows = (await client.get("/stats")).json()["l1"]["workers"]
            return len(rows) == 2 and all(row["lease_valid"] for row in rows)

        await eventually(both_leases_valid, 10, interval=0.2)
        stats = (await client.get("/stats")).json()
        l1 = stats["l1"]
        pids = sorted(w["pid"] for w in stats["db_pool"]["workers"])
        assert sorted(row["pid"] for row in l1["workers"]) == pids
        assert {row["instance"] for row in l1["workers"]} == {INSTANCE}
        assert max(row["entries"] for row in l1["workers"]) >= 1
        for field in ("max_bytes", "bytes", "entries"):
            assert l1[field] == sum(row[field] for row in l1["workers"])
        assert l1["max_bytes"] == 2 * 32 * 1024 * 1024  # CACHE_L1_MAX_BYTES of each worker
        assert stats["cache"]["tiers"]["l1"]["hits"] >= 1

        text = (await client.get("/metrics")).text
    by_pid = {
        int(labels["pid"]): value for labels, value in samples(text, "content_cache_l1_max_bytes")
    }
    assert by_pid == dict.fromkeys(pids, 32 * 1024 * 1024)
    valid = {int(labels["pid"]) for labels, _ in samples(text, "content_cache_l1_lease_valid")}
    assert valid == set(pids)
    entries = samples(text, "content_cache_l1_entries")
    assert max(value for _, value in entries) >= 1
    promtool_check(text)
