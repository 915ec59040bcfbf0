"""Fixtures of the fault tests: private servers they may stop, kill or pause."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from tests.faults.servers import PrivatePostgres, PrivateRedis


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private cluster whose ``content`` database is migrated; pg_stat_statements is on."""
    from service.migrations import upgrade

    pg = PrivatePostgres()
    pg.init()
    pg.start()
    try:

        async def prepare() -> None:
            conn = await asyncpg.connect(host="127.0.0.1", port=pg.port, user="postgres")
            try:
                await conn.execute("CREATE DATABASE content")
            finally:
                await conn.close()
            conn = await asyncpg.connect(
                host="127.0.0.1", port=pg.port, user="postgres", database="content"
            )
            try:
                await conn.execute("CREATE EXTENSION pg_stat_statements")
            finally:
                await conn.close()
            await upgrade(pg.url("content"))

        asyncio.run(prepare())
        yield pg
    finally:
        pg.remove()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.kill()
