from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from service import repository as repo
from service.errors import is_unreachable
from service.statements import DriverReads
from tests.apps import Api
from tests.servers import asyncpg_dsn, run_sql

MISSES = (
    "/api/v1/articles/hello-world",
    "/api/v1/articles/hello-world/comments",
    "/api/v1/articles?tag=caching&sort=title",
    "/api/v1/authors/ann",
    "/api/v1/tags?per_page=1",
)


async def test_misses_send_statements_compiled_once_without_building_any(
    api: Api, content: dict[str, Any]
) -> None:
    built: list[Any] = []
    engine = api.state.engine.sync_engine

    def executed(conn: Any, clause: Any, *args: Any) -> None:
        built.append(clause)

    # Fired by every SQLAlchemy execution with the statement object it was given.
    event.listen(engine, "before_execute", executed)
    try:
        sent: list[list[str]] = []
        for _ in range(2):
            await api.state.invalidator.purge(None)
            api.sql.reset()
            for path in MISSES:
                r = await api.client.get(path)
                assert (r.status_code, r.headers["x-cache"]) == (200, "MISS"), path
            sent.append(list(api.sql.statements))
    finally:
        event.remove(engine, "before_execute", executed)
    assert built == []  # no statement object reached SQLAlchemy's execution
    assert len(sent[0]) == len(MISSES)  # one statement per miss
    # The second round sent the very strings the first compiled: nothing was rebuilt.
    assert all(a is b for a, b in zip(sent[0], sent[1], strict=True))
    assert sent[0][0] is repo._ARTICLE.compiled(engine.dialect).sql


async def test_a_burst_of_misses_opens_no_connection_past_the_pool_size(api: Api) -> None:
    pool: Any = api.state.engine.pool
    await api.client.get("/api/v1/articles/warm-one-connection")
    opened: list[Any] = []

    def connected(*args: Any) -> None:
        opened.append(args)

    event.listen(pool, "connect", connected)
    try:
        answers = await asyncio.gather(
            *(api.client.get(f"/api/v1/articles/missing-{i}") for i in range(200))
        )
    finally:
        event.remove(pool, "connect", connected)
    assert {(r.status_code, r.headers["x-cache"]) for r in answers} == {(404, "MISS")}
    # Overflow connections would be opened and closed again and again under the burst.
    assert len(opened) <= pool.size() - 1, len(opened)
    assert pool.checkedout() == 0


async def test_an_argument_the_driver_rejects_is_not_an_outage(api: Api) -> None:
    reads = DriverReads(api.state.engine)
    pool: Any = api.state.engine.pool
    await repo.article_by_slug(reads, "warm")
    before = pool.checkedin()
    with pytest.raises(DBAPIError) as caught:
        await repo.article_by_slug(reads, 5)  # type: ignore[arg-type]
    assert not is_unreachable(caught.value)
    assert not caught.value.connection_invalidated
    assert pool.checkedin() == before  # the connection went back to the pool, intact
    assert await repo.article_by_slug(reads, "warm") is None


async def test_bad_slugs_answer_without_opening_the_database_breaker(api: Api) -> None:
    for _ in range(5):
        r = await api.client.get("/api/v1/articles/a%00b")
        assert r.status_code == 400, r.text
    assert api.state.database_breaker.allows()
    assert api.state.database_breaker.failures == 0
    assert (await api.client.get("/api/v1/articles/nothing")).status_code == 404


async def test_connections_lost_under_reads_are_replaced(api: Api, content: dict[str, Any]) -> None:
    reads = DriverReads(api.state.engine)
    pool: Any = api.state.engine.pool
    await asyncio.gather(*(repo.article_by_slug(reads, "hello-world") for _ in range(5)))
    open_before = pool.checkedin()
    await run_sql(
        api.state.settings.database_url or "",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = 'content-service'",
    )
    await asyncio.sleep(0.1)
    failures = 0
    for _ in range(pool.size() + 1):
        try:
            row = await repo.article_by_slug(reads, "hello-world")
        except Exception as exc:
            assert is_unreachable(exc), exc
            failures += 1
        else:
            assert row is not None and row["slug"] == "hello-world"
            break
    assert failures <= open_before
    # Each dead connection was dropped, not handed out again.
    for _ in range(pool.size()):
        assert await repo.article_by_slug(reads, "hello-world") is not None


async def test_a_read_cancelled_mid_statement_leaves_no_broken_connection(
    api: Api, content: dict[str, Any]
) -> None:
    reads = DriverReads(api.state.engine)
    pool: Any = api.state.engine.pool
    locker = await asyncpg.connect(**asyncpg_dsn(api.state.settings.database_url or ""))
    try:
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE articles IN ACCESS EXCLUSIVE MODE")  # reads wait
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(repo.article_by_slug(reads, "hello-world"), 0.2)
        await lock.rollback()
    finally:
        await locker.close()
    for _ in range(pool.size() + 1):
        row = await repo.article_by_slug(reads, "hello-world")
        assert row is not None and row["slug"] == "hello-world"
    assert pool.checkedout() == 0
