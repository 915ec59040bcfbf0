"""``content-service seed``: synthetic authors, categories, tags, articles and comments.

Rows go in with PostgreSQL's COPY (asyncpg's ``copy_records_to_table``) in batches, so that a
million articles take minutes, not hours. Ids continue after the largest existing ones; the
sequences are moved past them at the end. Seeding writes around the ORM, so it ends by purging
the content namespaces of the cache (statistics are kept).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.keyspaces import NAMESPACES
from service.state import AppState

BATCH = 20_000
#: how long one COPY batch may take, in seconds
COPY_TIMEOUT_SECONDS = 600.0
WORDS = (
    "cache", "redis", "postgres", "latency", "index", "query", "tuning", "replica", "shard",
    "lease", "token", "stale", "fresh", "ttl", "jitter", "namespace", "tag", "invalidation",
    "herd", "stampede", "pool", "worker", "async", "event", "loop", "socket", "buffer",
    "stream", "queue", "commit", "rollback", "schema", "migration", "page", "cursor",
)  # fmt: skip


@dataclass(frozen=True)
class SeedCounts:
    """How many rows of each kind to add, and how large article bodies are.

    Attributes:
        body_bytes: inclusive range of article body sizes in bytes (ASCII), drawn uniformly
            per article; None for three paragraphs of 60 words (about 1.2 KB).
    """

    articles: int = 1000
    authors: int = 50
    categories: int = 10
    tags: int = 100
    comments_per_article: int = 2
    body_bytes: tuple[int, int] | None = None


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _body_text(rng: random.Random, size_range: tuple[int, int] | None) -> Callable[[], str]:
    """Return a function that draws one article body.

    With a size range, bodies are slices of one pre-drawn text of paragraphs (60 words each),
    cut at a random offset to a size drawn uniformly from the range: drawing each word of a
    million 8 KB bodies would take minutes.
    """
    if size_range is None:
        return lambda: "\n\n".join(_sentence(rng, 60) for _ in range(3))
    low, high = size_range
    if not 0 < low <= high:
        raise ValueError(f"invalid body size range {low}-{high}")
    paragraphs: list[str] = []
    length = 0
    while length < 2 * high:
        paragraphs.append(_sentence(rng, 60))
        length += len(paragraphs[-1]) + 2
    text_pool = "\n\n".join(paragraphs)

    def draw() -> str:
        size = rng.randint(low, high)
        start = rng.randrange(len(text_pool) - size)
        return text_pool[start : start + size].strip().ljust(size, ".")

    return draw


async def _max_id(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int(
            (await conn.execute(text(f"SELECT coalesce(max(id), 0) FROM {table}"))).scalar_one()
        )


async def _copy(
    engine: AsyncEngine, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]
) -> int:
    done = 0
    async with engine.begin() as conn:
        # One outbox row per copied row would double the work; the caller purges instead.
        # Transactional: the trigger is back on when this commits or rolls back.
        await conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER cache_outbox_row"))
        # A batch of large rows (their search vectors built on insert) may take longer than
        # the statement timeout meant for requests, on the server and in the client.
        await conn.execute(text("SET LOCAL statement_timeout = 0"))
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= BATCH:
                await raw.copy_records_to_table(
                    table, records=batch, columns=columns, timeout=COPY_TIMEOUT_SECONDS
                )
                done += len(batch)
                batch = []
        if batch:
            await raw.copy_records_to_table(
                table, records=batch, columns=columns, timeout=COPY_TIMEOUT_SECONDS
            )
            done += len(batch)
        await conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER cache_outbox_row"))
    return done


async def seed(
    state: AppState,
    counts: SeedCounts,
    *,
    rng_seed: int = 1,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Add synthetic rows by COPY and purge the content namespaces of the cache.

    Returns:
        Rows added by table name.
    """
    engine = state.engine
    rng = random.Random(rng_seed)
    now = datetime.now(UTC)
    first = {
        t: await _max_id(engine, t) + 1
        for t in ("authors", "categories", "tags", "articles", "comments")
    }
    added: dict[str, int] = {}

    def report(table: str, n: int) -> None:
        added[table] = n
        if progress:
            progress(table, n)

    a0, c0, t0, r0, m0 = (
        first[k] for k in ("authors", "categories", "tags", "articles", "comments")
    )
    report("authors", await _copy(engine, "authors", ["id", "username", "display_name", "bio"], (
        (a0 + i, f"author-{a0 + i}", f"Author {a0 + i}", _sentence(rng, 8))
        for i in range(counts.authors)
    )))  # fmt: skip
    report("categories", await _copy(engine, "categories", ["id", "slug", "name", "description"], (
        (c0 + i, f"category-{c0 + i}", f"Category {c0 + i}", _sentence(rng, 6))
        for i in range(counts.categories)
    )))  # fmt: skip
    report("tags", await _copy(engine, "tags", ["id", "slug", "name"], (
        (t0 + i, f"tag-{t0 + i}", f"Tag {t0 + i}") for i in range(counts.tags)
    )))  # fmt: skip

    body = _body_text(rng, counts.body_bytes)

    def articles() -> Iterator[tuple[Any, ...]]:
        for i in range(counts.articles):
            aid = r0 + i
            published = now - timedelta(minutes=rng.randrange(0, 525_600))
            status = "published" if rng.random() < 0.9 else "draft"
            yield (
                aid, f"article-{aid}", f"{_sentence(rng, 5).title()} {aid}", _sentence(rng, 20),
                body(), "markdown", status,
                a0 + rng.randrange(counts.authors) if counts.authors else 1,
                c0 + rng.randrange(counts.categories) if counts.categories else None,
                published, published, published,
            )  # fmt: skip

    report("articles", await _copy(engine, "articles", [
        "id", "slug", "title", "summary", "body", "body_format", "status", "author_id",
        "category_id", "published_at", "created_at", "updated_at",
    ], articles()))  # fmt: skip

    def links() -> Iterator[tuple[int, int]]:
        for i in range(counts.articles):
            if counts.tags:
                for tag in rng.sample(range(counts.tags), min(3, counts.tags)):
                    yield (r0 + i, t0 + tag)

    report("article_tags", await _copy(engine, "article_tags", ["article_id", "tag_id"], links()))
    per = counts.comments_per_article
    comment_columns = ["id", "article_id", "author_name", "body"]
    report("comments", await _copy(engine, "comments", comment_columns, (
        (m0 + i, r0 + i // per, f"reader-{rng.randrange(1000)}", _sentence(rng, 15))
        for i in range(counts.articles * per)
    )))  # fmt: skip
    async with engine.begin() as conn:
        for table in ("authors", "categories", "tags", "articles", "comments"):
            await conn.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM {table}))"
            ))  # fmt: skip
        await conn.execute(text("ANALYZE"))
    # With replicas, loads read one only once it has replayed the rows copied here.
    position = await state.replicas.position_after_write()
    await state.invalidator.revoke_leases(position=position)
    for namespace in NAMESPACES:
        await state.invalidator.purge(namespace)
    return added
