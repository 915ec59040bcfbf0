"""The application factory and its lifespan.

Nothing is built at import: ``create_app(settings)`` returns an app whose lifespan builds the
engine, the Redis client and the cache on startup and closes them on shutdown.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from time import perf_counter
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry as ClusterRetry
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.types import ASGIApp, Scope

from cache import (
    AutoPipeline,
    BackgroundTask,
    BoundedConnectionPool,
    CachePolicy,
    CacheStats,
    CacheUnavailableError,
    CircuitBreaker,
    Compression,
    HotKeyTracker,
    InvalidationBus,
    Invalidator,
    KeyScheme,
    LeaseStore,
    NearCache,
    PendingHit,
    PolicyTable,
    ReadThroughCache,
    RedisClient,
    SessionTagCollector,
    WarmingJobs,
    every,
)
from cache.errors import REDIS_FAILURES
from cache.routing import ping
from service import embedded, repository
from service.access import AccessRecorder
from service.admin_requests import WarmRequest
from service.auth import TokenAuthority
from service.backlog import BacklogSampler
from service.entity_writes import EntityWrites
from service.failover import MasterFollower, create_sentinel_redis
from service.gauges import SAMPLE_INTERVAL_SECONDS, worker_sampler
from service.keyspaces import ContentKeys, tags_for_change
from service.lifecycle import Lifecycle
from service.logs import configure_logging
from service.metrics import ServiceMetrics
from service.migrations import upgrade
from service.near_figures import near_sampler
from service.near_figures import worker_figures as near_worker_figures
from service.outbox import OutboxRelay
from service.problems import EXCEPTION_HANDLERS
from service.ratelimits import RateLimitMiddleware, RateLimits
from service.read_path import ArticleReadPath
from service.reads import ContentReader
from service.replica_figures import replica_sampler, worker_figures
from service.replicas import Replica, ReplicaSet, replica_name
from service.responses import CachedResponse, FastAnswer
from service.routes import routes
from service.settings import Settings
from service.state import AppState
from service.tracing import REQUEST_ID, REQUEST_ID_HEADER, RequestIdMiddleware, request_id_of
from service.unit_of_work import UnitOfWork
from service.warming import ContentWarming
from service.workers import create_worker_registry
from service.writes import ArticleWrites

logger = logging.getLogger(__name__)

#: How long startup waits for the near caches' bus to subscribe, in seconds.
BUS_STARTUP_WAIT_SECONDS = 1.0

#: How long invalidation records are kept, in seconds (see :mod:`cache.leases`).
LEASE_HORIZON_SECONDS = 300.0


def create_engine(
    settings: Settings,
    *,
    url: str | None = None,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    pre_ping: bool = False,
    invalidates_own_writes: bool = False,
) -> AsyncEngine:
    """Return the async engine of ``url`` (``settings.database_url`` when None), pool bounded.

    A request waits at most ``db_pool_timeout_seconds`` for a connection (then 503), and at
    most ``db_connect_timeout_seconds`` for a new connection to open. With
    ``invalidates_own_writes`` (the pool the unit of work writes through) its sessions set
    ``content.outbox_notify=off``: the outbox records their writes without waking the relays
    (migration 0005), whose periodic drains apply them.
    """
    url = url or settings.database_url
    assert url is not None
    server_settings = {
        "application_name": "content-service",
        "statement_timeout": str(settings.db_statement_timeout_ms),
        # Short statements: compiling one to machine code costs more than it saves
        # (22 ms on a page's generic plan; see benchmarks.pages).
        "jit": "off",
    }
    if invalidates_own_writes:
        server_settings["content.outbox_notify"] = "off"
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size if pool_size is None else pool_size,
        max_overflow=settings.db_max_overflow if max_overflow is None else max_overflow,
        pool_pre_ping=pre_ping,
        pool_timeout=settings.db_pool_timeout_seconds,
        json_deserializer=orjson.loads,
        connect_args={
            "timeout": settings.db_connect_timeout_seconds,
            # A paused or partitioned server cannot enforce statement_timeout: the client does.
            "command_timeout": settings.db_statement_timeout_ms / 1000 + 1
            if settings.db_statement_timeout_ms
            else None,
            "server_settings": server_settings,
        },
    )


def create_redis(settings: Settings) -> RedisClient:
    """Return a Redis client with a bounded pool, tight timeouts and no retries.

    A command waits at most ``redis_pool_timeout_seconds`` for a connection and
    ``redis_socket_timeout_seconds`` for an answer; the cache fails open past that. In
    ``sentinel`` mode, the client of :func:`service.failover.create_sentinel_redis`; with
    ``REDIS_MODE=cluster``, a cluster client (see :func:`create_redis_cluster`).
    """
    if settings.redis_mode == "sentinel":
        return create_sentinel_redis(settings)
    assert settings.redis_url is not None
    if settings.redis_mode == "cluster":
        return create_redis_cluster(settings)
    pool = BoundedConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_seconds,
        socket_timeout=settings.redis_socket_timeout_seconds,
        socket_connect_timeout=settings.redis_connect_timeout_seconds,
        retry=Retry(NoBackoff(), 0),
    )
    return Redis.from_pool(pool)


def create_redis_cluster(settings: Settings) -> RedisCluster:
    """Return a Redis Cluster client on the seed nodes of ``REDIS_URL``, not yet connected.

    The other nodes are discovered (``CLUSTER SLOTS``) on first use. Each node gets at most
    ``redis_max_connections`` connections, the standalone timeouts, and no retries of
    failed connections (a failed command fails open, and marks the slot map for a refresh);
    ``MOVED`` and ``ASK`` redirections are followed. The credentials and TLS of the first URL
    apply to every node. A slot that no node serves (a master died and no replica took over
    yet) fails its commands only, not the whole client.
    """
    urls = settings.redis_cluster_urls()
    seeds = [parse_url(url) for url in urls]
    first = seeds[0]
    options: dict[str, Any] = {
        key: first[key] for key in ("username", "password") if first.get(key) is not None
    }
    if urls[0].startswith("rediss://"):
        options["ssl"] = True
    return RedisCluster(
        startup_nodes=[ClusterNode(seed["host"], seed.get("port", 6379)) for seed in seeds],
        require_full_coverage=False,
        max_connections=settings.redis_max_connections,
        socket_timeout=settings.redis_socket_timeout_seconds,
        socket_connect_timeout=settings.redis_connect_timeout_seconds,
        retry=ClusterRetry(NoBackoff(), 0),
        **options,
    )


def create_pipeline(redis: RedisClient, settings: Settings) -> AutoPipeline:
    """Return an auto-pipeline on ``redis``; on a cluster, bounded per node as the pool is."""
    return AutoPipeline(
        redis,
        max_connections_per_node=settings.redis_max_connections,
        pool_timeout_seconds=settings.redis_pool_timeout_seconds,
    )


def key_scheme(settings: Settings) -> KeyScheme:
    """Return the deployment's key scheme: hash-tagged slot groups in cluster mode."""
    groups = settings.redis_cluster_slot_groups if settings.redis_mode == "cluster" else 0
    return KeyScheme(settings.cache_prefix, groups)


def policy_table(settings: Settings) -> PolicyTable:
    """Return the per-namespace TTL, jitter, stale periods and early refresh of ``settings``."""

    def policy(ttl_seconds: float) -> CachePolicy:
        return CachePolicy(
            ttl_seconds,
            settings.cache_jitter_ratio,
            stale_while_revalidate_seconds=settings.cache_stale_while_revalidate_seconds,
            stale_if_error_seconds=settings.cache_stale_if_error_seconds,
            early_refresh_beta=settings.cache_early_refresh_beta,
        )

    return PolicyTable(
        policy(settings.cache_ttl_seconds),
        {name: policy(seconds) for name, seconds in settings.namespace_ttls().items()},
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
        # Every write of the service invalidates what it changed (the unit of work after its
        # commit, the seeder by its purge): its outbox rows need not wake the relays. A write
        # whose invalidation failed or was skipped wakes them itself (service.unit_of_work).
        engine = create_engine(settings, invalidates_own_writes=True)
        stack.push_async_callback(engine.dispose)
        redis = create_redis(settings)
        stack.push_async_callback(redis.aclose)
        if isinstance(redis, RedisCluster):
            try:
                # The auto-pipeline routes by the slot map: have it before the first read.
                await redis.initialize()
            except REDIS_FAILURES as exc:
                logger.warning("Redis Cluster not reachable at startup (fails open): %r", exc)

        # Background work has connections of its own: the outbox relay's LISTEN and drains,
        # the backlog sampler and the readiness probe never wait behind requests for the
        # pool, nor take a request's connection.
        background_engine = create_engine(settings, pool_size=3, max_overflow=1, pre_ping=True)
        stack.push_async_callback(background_engine.dispose)

        metrics = ServiceMetrics.from_environment()
        stack.callback(metrics.close)
        scheme = key_scheme(settings)
        keys = ContentKeys.from_scheme(scheme)
        stats = CacheStats(
            redis,
            scheme,
            flush_interval_seconds=settings.stats_flush_interval_seconds,
            observer=metrics,
        )
        tracker = HotKeyTracker(
            redis,
            scheme,
            sample_rate=settings.cache_hot_keys_sample_rate,
            max_keys_per_namespace=settings.cache_hot_keys_per_namespace,
        )
        stats.add_flush_part(tracker)
        stats.start()
        stack.push_async_callback(stats.aclose)
        # One auto-pipeline for the reads and the lease scripts, so that they share batches.
        pipeline = create_pipeline(redis, settings)
        stack.push_async_callback(pipeline.aclose)
        # Warming's leases and stores go out on batches of their own.
        warming_pipeline = create_pipeline(redis, settings)
        stack.push_async_callback(warming_pipeline.aclose)
        leases = LeaseStore(redis, scheme, horizon_seconds=LEASE_HORIZON_SECONDS, pipeline=pipeline)
        near = (
            NearCache(settings.cache_l1_max_bytes, lease_check=settings.cache_l1_lease_check)
            if settings.cache_l1_max_bytes
            else None
        )
        # Every worker publishes its invalidations to the near caches and waits for them, even
        # one that holds none: another worker or instance may.
        bus = InvalidationBus(
            redis,
            scheme,
            near=near,
            lease_ms=settings.cache_l1_lease_ms,
            lease_check=settings.cache_l1_lease_check,
            on_wait=metrics.observe_l1_wait,
            on_deliver=metrics.observe_invalidation,
        )
        bus.start()
        stack.push_async_callback(bus.aclose)
        # Its own channel carries the holders' acknowledgements of its first writes.
        if not await bus.wait_subscribed(BUS_STARTUP_WAIT_SECONDS):
            logger.warning("near cache bus not subscribed at startup (Redis unreachable?)")
        invalidator = Invalidator(
            redis,
            scheme,
            horizon_seconds=LEASE_HORIZON_SECONDS,
            replica_ack_timeout_ms=settings.redis_replica_ack_timeout_ms,
            bus=bus,
        )
        replicas = await stack.enter_async_context(
            open_replicas(settings, engine, background_engine, invalidator)
        )
        # Its heartbeat rides the statistics flush; it leaves before the last flush.
        workers = create_worker_registry(
            redis,
            scheme,
            engine,
            instance=settings.instance_name,
            flush_interval_seconds=settings.stats_flush_interval_seconds,
            parts={
                "db_replicas": lambda: worker_figures(replicas),
                "l1": lambda: near_worker_figures(near, bus),
            },
        )
        stats.add_flush_part(workers)
        stack.push_async_callback(workers.leave)

        relay: OutboxRelay | None = None
        follower = (
            MasterFollower(
                redis,
                check_interval_seconds=settings.redis_sentinel_check_interval_seconds,
                near=near,
            )
            if settings.redis_mode == "sentinel" and isinstance(redis, Redis)
            else None
        )

        async def probe_redis() -> None:
            await (ping(redis) if follower is None else follower.probe())

        async def recover_cache() -> None:
            # Before anything is served from Redis: what accrued in the outbox, and, on a
            # master this worker has not used yet, what the old master may not have replicated.
            assert relay is not None
            await (relay.drain_all() if follower is None else follower.recover(relay))

        redis_breaker = CircuitBreaker(
            "redis",
            probe_redis,
            on_recovery=recover_cache,
            failure_threshold=settings.breaker_failure_threshold,
            probe_interval_seconds=settings.breaker_probe_interval_seconds,
        )
        stack.push_async_callback(redis_breaker.aclose)
        database_breaker = CircuitBreaker(
            "database",
            lambda: repository.ping(engine),
            failure_threshold=settings.breaker_failure_threshold,
            probe_interval_seconds=settings.breaker_probe_interval_seconds,
        )
        stack.push_async_callback(database_breaker.aclose)
        metrics.add_sampler(worker_sampler(engine, redis, (redis_breaker, database_breaker)))
        metrics.add_sampler(replica_sampler(metrics, replicas))
        metrics.add_sampler(near_sampler(metrics, near, bus))
        # Publishes the answers counted in memory too: every second, and before each scrape.
        gauges = BackgroundTask("metrics-gauges", every(SAMPLE_INTERVAL_SECONDS, metrics.sample))
        gauges.start()
        stack.push_async_callback(gauges.aclose)
        relay = OutboxRelay(
            background_engine,
            invalidator,
            redis_breaker,
            poll_interval_seconds=settings.outbox_poll_interval_seconds,
            retention_seconds=settings.outbox_retention_seconds if follower is not None else 0.0,
            record_positions=bool(replicas.replicas),
        )
        # What accrued while no process listened (writes whose invalidation failed, plain
        # SQL) is applied before the first read is served from Redis.
        try:
            await recover_cache()
        except CacheUnavailableError:
            redis_breaker.trip()  # its recovery drains before Redis is used
        except Exception as exc:
            logger.warning("outbox not drained at startup (the relay will retry): %r", exc)
        if follower is not None:
            # After the startup recovery: a refusal before it is no change of master.
            follower.follow(redis_breaker)
            stack.push_async_callback(follower.aclose)
        relay.start()
        stack.push_async_callback(relay.aclose)
        backlog = BacklogSampler(
            relay.sample, interval_seconds=settings.outbox_sample_interval_seconds
        )
        backlog.on_sample(lambda sample: metrics.set_outbox_backlog(sample.backlog))
        backlog.start()
        stack.push_async_callback(backlog.aclose)

        cache = ReadThroughCache(
            leases,
            stats,
            policy_table(settings),
            breaker=redis_breaker,
            load_lease_ms=settings.cache_load_lease_ms,
            herd_wait_ms=settings.cache_herd_wait_ms,
            compression=Compression(
                settings.cache_compress_min_bytes,
                settings.cache_gzip_level,
                settings.cache_brotli_quality,
            ),
            tracker=tracker if settings.cache_hot_keys_sample_rate > 0 else None,
            fill_leases=LeaseStore(
                redis,
                scheme,
                horizon_seconds=LEASE_HORIZON_SECONDS,
                pipeline=warming_pipeline,
            ),
            near=near,
        )
        stack.push_async_callback(cache.aclose)
        reader = ContentReader(
            engine,
            cache,
            keys,
            negative_ttl_seconds=settings.cache_negative_ttl_seconds,
            database_breaker=database_breaker,
            replicas=replicas,
        )
        jobs = WarmingJobs(
            redis,
            scheme,
            instance=f"{settings.instance_name}:{os.getpid()}",
            lease_seconds=settings.warm_lease_seconds,
        )
        warming = ContentWarming(
            reader,
            cache,
            tracker,
            jobs,
            batch_size=settings.warm_batch_size,
            concurrency=settings.warm_concurrency,
            default_limit=settings.warm_default_limit,
            loop_share=settings.warm_loop_share,
            on_batch=metrics.count_warmed,
        )
        stack.push_async_callback(warming.aclose)
        if settings.warm_on_startup:
            await warming.try_start(WarmRequest())
        if settings.warm_refresh_top_n:
            warming.refresh_periodically(
                settings.warm_refresh_top_n, settings.warm_refresh_interval_seconds
            )

        # A session class per state, so that its flush listeners die with it.
        write_session = type("WriteSession", (Session,), {})
        SessionTagCollector(tags_for_change).install(write_session)
        write_sessions = async_sessionmaker(
            engine, sync_session_class=write_session, expire_on_commit=False
        )
        unit_of_work = UnitOfWork(
            write_sessions,
            invalidator,
            redis_breaker,
            position_after_commit=replicas.position_after_write if replicas.replicas else None,
            near_lapse_seconds=bus.lapse_seconds,
        )
        yield AppState(
            settings=settings,
            engine=engine,
            background_engine=background_engine,
            redis=redis,
            keys=keys,
            stats=stats,
            invalidator=invalidator,
            reader=reader,
            warming=warming,
            unit_of_work=unit_of_work,
            article_writes=ArticleWrites(unit_of_work),
            entity_writes=EntityWrites(unit_of_work),
            relay=relay,
            redis_breaker=redis_breaker,
            database_breaker=database_breaker,
            workers=workers,
            backlog=backlog,
            auth=TokenAuthority(settings.tokens(), settings.stats_token),
            metrics=metrics,
            replicas=replicas,
            near=near,
            bus=bus,
        )


@asynccontextmanager
async def open_replicas(
    settings: Settings,
    engine: AsyncEngine,
    background_engine: AsyncEngine,
    invalidator: Invalidator,
) -> AsyncIterator[ReplicaSet]:
    """Yield the read replicas of ``settings``, sampled in the background; close them on exit.

    Each replica has an engine of its own: ``DATABASE_REPLICA_POOL_SIZE`` connections for
    loads and one more for its sampler, with the primary's timeouts and server settings.
    """
    replicas = [
        Replica(
            replica_name(url),
            create_engine(
                settings, url=url, pool_size=settings.database_replica_pool_size, max_overflow=1
            ),
        )
        for url in settings.replica_urls()
    ]
    replica_set = ReplicaSet(
        replicas,
        engine,
        background_engine,
        invalidator,
        max_lag_seconds=settings.database_replica_max_lag_seconds,
        sample_interval_seconds=settings.database_replica_sample_interval_seconds,
        sample_timeout_seconds=settings.db_connect_timeout_seconds,
    )
    try:
        replica_set.start()
        yield replica_set
    finally:
        await replica_set.aclose()
        for replica in replicas:
            await replica.engine.dispose()


def freeze_startup_heap() -> None:
    """Move what the process holds now out of the collector's sight, once per process.

    What startup built lives as long as the process: a full collection no longer walks it,
    which keeps the pauses of the hit path short. Once only, so that a process that opens
    several apps (the tests) does not make each one's garbage permanent.
    """
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


_heap_frozen = False


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Open the state on startup and keep it on ``app.state.ctx``; close it on shutdown.

    Once the state is open the app reports ``serving`` and records its answers; SIGTERM (under
    a server that handles it) makes it report ``draining`` first (see :mod:`service.lifecycle`).
    """
    settings: Settings = app.state.settings
    lifecycle: Lifecycle = app.state.lifecycle
    async with open_state(settings) as state:
        app.state.ctx = state
        assert isinstance(app, ContentApp)
        app.recorder = AccessRecorder(state.metrics, access_log=settings.access_log)
        app.rate_limits = RateLimits.from_settings(
            state.settings, state.redis, key_scheme(state.settings), state.redis_breaker
        )
        freeze_startup_heap()
        lifecycle.drain_on_sigterm(settings.shutdown_drain_seconds)
        lifecycle.serving()
        try:
            yield
        finally:
            lifecycle.drain()
            lifecycle.restore_sigterm()
            app.recorder = None
            app.rate_limits = None


class ContentApp(Starlette):
    """The service's Starlette app, with request ids outside every other layer.

    Starlette puts user middleware inside its error middleware; the request id goes outside
    it instead, so that even an unexpected error's 500 carries ``X-Request-ID``, and is counted.
    Rate limits (:mod:`service.ratelimits`), when configured, sit just inside it, so that a 429
    has an id and is counted too; when neither is configured they are not in the stack at all.
    Inside them, :class:`service.read_path.ArticleReadPath` answers plain GETs of an article
    ahead of Starlette's own layers.

    Attributes:
        recorder: records every answer (metrics, access log) while the lifespan runs; None
            before and after.
        rate_limits: the limits in force while the lifespan runs; None before and after, and
            when none is configured.
        read_path: the article read path in the stack, once the stack is built (its ``app``
            is Starlette's own stack).
    """

    recorder: AccessRecorder | None = None
    rate_limits: RateLimits | None = None
    read_path: ArticleReadPath | None = None

    def build_middleware_stack(self) -> ASGIApp:
        """Return Starlette's stack wrapped in :class:`service.tracing.RequestIdMiddleware`."""
        self.read_path = ArticleReadPath(
            super().build_middleware_stack(), self.routes, self.exception_handlers
        )
        stack: ASGIApp = self.read_path
        settings: Settings = self.state.settings
        if settings.read_limits() or settings.write_limits():
            stack = RateLimitMiddleware(stack, lambda: self.rate_limits)
        return RequestIdMiddleware(stack, self._answered)

    def fast_answer(self, scope: Scope) -> FastAnswer | PendingHit[FastAnswer] | None:
        """Return the answer to ``scope`` if it is a cache hit, without a task; else None.

        For :class:`service.fast_path.FastPathProtocol`: the answer the stack would give (the
        read path's, :meth:`service.read_path.ArticleReadPath.answer_hit`, with the request's
        ``X-Request-ID`` last, as :class:`service.tracing.RequestIdMiddleware` adds it), now
        or once Redis answers (a :class:`cache.PendingHit`), recorded (metrics, access log) in
        the request's id context before it is returned (an early refresh that the hit starts
        runs in whatever context the protocol calls from: its log lines may carry no request
        id, or the id of the answer completed just before). None (now or from ``finish()``),
        with nothing counted, while the lifespan does not run, when rate limits are configured
        (they sit in the stack), and whenever the read path has no hit.

        Args:
            scope: the request's ASGI scope (uvicorn's, once its head is parsed).

        Returns:
            The answer now, a :class:`cache.PendingHit` of it, or None.

        Raises:
            Exception: whatever the recorder raises (the protocol then hands the request to
                its task).
        """
        recorder = self.recorder
        read_path = self.read_path
        # Rate limits (configured when the lifespan made them) sit in the stack: not skipped.
        if recorder is None or read_path is None or self.rate_limits is not None:
            return None
        started = perf_counter()
        hit = read_path.answer_hit(scope, self.state.ctx)
        if hit is None:
            return None

        def answer(response: CachedResponse) -> FastAnswer:
            request_id = request_id_of(scope["headers"])
            token = REQUEST_ID.set(request_id.decode("ascii"))
            try:
                recorder(scope, response.status_code, perf_counter() - started)
            finally:
                REQUEST_ID.reset(token)
            headers = [*response.raw_headers, (REQUEST_ID_HEADER, request_id)]
            return FastAnswer(response.status_code, headers, response.body)

        if isinstance(hit, CachedResponse):
            return answer(hit)
        finish = hit.finish

        def finish_answer() -> FastAnswer | None:
            response = finish()
            return None if response is None else answer(response)

        return PendingHit(hit.read, finish_answer)

    def _answered(self, scope: Scope, status: int, seconds: float) -> None:
        recorder = self.recorder
        if recorder is not None:
            recorder(scope, status, seconds)


def create_app(settings: Settings | None = None) -> Starlette:
    """Return the ASGI app; its lifespan builds everything from ``settings``.

    Args:
        settings: the configuration; read from the environment when None.

    Logging is configured here (``LOG_FORMAT``, ``LOG_LEVEL``), so that each uvicorn worker,
    which builds its own app, logs alike.

    Raises:
        pydantic.ValidationError: the environment holds an invalid setting.
    """
    settings = settings or Settings()
    configure_logging(settings)
    app = ContentApp(routes=routes(), lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
    app.state.settings = settings
    app.state.lifecycle = Lifecycle()
    return app
