"""A full drain of the outbox (a recovery's) ends while writes go on, having applied every row
committed before it began.

On the run's PostgreSQL and Redis, with a relay of the test's own (the app's is stopped) that
takes one row per batch, so that a writer on its own connection commits rows faster than it
applies them.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from service.outbox import OutboxRelay
from tests.apps import AppOn, app_with_articles
from tests.servers import Servers, asyncpg_dsn, run_sql

#: seconds the drain may take; without its bound it chases the writer until this runs out
DRAIN_LIMIT_SECONDS = 10.0


async def test_a_full_drain_ends_under_steady_writes_after_the_rows_committed_before_it(
    servers: Servers, app_on: AppOn
) -> None:
    async with app_with_articles(app_on, servers, "busy") as api:
        await api.state.relay.aclose()  # this test's relay alone drains from here on
        relay = OutboxRelay(api.state.background_engine, api.state.invalidator, batch_size=1)
        committed = 0
        warmed = asyncio.Event()

        async def write() -> None:
            nonlocal committed
            conn = await asyncpg.connect(**asyncpg_dsn(servers.database_url))
            try:
                while True:
                    committed += 1
                    await conn.execute("UPDATE articles SET title = $1", f"v{committed}")
                    if committed == 200:
                        warmed.set()
            finally:
                await conn.close()

        writing = asyncio.create_task(write())
        try:
            await warmed.wait()
            newest = (await run_sql(servers.database_url, "SELECT max(id) FROM cache_outbox"))[0][0]
            async with asyncio.timeout(DRAIN_LIMIT_SECONDS):
                applied = await relay.drain_all()
            left = await run_sql(
                servers.database_url, "SELECT count(*) FROM cache_outbox WHERE id <= $1", newest
            )
            still_writing = not writing.done()
        finally:
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writing
    assert still_writing, "the writer stopped: the drain did not run against a stream of writes"
    assert left[0][0] == 0, "rows committed before the drain began were left"
    assert applied >= 200
