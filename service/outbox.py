"""The invalidation outbox relay: applies row changes made by any SQL to the cache.

Triggers on every content table (migration 0002) write a row image to ``cache_outbox`` in the
writing transaction and ``NOTIFY cache_outbox``, unless the session says that it invalidates
its own writes (``content.outbox_notify=off``, migration 0005: the service's request pool).
The relay ``LISTEN``s on its own connection; on each notification, and every
``poll_interval_seconds`` (for the rows that did not notify, and in case a notification was
missed), it drains the outbox: in one transaction it deletes a batch of rows (``FOR UPDATE
SKIP LOCKED``, so instances share the work), invalidates their tags, and commits. If Redis
fails, the transaction rolls back and the rows wait; the Redis breaker is tripped so that no
entry is served until :meth:`OutboxRelay.drain_all` has applied them.

This is the transactional outbox pattern: a change and its invalidation record commit or roll
back together, so no committed change is left without its invalidation, whether it came
through the service (whose own post-commit invalidation is then the fast path) or not.

With a retention period (Redis Sentinel), a drain moves its rows to ``cache_outbox_applied``
instead of deleting them, and deletes the rows kept longer than the period;
:meth:`OutboxRelay.replay_applied` applies the rows of the period again, to a newly promoted
master that may lack them (replication is asynchronous; see docs/sentinel.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cache import BackgroundTask, CacheUnavailableError, CircuitBreaker, Invalidator
from service.keyspaces import NAMESPACES, tags_for_row_change
from service.wal import INSERT_POSITION_SQL

logger = logging.getLogger(__name__)

CHANNEL = "cache_outbox"

# The position is evaluated after the statement's snapshot was taken: it is at or past the
# commit record of every transaction whose rows it returns (see service.wal).
_TAKE = """
DELETE FROM cache_outbox WHERE id IN (
    SELECT id FROM cache_outbox WHERE id <= :upto ORDER BY id LIMIT :n FOR UPDATE {skip}
) RETURNING table_name, op, old_row, new_row, {position} AS position
"""


# The same, keeping what it takes; and deleting what was kept longer than :retention seconds
# (rows other drains are deleting are skipped: the next drain takes them).
_TAKE_AND_KEEP = """
WITH taken AS (
    DELETE FROM cache_outbox WHERE id IN (
        SELECT id FROM cache_outbox WHERE id <= :upto ORDER BY id LIMIT :n FOR UPDATE {skip}
    ) RETURNING id, table_name, op, old_row, new_row
), kept AS (
    INSERT INTO cache_outbox_applied (id, table_name, op, old_row, new_row)
    SELECT id, table_name, op, old_row, new_row FROM taken
), expired AS (
    DELETE FROM cache_outbox_applied WHERE ctid IN (
        SELECT ctid FROM cache_outbox_applied
        WHERE applied_at < clock_timestamp() - make_interval(secs => :retention)
        LIMIT :n FOR UPDATE SKIP LOCKED
    )
)
SELECT table_name, op, old_row, new_row, {position} AS position FROM taken
"""

_APPLIED = text(
    "SELECT id, table_name, op, old_row, new_row, NULL AS position FROM cache_outbox_applied"
    " WHERE applied_at > clock_timestamp() - make_interval(secs => :retention) AND id > :after"
    " AND id <= :upto ORDER BY id LIMIT :n"
)
_NEWEST_APPLIED = text("SELECT coalesce(max(id), -1) FROM cache_outbox_applied")

_ANY = text("SELECT EXISTS (SELECT 1 FROM cache_outbox WHERE id <= :upto)")
# The newest row committed so far (-1 for none): what a full drain must reach.
_NEWEST = text("SELECT coalesce(max(id), -1) FROM cache_outbox")
#: above every row id (a bigint): the bound of a drain that takes whatever it finds
_NO_BOUND = 2**63 - 1
#: seconds a full drain goes on draining what was committed since it began (see drain_all)
CATCH_UP_SECONDS = 1.0
# The age is measured on the database's clock, which stamped the rows: no skew with ours.
_SAMPLE = text(
    "SELECT count(*) AS backlog,"
    " coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) AS lag_seconds"
    " FROM cache_outbox"
)


@dataclass(frozen=True, slots=True)
class OutboxSample:
    """The outbox at one moment.

    Attributes:
        backlog: rows waiting to be applied.
        lag_seconds: age of the oldest of them, in seconds (0.0 when there is none).
        sampled_at: when the sample was taken, Unix time in seconds.
    """

    backlog: int
    lag_seconds: float
    sampled_at: float


class OutboxRelay:
    """Applies the outbox to the cache. One per process; call :meth:`start` and :meth:`aclose`.

    Args:
        engine: a small engine of its own (not the request pool).
        invalidator: applies tags.
        redis_breaker: tripped when an invalidation fails; None for none.
        poll_interval_seconds: how often the outbox is drained with no notification, in seconds.
        batch_size: rows per drain transaction.
        coalesce_seconds: after a notification, how long the relay waits for more before it
            drains, in seconds (at most ``poll_interval_seconds``): one drain per burst of
            writes from outside the service, not one per write (a drain is four round trips to
            PostgreSQL and one to Redis). The service's own writes, which invalidate
            themselves, do not notify (every relay of every worker would wake for each): the
            polls apply their rows.
        retention_seconds: how long applied rows are kept for :meth:`replay_applied`, in
            seconds; 0 deletes them as they are applied.
        record_positions: record the primary's WAL position with each batch's invalidation,
            as the invalidation watermark (with read replicas; see :mod:`service.replicas`).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        invalidator: Invalidator,
        redis_breaker: CircuitBreaker | None = None,
        *,
        poll_interval_seconds: float = 1.0,
        batch_size: int = 500,
        coalesce_seconds: float = 0.05,
        retention_seconds: float = 0.0,
        record_positions: bool = False,
    ) -> None:
        self._engine = engine
        self._retention = retention_seconds
        self._invalidator = invalidator
        self._breaker = redis_breaker
        self._interval = poll_interval_seconds
        self._batch = batch_size
        self._coalesce = min(coalesce_seconds, poll_interval_seconds)
        self._record_positions = record_positions
        self._wake = asyncio.Event()
        self._task = BackgroundTask("outbox-relay", self._run)
        self._lock = asyncio.Lock()
        self.applied = 0
        self.failures = 0
        self.listening = False

    def start(self) -> None:
        """Start listening and draining in the background."""
        self._task.start()

    async def aclose(self) -> None:
        """Stop the background task."""
        await self._task.aclose()

    async def sample(self) -> OutboxSample:
        """Return the backlog and the age of its oldest row, in one statement.

        Raises:
            Whatever the database raises.
        """
        async with self._engine.connect() as conn:
            row = (await conn.execute(_SAMPLE)).one()
        return OutboxSample(int(row.backlog), float(row.lag_seconds), time.time())

    async def drain(self) -> int:
        """Apply every outbox row not locked by another drain; return how many were applied.

        Raises:
            CacheUnavailableError: Redis failed; the batch under way stays in the outbox.
            Whatever the database raises.
        """
        return await self._drain(skip_locked=True)

    async def drain_all(self) -> int:
        """Apply every outbox row, waiting for the batches other drains hold (recovery).

        When it returns, every change committed before it was called has been applied. It
        drains in passes, each up to the newest row at its start, while the last pass applied
        any row and for at most :data:`CATCH_UP_SECONDS` (under a steady stream of writes a
        drain that chased every new row would not end); then it wakes the relay, whose next
        drain (as soon as the breaker lets it) applies the rows committed during the last pass.
        A breaker's recovery calls it: the last pass is short, so that what a worker whose
        breaker is still open wrote meanwhile (it skipped its invalidation and waits out a
        lease before answering) is applied before that write is answered.

        Raises:
            CacheUnavailableError: Redis failed.
            Whatever the database raises.
        """
        deadline = time.monotonic() + CATCH_UP_SECONDS
        done = 0
        while True:
            applied = await self._drain(skip_locked=False)
            done += applied
            if not applied or time.monotonic() >= deadline:
                break
        self._wake.set()
        return done

    async def replay_applied(self) -> int:
        """Revoke every lease, then apply again the rows applied within the retention period.

        For a Redis that may lack what was applied to another: a replica promoted by a
        failover, which replication had not brought the old master's last invalidations yet.
        Revoking the leases refuses the stores of loads that began before (their lease's
        sequence number may be below the new master's records). Rows applied since the call
        began are applied by the drains that follow; call :meth:`drain_all` after it for the
        rows not applied yet.

        Returns:
            How many rows were applied again.

        Raises:
            CacheUnavailableError: Redis failed; the replay must be run again.
            Whatever the database raises.
        """
        done = 0
        after = -1
        async with self._lock:
            await self._invalidator.revoke_leases()
            async with self._engine.connect() as conn:
                upto = int(await conn.scalar(_NEWEST_APPLIED))
            while True:
                async with self._engine.connect() as conn:
                    parameters = {
                        "retention": self._retention,
                        "after": after,
                        "upto": upto,
                        "n": self._batch,
                    }
                    rows = (await conn.execute(_APPLIED, parameters)).all()
                if not rows:
                    return done
                await self._apply(rows)
                done += len(rows)
                after = rows[-1].id

    async def _drain(self, *, skip_locked: bool) -> int:
        take = _TAKE_AND_KEEP if self._retention > 0 else _TAKE
        statement = text(
            take.format(
                skip="SKIP LOCKED" if skip_locked else "",
                position=INSERT_POSITION_SQL if self._record_positions else "NULL",
            )
        )
        parameters: dict[str, int | float] = {"n": self._batch, "upto": _NO_BOUND}
        if self._retention > 0:
            parameters["retention"] = self._retention
        done = 0
        async with self._lock:
            if not skip_locked:
                async with self._engine.connect() as conn:
                    parameters["upto"] = int(await conn.scalar(_NEWEST))
            while True:
                async with self._engine.begin() as conn:
                    rows = (await conn.execute(statement, parameters)).all()
                    # FOR UPDATE with LIMIT may come back short, even empty, when rows it
                    # waited for were deleted by another drain: look again while any remain.
                    if not rows and (
                        skip_locked or not await conn.scalar(_ANY, {"upto": parameters["upto"]})
                    ):
                        return done
                    try:
                        await self._apply(rows)
                    except CacheUnavailableError:
                        self.failures += 1
                        if self._breaker is not None:
                            self._breaker.trip()
                        raise
                done += len(rows)
                self.applied += len(rows)
                if skip_locked and len(rows) < self._batch:
                    # What it skipped another drain holds; what commits later is notified or
                    # polled.
                    return done

    async def _apply(self, rows: Sequence[Any]) -> None:
        tags: set[str] = set()
        truncated = False
        position: int | None = None
        for row in rows:
            if row.position is not None:
                position = max(position or 0, int(row.position))
            if row.op == "TRUNCATE":
                truncated = True
            else:
                tags |= tags_for_row_change(row.table_name, row.op, row.old_row, row.new_row)
        if truncated:
            await self._invalidator.revoke_leases(position=position)
            for namespace in NAMESPACES:
                await self._invalidator.purge(namespace)
        await self._invalidator.invalidate_tags(tags, position=position)

    async def _run(self) -> None:
        first_delay = min(0.1, self._interval)
        delay = first_delay
        while True:
            try:
                await self._listen_and_drain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("outbox relay: %r; retrying in %.1f s", exc, delay)
                self.listening = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10 * self._interval)
            else:
                delay = first_delay

    async def _listen_and_drain(self) -> None:
        async with self._engine.connect() as conn:
            raw = await conn.get_raw_connection()
            listener: Any = raw.driver_connection
            lost = asyncio.Event()

            def notified(*_: object) -> None:
                self._wake.set()

            await listener.add_listener(CHANNEL, notified)
            listener.add_termination_listener(lambda *_: lost.set())
            self.listening = True
            try:
                while not lost.is_set():
                    # Replays what was missed while not listening, then what was notified.
                    self._wake.clear()
                    await self._drain_if_redis_is_usable()
                    # Not asyncio.timeout: on 3.11, a cancel that lands as it expires is
                    # turned into a TimeoutError, and the relay would never stop.
                    waiter = asyncio.ensure_future(self._wake.wait())
                    try:
                        await asyncio.wait({waiter}, timeout=self._interval)
                    finally:
                        waiter.cancel()
                    if self._wake.is_set() and self._coalesce > 0:
                        await asyncio.sleep(self._coalesce)
            finally:
                self.listening = False
                with contextlib.suppress(Exception):
                    await listener.remove_listener(CHANNEL, notified)
            await conn.invalidate()  # never hand the dead connection out again
            raise ConnectionError("the outbox listener's connection was lost")

    async def _drain_if_redis_is_usable(self) -> None:
        if self._breaker is not None and not self._breaker.allows():
            return  # the breaker's recovery drains everything before it closes
        try:
            await self.drain()
        except CacheUnavailableError as exc:
            logger.warning("outbox relay: Redis failed, rows kept: %r", exc)
