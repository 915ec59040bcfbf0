"""Redis Sentinel (``REDIS_MODE=sentinel``): each worker follows the master, and repairs it first.

The client (:func:`create_sentinel_redis`) asks the sentinels where the master is whenever it
opens a connection, and its pool (:class:`cache.BoundedSentinelConnectionPool`) refuses any
master the worker has not acknowledged. A refusal, a sentinel's ``+switch-master``
announcement, or the periodic check that asks the sentinels, trips the worker's Redis breaker:
reads bypass the cache (``BYPASS``), writes go on (their triggers record them in the outbox).
The breaker's recovery then runs :meth:`MasterFollower.recover`: on a master it has not
acknowledged, it empties the worker's near cache, revokes every lease and applies the outbox
rows of the retention period again (what the old master may have applied but not replicated),
acknowledges the master, applies the outbox, and only then closes. Every worker of every
instance does this for itself; the work is idempotent.

Why a replay and how long a period it needs: docs/sentinel.md.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cache import BackgroundTask, BoundedSentinelConnectionPool, CircuitBreaker, NearCache, every
from cache.errors import REDIS_FAILURES, translate_redis_errors
from service.outbox import OutboxRelay
from service.settings import Settings

logger = logging.getLogger(__name__)


def create_sentinel_redis(settings: Settings) -> Redis:
    """Return a client of the master the sentinels of ``settings`` name, with a bounded pool.

    As the standalone client: a command waits at most ``redis_pool_timeout_seconds`` for a
    connection and ``redis_socket_timeout_seconds`` for an answer, and is never retried; the
    sentinels are asked with the same timeouts. No master is acknowledged yet: every command
    fails with :class:`cache.MasterChangedError` until :meth:`MasterFollower.recover` ran.
    The client owns its pool, which owns its sentinel clients (``aclose`` closes all).
    """
    timeouts = {
        "socket_timeout": settings.redis_socket_timeout_seconds,
        "socket_connect_timeout": settings.redis_connect_timeout_seconds,
        "retry": Retry(NoBackoff(), 0),
    }
    pool = BoundedSentinelConnectionPool.from_sentinels(
        settings.sentinel_addresses(),
        settings.redis_sentinel_master,
        timeout=settings.redis_pool_timeout_seconds,
        sentinel_kwargs={**timeouts, "password": settings.redis_sentinel_password},
        max_connections=settings.redis_max_connections,
        password=settings.redis_password,
        **timeouts,
    )
    return Redis.from_pool(pool)


class MasterFollower:
    """Keeps one worker's cache on the master the sentinels name, and true across a failover.

    Args:
        redis: a client from :func:`create_sentinel_redis`; owned by the caller.
        check_interval_seconds: how often :meth:`check` asks the sentinels, in seconds.

    Attributes:
        masters: how many masters this worker acknowledged (the first one included).
    """

    def __init__(
        self, redis: Redis, *, check_interval_seconds: float, near: NearCache | None = None
    ) -> None:
        pool = redis.connection_pool
        assert isinstance(pool, BoundedSentinelConnectionPool)
        self._redis = redis
        self._pool = pool
        self._breaker: CircuitBreaker | None = None
        self._checks = BackgroundTask(
            "redis-master-checks", every(check_interval_seconds, self.check, at_once=False)
        )
        self._announcements = BackgroundTask(
            "redis-master-announcements",
            lambda: pool.watch_switches(retry_seconds=check_interval_seconds),
        )
        self.masters = 0
        self._near = near

    def follow(self, breaker: CircuitBreaker) -> None:
        """Trip ``breaker`` on every change of master; start listening to and asking sentinels."""
        self._breaker = breaker
        self._pool.on_master_change = self._changed
        self._announcements.start()
        self._checks.start()

    async def aclose(self) -> None:
        """Stop listening to and asking the sentinels (at shutdown)."""
        await self._checks.aclose()
        await self._announcements.aclose()

    async def probe(self) -> None:
        """Return when the master the sentinels name answers ``PING`` (acknowledged or not).

        Raises:
            Whatever redis-py raises.
        """
        with self._pool.admitting():
            await self._redis.ping()

    async def recover(self, relay: OutboxRelay) -> None:
        """Make the master the sentinels name usable again; the Redis breaker's recovery hook.

        A master not acknowledged before gets every lease revoked and the outbox rows of the
        retention period applied again (:meth:`OutboxRelay.replay_applied`), from this task
        only; then it is acknowledged and the whole outbox is applied.

        Raises:
            CacheUnavailableError: Redis failed, or the master changed again meanwhile.
            Whatever the database raises.
        """
        with self._pool.admitting() as admission:
            with translate_redis_errors("reach the master"):
                await self._redis.ping()
            identity = admission.identity
            assert identity is not None  # the ping checked a connection out
            if identity != self._pool.acknowledged:
                if self._near is not None:
                    # What it holds came from the old master, which may have held entries the
                    # new one was told to delete and did not replicate.
                    self._near.clear()
                replayed = await relay.replay_applied()
                self.masters += 1
                logger.warning(
                    "Redis master %s acknowledged after %d outbox rows were applied again and "
                    "every lease was revoked",
                    identity,
                    replayed,
                )
            self._pool.acknowledge(identity)
        await relay.drain_all()

    async def check(self) -> None:
        """Ask the sentinels for the master; trip the breaker when it is not the acknowledged one.

        Failures to reach the sentinels are logged at debug level and swallowed (a failover in
        progress names no master; the connections' own failures cover an outage).
        """
        try:
            await self._pool.verify_master()
        except REDIS_FAILURES as exc:
            logger.debug("no sentinel named the Redis master: %r", exc)

    def _changed(self) -> None:
        logger.warning("Redis master changed: the cache is bypassed until it is repaired")
        if self._breaker is not None:
            self._breaker.trip()
