"""Fixtures of the fault tests: private servers they may stop, kill or pause."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.faults.servers import PrivatePostgres
from tests.servers import run_sql


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private cluster whose ``content`` database is migrated; pg_stat_statements is on."""
    from service.migrations import upgrade

    pg = PrivatePostgres()
    pg.init()
    pg.start()
    try:

        async def prepare() -> None:
            await run_sql(pg.url("postgres"), "CREATE DATABASE content")
            await run_sql(pg.url("content"), "CREATE EXTENSION pg_stat_statements")
            await upgrade(pg.url("content"))

        asyncio.run(prepare())
        yield pg
    finally:
        pg.remove()
