"""What a real ``content-service serve --workers 2`` exposes: metrics, logs, draining.

``http_requests_total`` in one scrape sums to exactly the requests both workers answered once
each has published them (every second; each worker writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR``, and the scraped worker reads them all); the exposition passes
``promtool check metrics``; every log line is one JSON object and the access log carries the
request's ``X-Request-ID``; after SIGTERM, with ``SHUTDOWN_DRAIN_SECONDS``, readiness answers
503 ``draining`` before the server stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.polling import eventually
from tests.service.served import Served, requests_by_pid, serving
from tests.service.test_metrics import promtool_check, samples

#: requests spread over the two workers before the scrape
REQUESTS = 240
CONCURRENCY = 8


@pytest.fixture(scope="module")
def multiproc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prometheus")


@pytest.fixture(scope="module")
def served(
    servers: Any, multiproc_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """Two workers with the access log on; their sample files in ``multiproc_dir``."""
    log = tmp_path_factory.mktemp("served") / "service.log"
    with serving(
        servers.database_url,
        servers.redis_url,
        log,
        "--workers", "2", "--access-log",
        PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir),
    ) as s:  # fmt: skip
        yield s


def fresh_client(served: Served) -> httpx.AsyncClient:
    """A client that opens a new connection for every request (so both workers get some)."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=0)
    return httpx.AsyncClient(base_url=served.url, limits=limits, timeout=10)


async def test_one_scrape_sums_the_requests_of_both_workers_exactly(
    served: Served, multiproc_dir: Path
) -> None:
    paths = ["/health/live" if i % 2 else f"/api/v1/articles/missing-{i}" for i in range(REQUESTS)]
    async with fresh_client(served) as client:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def get(path: str) -> int:
            async with gate:
                return (await client.get(path)).status_code

        statuses = await asyncio.gather(*(get(p) for p in paths))
        assert sorted(set(statuses)) == [200, 404]
        # Each worker publishes its answers every second: within one interval (and a margin)
        # a scrape sums every one of them, and never more.
        totals: list[float] = []
        scrapes: list[str] = []

        async def summed() -> bool:
            scrape = await client.get("/metrics")
            assert scrape.status_code == 200
            scrapes.append(scrape.text)
            answered = samples(scrape.text, "http_requests_total")
            totals.append(sum(v for labels, v in answered if labels["route"] != "/metrics"))
            return totals[-1] == REQUESTS

        waited = await eventually(summed, 5, interval=0.1)
    print(f"\nall {REQUESTS} answers in one scrape {waited:.2f} s after the last")
    assert max(totals) == REQUESTS, totals
    text = scrapes[-1]
    answered = samples(text, "http_requests_total")
    by_route = {(lb["route"], lb["status"]): v for lb, v in answered}
    assert by_route[("/health/live", "200")] == REQUESTS / 2
    assert by_route[("/api/v1/articles/{slug}", "404")] == REQUESTS / 2
    assert "missing-" not in text
    # Both workers answered some (each has its own sample file), and both are listed once per
    # pool gauge (label pid).
    per_worker = requests_by_pid(multiproc_dir)
    print(f"\n{REQUESTS} requests over fresh connections, by worker pid: {per_worker}")
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values())
    sizes = [lb for lb, _ in samples(text, "content_db_pool_connections") if lb["state"] == "size"]
    assert {int(lb["pid"]) for lb in sizes} == set(per_worker)
    promtool_check(text)


def log_lines(served: Served) -> list[dict[str, Any]]:
    """Every line the server printed, each parsed as JSON (a line that is not fails)."""
    lines = served.log.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


async def test_log_lines_are_json_and_the_access_log_carries_the_request_id(
    served: Served,
) -> None:
    async with fresh_client(served) as client:
        r = await client.get("/api/v1/articles/absent", headers={"X-Request-ID": "trace-7f3a"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "trace-7f3a"

    async def logged() -> bool:
        return any(line.get("request_id") == "trace-7f3a" for line in log_lines(served))

    await eventually(logged, 5)
    lines = log_lines(served)
    assert all({"time", "level", "logger", "message", "request_id"} <= set(x) for x in lines)
    assert any(x["logger"].startswith("uvicorn") for x in lines)  # uvicorn's own, as JSON
    (access,) = [x for x in lines if x.get("request_id") == "trace-7f3a"]
    assert access["logger"] == "service.access" and access["level"] == "INFO"
    assert access["method"] == "GET" and access["status"] == 404
    assert access["route"] == "/api/v1/articles/{slug}"
    assert access["path"] == "/api/v1/articles/absent"
    assert access["duration_ms"] > 0 and access["client"].startswith("127.0.0.1:")
    assert not any(x["logger"] == "uvicorn.access" for x in lines)


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_readiness_answers_draining_after_sigterm_until_the_server_stops(
    servers: Any, tmp_path: Path, workers: str
) -> None:
    with serving(
        servers.database_url,
        servers.redis_url,
        tmp_path / "service.log",
        "--workers", workers,
        SHUTDOWN_DRAIN_SECONDS="2",
    ) as s:  # fmt: skip
        async with fresh_client(s) as client:
            assert (await client.get("/health/ready")).json()["status"] == "ok"
            # Multiprocess mode also with one worker (whose uvicorn runs in serve's process).
            scrape = (await client.get("/metrics")).text
            assert 'content_db_pool_connections{pid="' in scrape
            os.kill(s.process.pid, signal.SIGTERM)
            sent = time.monotonic()

            async def draining() -> bool:
                r = await client.get("/health/ready")
                return r.status_code == 503 and r.json()["readiness"] == "draining"

            took = await eventually(draining, 1.5)
            # Other requests are still served while draining.
            assert (await client.get("/health/live")).status_code == 200
        exit_code = await asyncio.to_thread(s.process.wait, 20)
        stopped = time.monotonic() - sent
    print(f"\ndraining seen {took * 1000:.0f} ms after SIGTERM; stopped after {stopped:.1f} s")
    assert stopped >= 2.0
    assert exit_code is not None
    text = (tmp_path / "service.log").read_text()
    assert "draining: /health/ready answers 503" in text
