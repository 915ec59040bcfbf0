"""The thundering herd across processes: 500 concurrent cold reads, 2 workers, 1 database load.

The service runs as it would in production (``content-service serve --workers 2``) on a
private PostgreSQL whose ``pg_stat_statements`` counts the statements the burst caused.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.faults.servers import PrivatePostgres, free_port, stop_process, wait_for_port
from tests.polling import eventually
from tests.servers import Servers, run_sql, truncate

BURST = 500


@pytest.fixture
def two_workers(
    servers: Servers, private_postgres: PrivatePostgres, key_prefix: str
) -> Iterator[int]:
    """``content-service serve --workers 2`` on the private PostgreSQL; yields its port."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": private_postgres.url("content"),
        "REDIS_URL": servers.redis_url,
        "CACHE_PREFIX": key_prefix,
        "DB_POOL_SIZE": "5",
        "STATS_FLUSH_INTERVAL_SECONDS": "0.2",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--workers", "2", "--port", str(port),
         "--log-level", "warning"],
        env=env,
    )  # fmt: skip
    try:
        wait_for_port(port, 30)
        yield port
    finally:
        stop_process(server)


async def test_cold_burst_across_two_workers_loads_once(
    private_postgres: PrivatePostgres, two_workers: int
) -> None:
    url = private_postgres.url("content")
    await truncate(url)
    await run_sql(url, "INSERT INTO authors (username, display_name) VALUES ('ann', 'Ann')")
    await run_sql(
        url,
        "INSERT INTO articles (slug, title, body, body_format, author_id, status, published_at)"
        " VALUES ('cold', 'Cold', 'b', 'markdown', 1, 'published', now())",
    )

    async def both_workers_listen() -> bool:
        rows = await run_sql(
            url,
            "SELECT count(*) AS n FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%' AND datname = 'content'",
        )
        return bool(rows[0]["n"] == 2)

    await eventually(both_workers_listen, 30, interval=0.1)
    await asyncio.sleep(0.5)  # the relays have applied the inserts above
    await run_sql(url, "SELECT pg_stat_statements_reset()")

    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{two_workers}", limits=limits, timeout=30
    ) as client:
        # Hold the table locked while the burst arrives, so that the load of the worker that
        # wins the lease is slow and every request of both workers misses.
        blocker = await asyncpg.connect(host="127.0.0.1", port=private_postgres.port,
                                        user="postgres", database="content")  # fmt: skip
        try:
            async with blocker.transaction():
                await blocker.execute("LOCK TABLE articles IN ACCESS EXCLUSIVE MODE")
                burst = asyncio.gather(*(client.get("/api/v1/articles/cold") for _ in range(BURST)))
                await asyncio.sleep(0.5)
            answers = await burst
        finally:
            await blocker.close()
        await asyncio.sleep(0.5)  # both workers flush their counters
        stats = (await client.get("/stats")).json()["cache"]

    assert {r.status_code for r in answers} == {200}
    assert len({r.content for r in answers}) == 1
    loads = await article_loads(url)
    assert loads == 1, loads
    # Both workers missed: the one that lost the load lease waited for the winner's value.
    assert stats["lease_losses"] >= 1 and stats["herd_timeouts"] == 0
    print(
        f"\n{BURST} cold requests, 2 workers: {loads} PostgreSQL load;"
        f" X-Cache {_tally(answers)}; lease losses {stats['lease_losses']},"
        f" coalesced {stats['coalesced']}, herd timeouts {stats['herd_timeouts']}"
    )


async def article_loads(url: str) -> int:
    """Return how many times the article item's statement ran (``pg_stat_statements``)."""
    rows = await run_sql(
        url,
        "SELECT coalesce(sum(calls), 0) AS calls FROM pg_stat_statements"
        " WHERE query LIKE '%articles.slug = $%' AND query LIKE '%comment_count%'",
    )
    return int(rows[0]["calls"])


def _tally(answers: list[Any]) -> dict[str, int]:
    tally: dict[str, int] = {}
    for r in answers:
        tally[r.headers["x-cache"]] = tally.get(r.headers["x-cache"], 0) + 1
    return tally
