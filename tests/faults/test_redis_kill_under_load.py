"""Redis killed under concurrent reads of two workers: every read is answered, none is dropped.

The service runs as in production (``content-service serve --workers 2``) on a private
PostgreSQL and a private ``redis-server``. Sixteen readers loop over published articles while
Redis is killed (SIGKILL), started again, and killed again. Every read must get a complete HTTP
answer, 200 with ``X-Cache`` HIT, MISS or BYPASS (from PostgreSQL while Redis is down): a
connection closed without an answer, another status or a hang fails the test.

A read is also lost, with nothing logged, when the server closes an idle keep-alive connection
at the moment a client reuses it; the second test checks that the server keeps an idle
connection open for longer than httpx's clients count it reusable.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.faults.servers import (
    PrivatePostgres,
    PrivateRedis,
    free_port,
    stop_process,
    wait_for_port,
)
from tests.polling import eventually
from tests.servers import run_sql, truncate

READERS = 16
ARTICLES = 20
#: Kills of Redis in one run; Redis is started again after each but the last.
KILLS = 3
#: How long the readers run before each kill, and after it, in seconds.
PHASE_SECONDS = 0.6
#: How long a read may take before it counts as hung, in seconds.
READ_TIMEOUT_SECONDS = 10.0
ANSWERS = frozenset({"200 HIT", "200 MISS", "200 BYPASS"})
#: How long an idle connection stays reusable for an httpx client (``keepalive_expiry``).
HTTPX_KEEPALIVE_EXPIRY_SECONDS = httpx.Limits().keepalive_expiry or 5.0


@dataclass(frozen=True)
class Service:
    port: int
    log: Path


@pytest.fixture
def service_on_private_redis(
    private_postgres: PrivatePostgres, private_redis: PrivateRedis, tmp_path: Path
) -> Iterator[Service]:
    """``content-service serve --workers 2`` with published articles; its output to a file."""
    url = private_postgres.url("content")

    async def seed() -> None:
        await truncate(url)
        await run_sql(url, "INSERT INTO authors (username, display_name) VALUES ('ann', 'Ann')")
        await run_sql(
            url,
            "INSERT INTO articles (slug, title, body, body_format, author_id, status,"
            " published_at) SELECT 'kill-' || n, 'Kill ' || n, repeat('b', 2000), 'markdown', 1,"
            " 'published', now() FROM generate_series(1, $1::int) AS n",
            ARTICLES,
        )

        async def both_workers_listen() -> bool:
            rows = await run_sql(
                url,
                "SELECT count(*) AS n FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN%' AND datname = 'content'",
            )
            return bool(rows[0]["n"] >= 2)

        await eventually(both_workers_listen, 30, interval=0.1)

    port = free_port()
    log = tmp_path / "service.log"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": private_redis.url,
        "CACHE_PREFIX": f"kill-{port}",
        "STATS_FLUSH_INTERVAL_SECONDS": "0.2",
        "BREAKER_PROBE_INTERVAL_SECONDS": "0.1",
    }
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--workers", "2", "--port", str(port),
             "--log-level", "info"],
            env=env, stdout=output, stderr=output,
        )  # fmt: skip
        try:
            wait_for_port(port, 30)
            asyncio.run(seed())
            yield Service(port, log)
        finally:
            stop_process(server)


@dataclass(frozen=True)
class Read:
    started: float  # time.monotonic()
    seconds: float
    outcome: str  # "200 HIT", or what replaced the answer


async def _reader(client: httpx.AsyncClient, stop: asyncio.Event, reads: list[Read]) -> None:
    while not stop.is_set():
        slug = f"kill-{random.randint(1, ARTICLES)}"
        started = time.monotonic()
        try:
            r = await client.get(f"/api/v1/articles/{slug}")
        except httpx.HTTPError as exc:
            outcome = f"{type(exc).__name__}: {exc} (on {slug})"
        else:
            outcome = f"{r.status_code} {r.headers.get('x-cache')}"
            if r.status_code == 200 and r.json()["slug"] != slug:
                outcome = f"the body of another article (on {slug})"
        reads.append(Read(started, time.monotonic() - started, outcome))


async def test_every_read_is_answered_while_redis_is_killed_under_load(
    private_redis: PrivateRedis, service_on_private_redis: Service
) -> None:
    limits = httpx.Limits(max_connections=READERS, max_keepalive_connections=READERS)
    reads: list[Read] = []
    kills: list[float] = []
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{service_on_private_redis.port}",
        limits=limits,
        timeout=READ_TIMEOUT_SECONDS,
    ) as client:
        for n in range(1, ARTICLES + 1):  # cached: the first kill meets hits
            assert (await client.get(f"/api/v1/articles/kill-{n}")).status_code == 200
        stop = asyncio.Event()
        readers = [asyncio.create_task(_reader(client, stop, reads)) for _ in range(READERS)]
        try:
            for kill in range(KILLS):
                await asyncio.sleep(PHASE_SECONDS)
                kills.append(time.monotonic())
                await asyncio.to_thread(private_redis.kill)
                await asyncio.sleep(PHASE_SECONDS)
                if kill < KILLS - 1:
                    await asyncio.to_thread(private_redis.start)
            await asyncio.sleep(PHASE_SECONDS / 2)
        finally:
            stop.set()
            await asyncio.gather(*readers)

    tally = Counter(read.outcome for read in reads)
    failed = [read for read in reads if read.outcome not in ANSWERS]
    first = reads[0].started
    print(
        f"\n{len(reads)} reads by {READERS} readers, Redis killed {KILLS} times:"
        f" {dict(tally.most_common())}; slowest {max(r.seconds for r in reads) * 1000:.0f} ms"
    )
    for read in failed[:20]:
        print(
            f"  at +{(read.started - first) * 1000:.0f} ms (kills at"
            f" {[round((k - first) * 1000) for k in kills]} ms), after"
            f" {read.seconds * 1000:.0f} ms: {read.outcome}"
        )
    if failed:
        print("service log:\n" + service_on_private_redis.log.read_text(errors="replace")[-20000:])
    assert not failed, f"{len(failed)} of {len(reads)} reads got no proper answer"
    assert tally["200 BYPASS"] > 0 and tally["200 HIT"] > 0


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[int, bytes]:
    """Send one GET on an open connection; return the status and body of its answer."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
    body = await reader.readexactly(int(headers["content-length"]))
    return int(lines[0].split()[1]), body


async def test_an_idle_connection_stays_open_longer_than_clients_reuse_it(
    service_on_private_redis: Service,
) -> None:
    """A connection idle for as long as an httpx client may still reuse it is answered on.

    A server that closes it first races the client's next request: a request written as the
    server closes is lost, and the client sees the connection closed with no answer.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", service_on_private_redis.port)
    try:
        assert (await _exchange(reader, writer, "/api/v1/articles/kill-1"))[0] == 200
        idle_seconds = HTTPX_KEEPALIVE_EXPIRY_SECONDS + 0.5
        await asyncio.sleep(idle_seconds)
        try:
            status, body = await _exchange(reader, writer, "/api/v1/articles/kill-1")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise AssertionError(
                f"the server closed a connection idle for {idle_seconds} s, no longer than"
                f" httpx clients keep reusing one ({HTTPX_KEEPALIVE_EXPIRY_SECONDS} s): {exc!r}"
            ) from exc
        assert status == 200 and b'"slug":"kill-1"' in body
    finally:
        writer.close()
        await writer.wait_closed()
