"""Fixtures of the replica tests: a primary and a streaming replica, made once per session.

They need Debian's PostgreSQL 15 binaries; without them the tests skip, unless
``CI_REQUIRE_PG_REPLICA`` is set (as ``.ci/run`` does): then they fail.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.replicas.servers import BIN, StreamingPair, missing_binaries
from tests.servers import run_sql, truncate


@pytest.fixture(scope="session")
def streaming_pair() -> Iterator[StreamingPair]:
    """A primary whose ``content`` database is migrated, and its replica; pg_stat_statements on."""
    missing = missing_binaries()
    if missing:
        reason = f"PostgreSQL 15 binaries {missing} not in {BIN} (apt-get install postgresql-15)"
        if os.environ.get("CI_REQUIRE_PG_REPLICA"):
            pytest.fail(f"CI_REQUIRE_PG_REPLICA is set but {reason}")
        pytest.skip(reason)
    from service.migrations import upgrade

    pair = StreamingPair()
    try:
        pair.init_primary()

        async def prepare() -> None:
            await run_sql(pair.primary.url("postgres"), "CREATE DATABASE content")
            await run_sql(pair.primary.url(), "CREATE EXTENSION pg_stat_statements")
            await upgrade(pair.primary.url())

        asyncio.run(prepare())
        pair.init_replica()
        yield pair
    finally:
        pair.remove()


@pytest.fixture
async def pair(streaming_pair: StreamingPair) -> AsyncIterator[StreamingPair]:
    """The pair with empty tables, the replica running and replaying; left so after the test."""
    await restore(streaming_pair)
    await truncate(streaming_pair.primary.url())
    yield streaming_pair
    await restore(streaming_pair)


async def restore(pair: StreamingPair) -> None:
    """Start the replica if a test stopped it; resume its replay if a test paused it."""
    if not pair.replica.is_running:
        pair.replica.start()
    await run_sql(pair.replica.url(), "SELECT pg_wal_replay_resume()")
