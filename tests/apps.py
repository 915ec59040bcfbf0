"""A running app under test: its HTTP client, its state and the SQL its engine sent."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import httpx
import uvicorn

from service.settings import Settings
from service.state import AppState
from tests.faults.servers import free_port
from tests.servers import Servers, truncate

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
        """POST ``body`` as an editor, expect 201, and apply the outbox.

        Returns:
            The created resource's JSON object.
        """
        r = await self.client.post(path, json=body, headers=EDITOR)
        assert r.status_code == 201, (path, body, r.status_code, r.text)
        await self.settle()
        return cast(dict[str, Any], r.json())

    async def publish_articles(self, *slugs: str, title: str = "{slug} v0") -> None:
        """Create the author ``ann``, then a published article of hers at each of ``slugs``.

        Args:
            slugs: the articles' slugs.
            title: each article's title; ``{slug}`` stands for its slug.
        """
        await self.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
        for slug in slugs:
            await self.create(
                "/api/v1/articles",
                {"title": title.format(slug=slug), "slug": slug, "body": "b", "author": "ann",
                 "status": "published"},
            )  # fmt: skip

    async def settle(self) -> None:
        """Apply the outbox now: rows of earlier writes must not evict what a test warms next."""
        await self.state.relay.drain_all()

    async def stats(self) -> dict[str, Any]:
        """The ``/stats`` JSON object (expects 200)."""
        r = await self.client.get("/stats")
        assert r.status_code == 200, (r.status_code, r.text)
        return cast(dict[str, Any], r.json())


def make_settings(servers: Servers, key_prefix: str, **overrides: Any) -> Settings:
    """Settings of an app on ``servers`` with its own key prefix, ``overrides`` on top."""
    values: dict[str, Any] = {
        "database_url": servers.database_url,
        "redis_url": servers.redis_url,
        "api_tokens": "editor-token:editor,admin-token:admin",
        "cache_prefix": key_prefix,
        "stats_flush_interval_seconds": 0.2,
        **overrides,
    }
    return Settings(_env_file=None, **values)


class AppOn(Protocol):
    """The ``app_on`` fixture: an app on the given servers, for as long as its context lasts."""

    def __call__(
        self, database_url: str, redis_url: str, **overrides: Any
    ) -> AbstractAsyncContextManager[Api]: ...


@contextmanager
def uvicorn_thread(app: Any, **config: Any) -> Iterator[int]:
    """Run ``app`` under uvicorn on a free port, in a thread, while it lasts; yield the port.

    Args:
        app: the ASGI app (its lifespan runs).
        config: further ``uvicorn.Config`` settings (``http``, ``access_log``...).
    """
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **config
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@asynccontextmanager
async def app_with_articles(
    app_on: AppOn, servers: Servers, *slugs: str, title: str = "{slug} v0"
) -> AsyncIterator[Api]:
    """Empty the tables, open an app on ``servers`` and publish ``slugs`` with it; yield it.

    See :meth:`Api.publish_articles` for ``title``.
    """
    await truncate(servers.database_url)
    async with app_on(servers.database_url, servers.redis_url) as api:
        await api.publish_articles(*slugs, title=title)
        yield api
