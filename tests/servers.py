"""The run's PostgreSQL and Redis, and plain SQL on its database outside the service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

import asyncpg
from sqlalchemy.engine import make_url


@dataclass(frozen=True)
class Servers:
    database_url: str  # postgresql+asyncpg:// of this run's own database
    redis_url: str


class AsyncpgDsn(TypedDict):
    """The keyword arguments of ``asyncpg.connect`` that name one database."""

    user: str
    password: str | None
    database: str
    host: str
    port: int


def asyncpg_dsn(url: str, database: str | None = None) -> AsyncpgDsn:
    """The ``asyncpg.connect`` arguments of a SQLAlchemy ``url`` (``?host=`` sockets included).

    Args:
        url: a ``postgresql+asyncpg://`` URL.
        database: the database to connect to instead of the URL's.
    """
    u = make_url(url)
    host = u.query.get("host") or u.host or "127.0.0.1"
    port = u.query.get("port") or u.port or 5432
    return {
        "user": u.username or "postgres",
        "password": u.password,
        "database": database or u.database or "postgres",
        "host": host if isinstance(host, str) else host[0],
        "port": int(port if isinstance(port, int | str) else port[0]),
    }


async def truncate(database_url: str) -> None:
    """Empty the content tables of ``database_url``, then the outbox (which the first fills)."""
    conn = await asyncpg.connect(**asyncpg_dsn(database_url))
    try:
        await conn.execute(
            "TRUNCATE comments, article_tags, articles, series, tags, categories, authors"
            " RESTART IDENTITY CASCADE; TRUNCATE cache_outbox"
        )
    finally:
        await conn.close()


async def run_sql(database_url: str, statement: str, *args: Any) -> list[Any]:
    """Run one statement outside the service, on its own connection (as psql would).

    Returns:
        The statement's rows (``asyncpg.Record``), empty for statements that return none.
    """
    conn = await asyncpg.connect(**asyncpg_dsn(database_url))
    try:
        return list(await conn.fetch(statement, *args))
    finally:
        await conn.close()
