"""The article list's page statements under ``EXPLAIN (ANALYZE, BUFFERS)``.

The statements are the service's own: ``service.repository.article_page`` run by
``service.statements.DriverReads`` on an engine built by ``service.app.create_engine``, each
caught as sent with a ``before_cursor_execute`` listener, then run again under
``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` with the same arguments on a connection of that
engine. EXPLAIN plans a statement for its values (a custom plan), and its per-node timing adds
overhead per row: compare its figures with each other rather than with a miss's ``db;dur``.
Used by :mod:`benchmarks.pages`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.anchors import asyncpg_dsn
from service import repository as repo
from service.app import create_engine
from service.settings import Settings
from service.statements import DriverReads, Row

EXPLAIN = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
#: The tables the article list's statement reads, vacuumed before the measurements.
LIST_TABLES = ("articles", "article_tags", "authors", "categories", "tags", "series")
OFFSET, CURSOR = "offset", "cursor"
FIRST, LAST = "first", "last"
#: The pages measured, as (method, depth): page 1 and the last page by offset, page 2 and the
#: last page by keyset. Their order is the report's.
SHAPES = ((OFFSET, FIRST), (OFFSET, LAST), (CURSOR, FIRST), (CURSOR, LAST))
#: Page 1 by offset under the statement's generic plan (``plan_cache_mode``): the plan a
#: prepared statement switches to when the custom plans of its executions cost more on average
#: (as they do once deep offset pages are among them).
GENERIC = ("offset, generic plan", FIRST)

Shape = tuple[str, str]


@dataclass(frozen=True)
class Statement:
    """One page's statement as the service sends it.

    Attributes:
        sql: the compiled SQL, ``$n`` placeholders.
        args: its positional arguments.
        ids: the ids of the page's articles, in order.
    """

    sql: str
    args: tuple[Any, ...]
    ids: tuple[int, ...]


@dataclass(frozen=True)
class PlanFigures:
    """What one ``EXPLAIN (ANALYZE, BUFFERS)`` of a statement reported.

    Attributes:
        execution_ms: execution time (JIT compilation included), in milliseconds.
        header_ms: of it, the top node's InitPlans (the total's count and the next
            publication), in milliseconds.
        jit_ms: of it, JIT compilation, in milliseconds (0 when JIT did not run).
        shared_hit, shared_read: shared buffers (8 KiB blocks) found in and read into
            PostgreSQL's buffer cache.
        temp_blocks: temporary blocks read plus written (a sort or hash spilled to disk).
    """

    execution_ms: float
    header_ms: float
    jit_ms: float
    shared_hit: int
    shared_read: int
    temp_blocks: int


def plan_figures(explained: dict[str, Any]) -> PlanFigures:
    """Return the figures of one ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` document.

    Args:
        explained: the document's single element (``Plan``, ``Execution Time``, ``JIT``...).
    """
    top = explained["Plan"]
    header = sum(
        p["Actual Total Time"] * p["Actual Loops"]
        for p in top.get("Plans", [])
        if p.get("Parent Relationship") == "InitPlan"
    )
    return PlanFigures(
        execution_ms=explained["Execution Time"],
        header_ms=header,
        jit_ms=explained.get("JIT", {}).get("Timing", {}).get("Total", 0.0),
        shared_hit=top["Shared Hit Blocks"],
        shared_read=top["Shared Read Blocks"],
        temp_blocks=top["Temp Read Blocks"] + top["Temp Written Blocks"],
    )


def _key_of(row: Row) -> tuple[Any, ...]:
    """The keyset position after ``row`` in the default order: ``(published_at, id)``."""
    return row["published_at"], row["id"]


async def page_statements(engine: AsyncEngine, per_page: int) -> tuple[int, dict[Shape, Statement]]:
    """Run each measured page once as the service does; return the total and the statements.

    The keyset pages start after the last row of page 1 and of the page before the last.

    Raises:
        RuntimeError: the list has fewer than 3 pages, or the last page asked by keyset does not
            hold the articles of the last page asked by offset.
    """
    reads = DriverReads(engine)
    sent: list[tuple[str, tuple[Any, ...]]] = []

    def catch(conn: Any, cursor: Any, sql: str, args: Sequence[Any], *rest: Any) -> None:
        sent.append((sql, tuple(args)))

    async def run(query: repo.ArticleFilter) -> tuple[repo.Page, Statement]:
        page = await repo.article_page(reads, query)
        sql, args = sent[-1]
        return page, Statement(sql, args, tuple(r["id"] for r in page.rows))

    event.listen(engine.sync_engine, "before_cursor_execute", catch)
    try:
        first, first_offset = await run(repo.ArticleFilter(per_page=per_page))
        pages = math.ceil(first.total / per_page)
        if pages < 3:
            raise RuntimeError(f"{first.total} visible articles: fewer than 3 pages of {per_page}")
        _, last_offset = await run(repo.ArticleFilter(page=pages, per_page=per_page))
        before_last, _ = await run(repo.ArticleFilter(page=pages - 1, per_page=per_page))
        after = repo.ArticleFilter(per_page=per_page, after=_key_of(first.rows[-1]))
        _, first_cursor = await run(after)
        after = repo.ArticleFilter(per_page=per_page, after=_key_of(before_last.rows[-1]))
        _, last_cursor = await run(after)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", catch)
    if last_cursor.ids != last_offset.ids:
        raise RuntimeError(
            f"the last page by keyset {last_cursor.ids} is not the last by offset {last_offset.ids}"
        )
    statements = {
        (OFFSET, FIRST): first_offset,
        (OFFSET, LAST): last_offset,
        (CURSOR, FIRST): first_cursor,
        (CURSOR, LAST): last_cursor,
    }
    return first.total, statements


def _literal(value: object) -> str:
    """Return ``value`` (an int or a str) as an SQL literal.

    Raises:
        TypeError: ``value`` is neither.
    """
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no literal for {value!r}")


async def _explained(driver: Any, sql: str, *args: Any) -> PlanFigures:
    value = await driver.fetchval(EXPLAIN + sql, *args)
    # The engine's connections decode json columns; a plain connection gives text.
    document = orjson.loads(value) if isinstance(value, str | bytes) else value
    return plan_figures(document[0])


async def explain_rounds(
    engine: AsyncEngine, statements: dict[Shape, Statement], repeats: int
) -> dict[Shape, list[PlanFigures]]:
    """EXPLAIN every statement once per round, ``repeats`` rounds; return the figures by shape.

    Each round also EXPLAINs page 1 by offset prepared (``PREPARE``, then ``EXECUTE`` with its
    arguments as literals) under ``plan_cache_mode = force_generic_plan``, as :data:`GENERIC`.
    """
    figures: dict[Shape, list[PlanFigures]] = {shape: [] for shape in (*statements, GENERIC)}
    first = statements[OFFSET, FIRST]
    execute = f"EXECUTE offset_page({', '.join(_literal(a) for a in first.args)})"
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.execute(f"PREPARE offset_page AS {first.sql}")
        try:
            for _ in range(repeats):
                for shape, s in statements.items():
                    figures[shape].append(await _explained(driver, s.sql, *s.args))
                await driver.execute("SET plan_cache_mode = force_generic_plan")
                figures[GENERIC].append(await _explained(driver, execute))
                await driver.execute("RESET plan_cache_mode")
        finally:
            await driver.execute("DEALLOCATE offset_page")
    return figures


async def vacuum(dsn: str) -> str:
    """``VACUUM (ANALYZE)`` the tables the article list reads; return the server's version."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"VACUUM (ANALYZE) {', '.join(LIST_TABLES)}")
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


@dataclass(frozen=True)
class StatementCosts:
    """The statements' side of the run.

    Attributes:
        total: visible articles (the list's ``total``).
        plans: every round's figures, by shape.
        server_version: PostgreSQL's ``server_version``.
    """

    total: int
    plans: dict[Shape, list[PlanFigures]]
    server_version: str


async def statement_costs(env: dict[str, str], per_page: int, repeats: int) -> StatementCosts:
    """Vacuum, build the four statements and EXPLAIN them ``repeats`` rounds.

    The statements run on an engine built by the service's ``create_engine`` (its
    ``statement_timeout`` and json codec), one pooled connection.

    Raises:
        RuntimeError: see :func:`page_statements`.
    """
    version = await vacuum(asyncpg_dsn(env["DATABASE_URL"]))
    settings = Settings(database_url=env["DATABASE_URL"], redis_url=env["REDIS_URL"])
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    try:
        total, statements = await page_statements(engine, per_page)
        plans = await explain_rounds(engine, statements, repeats)
    finally:
        await engine.dispose()
    return StatementCosts(total, plans, version)
