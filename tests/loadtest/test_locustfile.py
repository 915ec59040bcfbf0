"""The locust scenario, run headless in a subprocess against a real service on its own database.

locust (the ``load`` extra) brings gevent, which must never be imported by the pytest process:
both locust and the service run as subprocesses. Skipped when locust is not installed.
"""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import os
import socket
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.servers import run_sql

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None, reason="locust is not installed (the load extra)"
)

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtest" / "locustfile.py"
TOKEN = "loadtest-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _run(*args: str, env: dict[str, str], cwd: Path, limit_seconds: float) -> str:
    process = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), limit_seconds)
    text = out.decode()
    assert process.returncode == 0, text
    return text


def _read_csv(path: str) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@pytest.fixture
async def service_url(server_urls: tuple[str, str], tmp_path: Path) -> AsyncIterator[str]:
    """A seeded service on a database of its own, served by a subprocess; its base URL."""
    base_url, redis_url = server_urls
    name = f"cs_loadtest_{uuid.uuid4().hex[:12]}"
    await run_sql(base_url, f'CREATE DATABASE "{name}"')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOADTEST_")}
    env |= {
        "DATABASE_URL": make_url(base_url).set(database=name).render_as_string(False),
        "REDIS_URL": redis_url,
        "CACHE_PREFIX": f"cs-loadtest-{uuid.uuid4().hex[:8]}",
        "API_TOKENS": f"{TOKEN}:editor",
    }
    command = [sys.executable, "-m", "service"]
    port = _free_port()
    server = None
    try:
        await _run(*command, "migrate", env=env, cwd=tmp_path, limit_seconds=60)
        seed = ["seed", "--articles", "300", "--authors", "5", "--categories", "3", "--tags", "10"]
        await _run(*command, *seed, env=env, cwd=tmp_path, limit_seconds=60)
        server = await asyncio.create_subprocess_exec(
            *command, "serve", "--port", str(port), env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not await asyncio.to_thread(_answers, f"{url}/health/ready"):
            assert server.returncode is None, "the service exited"
            assert time.monotonic() < deadline, "the service did not start within 30 s"
            await asyncio.sleep(0.2)
        yield url
    finally:
        if server is not None and server.returncode is None:
            server.terminate()
            await asyncio.wait_for(server.wait(), 30)
        await run_sql(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_headless_run_reports_the_mix_and_the_cache_states(
    service_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOADTEST_")}
    env |= {
        "LOADTEST_TOKEN": TOKEN,
        "LOADTEST_MIX": "read=50,revalidate=20,list=10,search=10,write=10",
        "LOADTEST_WAIT_MS": "5",
    }
    report = tmp_path / "report"
    out = await _run(
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "4", "-r", "4",
        "-t", "4s", "--host", service_url, "--csv", str(report), "--only-summary",
        env=env, cwd=tmp_path, limit_seconds=60,
    )  # fmt: skip

    stats = {(row["Type"], row["Name"]): row for row in _read_csv(f"{report}_stats.csv")}
    names = {name for _, name in stats}
    assert {
        "/api/v1/articles/[slug]",
        "/api/v1/articles/[slug] (If-None-Match)",
        "/api/v1/articles?page=[n]",
        "/api/v1/articles?q=[word]",
    } <= names
    assert ("POST", "/api/v1/articles") in stats and ("PATCH", "/api/v1/articles/[slug]") in stats
    assert all(row["Failure Count"] == "0" for row in stats.values()), out

    rows = _read_csv(f"{report}_xcache.csv")
    mix = {(row["Name"], row["X-Cache"]): int(row["Count"]) for row in rows}
    assert mix["Aggregated", "HIT"] > 0 and mix["Aggregated", "MISS"] > 0
    # locust rewrites its CSV files every second, so they may miss the last second's requests.
    gets = sum(int(row["Request Count"]) for (kind, _), row in stats.items() if kind == "GET")
    assert sum(n for (name, _), n in mix.items() if name == "Aggregated") >= gets
    assert {name for kind, name in stats if kind == "GET"} <= {name for name, _ in mix}
    assert "X-Cache mix (GET answers)" in out
    not_modified = next(
        line for line in out.splitlines() if line.startswith("/api/v1/articles/[slug] (If-")
    )
    assert int(not_modified.split()[-1]) > 0  # revalidations answered 304, counted as successes
