from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from service.settings import Settings
from service.state import AppState
from tests.conftest import truncate

EDITOR = {"Authorization": "Bearer editor-token"}
ADMIN = {"Authorization": "Bearer admin-token"}


@dataclass
class StatementLog:
    """Every SQL statement the app's engine sent, by a before_cursor_execute listener."""

    statements: list[str] = field(default_factory=list)

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    def reset(self) -> None:
        self.statements.clear()

    @property
    def count(self) -> int:
        return len(self.statements)


@dataclass
class Api:
    client: httpx.AsyncClient
    state: AppState
    sql: StatementLog

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.client.post(path, json=body, headers=EDITOR)
        assert r.status_code == 201, r.text
        await self.settle()
        return r.json()

    async def settle(self) -> None:
        """Apply the outbox now: rows of earlier writes must not evict what a test warms next."""
        await self.state.relay.drain_all()

    async def stats(self) -> dict[str, Any]:
        r = await self.client.get("/stats")
        assert r.status_code == 200, r.text
        return r.json()


def make_settings(servers: Any, key_prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": servers.database_url,
        "redis_url": servers.redis_url,
        "api_tokens": "editor-token:editor,admin-token:admin",
        "cache_prefix": key_prefix,
        "stats_flush_interval_seconds": 0.2,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def api(servers: Any, app_on: Any) -> AsyncIterator[Api]:
    """An app on the run's database, emptied first, and its own key prefix."""
    await truncate(servers.database_url)
    async with app_on(servers.database_url, servers.redis_url) as api:
        yield api
        await api.state.invalidator.purge(None)


@pytest.fixture
async def content(api: Api) -> dict[str, Any]:
    """One author, category, two tags and one published article that uses them all."""
    author = await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann Lee"})
    category = await api.create("/api/v1/categories", {"name": "Guides"})
    t1 = await api.create("/api/v1/tags", {"name": "Async IO"})
    t2 = await api.create("/api/v1/tags", {"name": "Caching"})
    article = await api.create(
        "/api/v1/articles",
        {
            "title": "Hello World",
            "body": "Cache-aside reads, written once.",
            "summary": "A first article",
            "author": "ann",
            "category": "guides",
            "tags": ["async-io", "caching"],
            "status": "published",
        },
    )
    return {"author": author, "category": category, "tags": [t1, t2], "article": article}
