from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.apps import Api, AppOn
from tests.servers import Servers, truncate


@pytest.fixture
async def api(servers: Servers, app_on: AppOn) -> AsyncIterator[Api]:
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
