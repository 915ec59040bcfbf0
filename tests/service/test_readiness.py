"""``/health/ready``: ok, degraded with one server down, 503 while starting or with none."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.engine import make_url

from service.app import create_app
from tests.apps import make_settings
from tests.faults.servers import PrivateRedis, free_port


def closed_database_url(servers: Any) -> str:
    """A PostgreSQL URL of the run's database, but on a port nothing listens on."""
    url = make_url(servers.database_url).set(host="127.0.0.1", port=free_port(), query={})
    return url.render_as_string(hide_password=False)


FAST = {"db_connect_timeout_seconds": 0.5, "redis_connect_timeout_seconds": 0.2}


async def test_ready_is_ok_with_both_servers(app_on: Any, servers: Any) -> None:
    async with app_on(servers.database_url, servers.redis_url) as api:
        r = await api.client.get("/health/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "redis": "ok", "postgres": "ok"}


async def test_ready_is_degraded_while_redis_is_down(
    app_on: Any, servers: Any, private_redis: PrivateRedis
) -> None:
    async with app_on(servers.database_url, private_redis.url, **FAST) as api:
        private_redis.kill()
        r = await api.client.get("/health/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "degraded", "redis": "unavailable", "postgres": "ok"}


async def test_ready_is_degraded_while_postgres_is_down(app_on: Any, servers: Any) -> None:
    async with app_on(closed_database_url(servers), servers.redis_url, **FAST) as api:
        r = await api.client.get("/health/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "degraded", "redis": "ok", "postgres": "unavailable"}


async def test_ready_is_503_when_neither_server_answers(
    app_on: Any, servers: Any, private_redis: PrivateRedis
) -> None:
    async with app_on(closed_database_url(servers), private_redis.url, **FAST) as api:
        private_redis.kill()
        r = await api.client.get("/health/ready")
    assert r.status_code == 503 and r.headers["retry-after"]
    assert r.headers["content-type"] == "application/problem+json"
    doc = r.json()
    assert (doc["status"], doc["readiness"]) == (503, "unavailable")
    assert (doc["redis"], doc["postgres"]) == ("unavailable", "unavailable")


async def test_ready_is_503_starting_before_the_lifespan_has_run(
    servers: Any, key_prefix: str
) -> None:
    app = create_app(make_settings(servers, key_prefix))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get("/health/ready")
        live = await client.get("/health/live")
    assert r.status_code == 503 and r.json()["readiness"] == "starting"
    assert live.status_code == 200


async def test_ready_is_ok_while_every_request_connection_is_checked_out(
    app_on: Any, servers: Any
) -> None:
    options = {"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout_seconds": 3}
    async with app_on(servers.database_url, servers.redis_url, **options) as api:
        held = await api.state.engine.connect()  # the request pool's only connection
        try:
            r = await api.client.get("/health/ready")
        finally:
            await held.close()
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "redis": "ok", "postgres": "ok"}
