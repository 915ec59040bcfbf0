"""The COPY seeder: rows land, the cache is purged, and the outbox is not flooded."""

from __future__ import annotations

from sqlalchemy import text

from service.seed import SeedCounts, seed
from tests.apps import Api


async def test_seed_adds_rows_and_purges_without_outbox_rows(api: Api) -> None:
    await api.client.get("/api/v1/articles")
    counts = SeedCounts(articles=40, authors=3, categories=2, tags=5, comments_per_article=1)
    added = await seed(api.state, counts)
    assert added["articles"] == 40 and added["comments"] == 40
    assert (await api.state.relay.sample()).backlog == 0  # the row trigger was off during COPY
    page = await api.client.get("/api/v1/articles")
    assert page.headers["x-cache"] == "MISS" and page.json()["total"] > 0
    async with api.state.engine.connect() as conn:  # every row trigger is back on
        enabled = await conn.scalar(
            text("SELECT count(*) FROM pg_trigger WHERE tgname = 'cache_outbox_row'"
                 " AND tgenabled = 'O'")
        )  # fmt: skip
    assert enabled == 7  # one per content table


async def test_seed_draws_article_bodies_within_the_size_range(api: Api) -> None:
    counts = SeedCounts(articles=30, authors=1, categories=1, tags=2, body_bytes=(2048, 8192))
    await seed(api.state, counts)
    async with api.state.engine.connect() as conn:
        low, high = (
            await conn.execute(text("SELECT min(octet_length(body)), max(octet_length(body))"
                                    " FROM articles WHERE slug LIKE 'article-%'"))
        ).one()  # fmt: skip
    assert 2048 <= low <= high <= 8192
