"""The application factory and its lifespan.

Nothing is built at import: ``create_app(settings)`` returns an app whose lifespan builds the
engine, the Redis client and the cache on startup and closes them on shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import orjson
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from starlette.applications import Starlette

from cache import (
    BoundedConnectionPool,
    CachePolicy,
    CacheStats,
    Invalidator,
    KeyScheme,
    LeaseStore,
    PolicyTable,
    ReadThroughCache,
    SessionTagCollector,
)
from service import embedded
from service.auth import TokenAuthority
from service.keyspaces import ContentKeys, tags_for_change
from service.migrations import upgrade
from service.problems import EXCEPTION_HANDLERS
from service.reads import ContentReader
from service.routes import routes
from service.settings import Settings
from service.state import AppState
from service.writes import ContentWriter

logger = logging.getLogger(__name__)

#: How long invalidation records are kept, in seconds (see :mod:`cache.leases`).
LEASE_HORIZON_SECONDS = 300.0


def create_engine(settings: Settings) -> AsyncEngine:
    """Return the async engine of ``settings.database_url`` with a bounded pool."""
    assert settings.database_url is not None
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        json_deserializer=orjson.loads,
        connect_args={
            "timeout": settings.db_pool_timeout_seconds,
            "server_settings": {
                "application_name": "content-service",
                "statement_timeout": str(settings.db_statement_timeout_ms),
            },
        },
    )


def create_redis(settings: Settings) -> Redis:
    """Return a Redis client with a bounded pool, tight timeouts and no retries.

    A command waits at most ``redis_pool_timeout_seconds`` for a connection and
    ``redis_socket_timeout_seconds`` for an answer; the cache fails open past that.
    """
    assert settings.redis_url is not None
    pool = BoundedConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_seconds,
        socket_timeout=settings.redis_socket_timeout_seconds,
        socket_connect_timeout=settings.redis_connect_timeout_seconds,
        retry=Retry(NoBackoff(), 0),
    )
    return Redis.from_pool(pool)


def policy_table(settings: Settings) -> PolicyTable:
    """Return the per-namespace TTL and jitter of ``settings``."""
    default = CachePolicy(settings.cache_ttl_seconds, settings.cache_jitter_ratio)
    return PolicyTable(
        default,
        {
            name: CachePolicy(seconds, settings.cache_jitter_ratio)
            for name, seconds in settings.namespace_ttls().items()
        },
    )


@asynccontextmanager
async def open_state(settings: Settings) -> AsyncIterator[AppState]:
    """Build everything the service uses from ``settings``; close it in reverse order on exit.

    With neither URL set, embedded servers are started (and the schema migrated) first.
    """
    async with AsyncExitStack() as stack:
        if settings.is_embedded:
            settings = stack.enter_context(embedded.servers_for(settings))
            await upgrade(settings.database_url or "")
        engine = create_engine(settings)
        stack.push_async_callback(engine.dispose)
        redis = create_redis(settings)
        stack.push_async_callback(redis.aclose)

        scheme = KeyScheme(settings.cache_prefix)
        keys = ContentKeys.from_scheme(scheme)
        stats = CacheStats(
            redis, scheme, flush_interval_seconds=settings.stats_flush_interval_seconds
        )
        stats.start()
        stack.push_async_callback(stats.aclose)
        leases = LeaseStore(redis, scheme, horizon_seconds=LEASE_HORIZON_SECONDS)
        invalidator = Invalidator(redis, scheme, horizon_seconds=LEASE_HORIZON_SECONDS)
        cache = ReadThroughCache(redis, leases, stats, policy_table(settings))

        # A session class per state, so that its flush listeners die with it.
        write_session = type("WriteSession", (Session,), {})
        SessionTagCollector(tags_for_change).install(write_session)
        write_sessions = async_sessionmaker(
            engine, sync_session_class=write_session, expire_on_commit=False
        )
        # Reads are single statements: autocommit spares a BEGIN and a ROLLBACK per miss.
        read_sessions = async_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))

        yield AppState(
            settings=settings,
            engine=engine,
            redis=redis,
            keys=keys,
            stats=stats,
            invalidator=invalidator,
            reader=ContentReader(read_sessions, cache, keys),
            writer=ContentWriter(write_sessions, invalidator),
            auth=TokenAuthority(settings.tokens(), settings.stats_token),
        )


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Open the state on startup and keep it on ``app.state.ctx``; close it on shutdown."""
    async with open_state(app.state.settings) as state:
        app.state.ctx = state
        yield


def create_app(settings: Settings | None = None) -> Starlette:
    """Return the ASGI app; its lifespan builds everything from ``settings``.

    Args:
        settings: the configuration; read from the environment when None.

    Raises:
        pydantic.ValidationError: the environment holds an invalid setting.
    """
    app = Starlette(routes=routes(), lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
    app.state.settings = settings or Settings()
    return app
