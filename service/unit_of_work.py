"""The unit of work of every write: one transaction, committed, then invalidated.

The tags to invalidate are collected from the session's flushes by
:class:`cache.SessionTagCollector` (see :func:`service.keyspaces.tags_for_change`); the write
rules that run inside it (:mod:`service.writes`, :mod:`service.entity_writes`) never name a
cache key or tag.

With read replicas, the invalidation also records the primary's WAL position, read after the
commit, as the invalidation watermark (see :mod:`service.replicas`): a load that begins after
the write was answered reads a replica only once it has replayed the write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cache import (
    BreakerState,
    CacheUnavailableError,
    CircuitBreaker,
    Invalidator,
    SessionTagCollector,
)
from service.outbox import CHANNEL

logger = logging.getLogger(__name__)

_WAKE_RELAYS = text(f"SELECT pg_notify('{CHANNEL}', '')")


class UnitOfWork:
    """Runs writes in transactions and invalidates what each committed one made wrong.

    Each write's triggers also record it in the invalidation outbox (see
    :mod:`service.outbox`); the invalidation here is the fast path that makes the write's
    answer safe to read at once, and the outbox is its backstop. Its sessions' rows notify no
    relay (migration 0005): a write whose invalidation failed, or was skipped, wakes the relays
    itself before it waits out the near caches' leases, so that the workers that still reach
    Redis apply it within the relays' coalescing delay. Safe to share.

    Args:
        sessions: makes the write sessions; its session class must have the collector installed.
        invalidator: applies the collected tags after each commit.
        redis_breaker: skipped while open; tripped when an invalidation fails.
        position_after_commit: returns the primary's WAL position after a commit, recorded with
            the invalidation (None: record none, as without replicas). When it fails the tags
            are invalidated without it and the breaker is tripped, as for a failed
            invalidation: no entry is served until the outbox, which records positions of its
            own, has been applied.
        near_lapse_seconds: how long a write whose invalidation failed (or was skipped while
            the breaker is open) waits before it is answered, in seconds: the near caches'
            leases (:attr:`cache.bus.InvalidationBus.lapse_seconds`), so that the workers that
            lost Redis too have stopped answering from their near caches; 0 for none.

    Attributes:
        invalidation_failures: how many invalidations failed (their writes were answered, and
            the breaker tripped until the outbox is applied).
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        invalidator: Invalidator,
        redis_breaker: CircuitBreaker | None = None,
        position_after_commit: Callable[[], Awaitable[int | None]] | None = None,
        near_lapse_seconds: float = 0.0,
    ) -> None:
        self._sessions = sessions
        self._invalidator = invalidator
        self._breaker = redis_breaker
        self._position = position_after_commit
        self._near_lapse = near_lapse_seconds
        self.invalidation_failures = 0

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[AsyncSession]:
        """Yield a session in a transaction; commit at the end, then invalidate.

        Nothing is invalidated when the block raises (the transaction rolls back).
        """
        async with self._sessions() as session:
            async with session.begin():
                yield session
            tags = SessionTagCollector.take(session.sync_session)
        await self._invalidate(tags)

    async def _invalidate(self, tags: frozenset[str]) -> None:
        # Checked after the commit: while the breaker is open nothing is served from Redis, and
        # its recovery applies the outbox (where the triggers recorded this write) first.
        if self._breaker is not None and self._breaker.state is BreakerState.OPEN:
            await self._wake_relays(tags)
            await self._outlast_near_caches(tags)
            return
        position: int | None = None
        positioned = True
        if self._position is not None and tags:
            try:
                position = await self._position()
            except Exception as exc:
                positioned = False
                logger.error("WAL position after a commit not read: %r", exc)
        try:
            await self._invalidator.invalidate_tags(tags, position=position)
            if positioned:
                return
        except CacheUnavailableError as exc:
            # Not retried: the write waits at most one Redis timeout, and the outbox holds it.
            logger.error("invalidation of %d tags failed: %r", len(tags), exc)
        self.invalidation_failures += 1
        # Redis may now hold what this write replaced: serve nothing from it until the
        # outbox has been applied.
        if self._breaker is not None:
            self._breaker.trip()
        await self._wake_relays(tags)
        await self._outlast_near_caches(tags)

    async def _wake_relays(self, tags: frozenset[str]) -> None:
        """Notify the outbox relays of every worker: this write's rows are theirs to apply now."""
        if not tags:
            return
        try:
            async with self._sessions() as session:
                await session.execute(_WAKE_RELAYS)
                await session.commit()
        except Exception as exc:
            # The relays' polls still apply the rows.
            logger.warning("outbox relays not woken after a write: %r", exc)

    async def _outlast_near_caches(self, tags: frozenset[str]) -> None:
        """Wait until no worker cut off from Redis answers from its near cache any more."""
        if tags and self._near_lapse > 0:
            await asyncio.sleep(self._near_lapse)
