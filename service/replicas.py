"""PostgreSQL streaming replicas that cache-miss loads read from, and where each load goes.

Writes, the outbox relay, readiness and the reads inside a write's transaction use the primary
(``DATABASE_URL``). A cache-miss load (:class:`service.reads.ContentReader`) goes to a replica
when it may, else to the primary:

* **Recent enough, per load.** A load under a lease has a required position (the lease's
  invalidation watermark, :func:`cache.required_position`): every write whose invalidation
  came before the lease recorded a WAL position at or below it (see :mod:`service.wal`). A
  replica serves the load only if, on the connection the statement runs on and before it runs,
  its replay position is at or past the required position; a connection remembers the last
  position it saw (positions only grow for the life of a connection), so the check costs a
  round trip only on the first load after a write. Else the replica is skipped (``behind``).
  A load with no required position (no lease, no watermark recorded) goes to the primary.
* **Healthy, per sample.** A background sampler asks the primary for its WAL position and each
  replica for its replay position every ``sample_interval_seconds``; a replica that lags more
  than ``max_lag_seconds`` behind (see :func:`service.wal.replication_lag_seconds`) is
  skipped (``lagging``) until a sample finds it caught up, one that did not answer (``down``)
  or is not in recovery (``not_replica``: promoted, or not a standby) likewise. A load that
  finds a replica unreachable marks it down at once. The sampler also records the primary's
  position as the watermark when Redis holds none (it lost it), so that loads go back to the
  replicas.
* **Conflicts.** A statement cancelled by a conflict with recovery (SQLSTATE 40001 on a hot
  standby) is retried elsewhere (``conflict``).

The sampler only decides which replica is tried; that no load stores what a write replaced
rests on the per-load check alone (docs/replicas.md has the argument).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection

from cache import BackgroundTask, CacheUnavailableError, Invalidator, every, required_position
from service.errors import is_unreachable
from service.statements import DriverReads, GuardRefusedError, Reads
from service.wal import (
    COMMITTED_POSITION,
    PRIMARY_POSITIONS,
    REPLAY_POSITION_SQL,
    REPLAY_STATUS,
    replication_lag_seconds,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: A replica's states: before its first sample, usable, lagging past the bound, unreachable,
#: not in recovery.
STATES: Final = ("unknown", "up", "lagging", "down", "not_replica")
#: Why a load passed a replica by: its sampled state, or what the load found.
SKIP_REASONS: Final = ("lagging", "down", "not_replica", "behind", "conflict")
#: How long the primary's positions are kept for the lag, in seconds (at least).
HISTORY_SECONDS: Final = 60.0
#: The key of a pooled connection's ``info`` that holds the replay position it last saw.
_REPLAYED: Final = "content_replayed_position"
#: SQLSTATE of a statement cancelled by a conflict with recovery on a hot standby.
_RECOVERY_CONFLICT: Final = "40001"


def replica_name(url: str) -> str:
    """Return ``host:port/database`` of a ``postgresql+asyncpg://`` URL (no user, no password).

    A socket folder given as ``?host=`` (and ``?port=``) counts as the host (and port).
    """
    u = make_url(url)
    host = u.host or u.query.get("host") or "localhost"
    port = u.port or u.query.get("port") or 5432
    if not isinstance(host, str):
        host = host[0]
    if not isinstance(port, int | str):
        port = port[0]
    return f"{host}:{port}/{u.database or ''}"


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """What the last sample of a replica found.

    Attributes:
        state: one of :data:`STATES`.
        lag_seconds: how far it lags behind the primary, in seconds; None when unknown.
        replayed: its replay position, in bytes; None when unknown.
        sampled_at: when the sample was taken, Unix time in seconds; None before the first.
    """

    state: str = "unknown"
    lag_seconds: float | None = None
    replayed: int | None = None
    sampled_at: float | None = None


class Replica:
    """One streaming replica: its engine, its last sample and its counts.

    Args:
        name: its name in ``/stats`` and metric labels (``host:port/database``).
        engine: its engine; owned by the caller, who disposes of it.

    Attributes:
        status: what the last sample (or a load that found it unreachable) said.
        loads: loads it served.
        skipped: loads that passed it by, per reason of :data:`SKIP_REASONS`.
    """

    def __init__(self, name: str, engine: AsyncEngine) -> None:
        self.name = name
        self.engine = engine
        self._reads = DriverReads(engine)
        self.load_reads: Reads = self._reads.guarded(self._has_replayed_required)
        self.status = ReplicaStatus()
        self.loads = 0
        self.skipped = dict.fromkeys(SKIP_REASONS, 0)

    def skip_reason(self) -> str | None:
        """Return why loads skip it now (its sampled state), or None when they may try it."""
        state = self.status.state
        return None if state in ("up", "unknown") else state

    async def mark_down(self, sampled_at: float | None = None) -> None:
        """Skip it until a sample finds it answering again; drop its pooled connections.

        Its pooled connections are likely dead (a restarted server), or would hang (a
        partitioned one): the pool is replaced by an empty one once, as it goes down, so that
        the server, once back, is reached on new connections.

        Args:
            sampled_at: when a sample found it down, Unix time in seconds; None when a load did.
        """
        status = self.status
        self.status = ReplicaStatus("down", None, status.replayed, sampled_at or status.sampled_at)
        if status.state != "down":
            await self.engine.dispose()

    async def sample(self) -> tuple[bool, int | None]:
        """Return whether it is in recovery and its replay position (None when NULL).

        Raises:
            Whatever connecting or the statement raises.
        """
        row = await self._reads.first(REPLAY_STATUS)
        assert row is not None
        replayed = row["replayed"]
        return bool(row["in_recovery"]), None if replayed is None else int(replayed)

    async def _has_replayed_required(self, raw: PoolProxiedConnection) -> bool:
        """The load guard: whether this connection's server has replayed the required position."""
        required = required_position()
        if required is None:
            return False
        known = raw.info.get(_REPLAYED)
        if known is not None and known >= required:
            return True
        driver: Any = raw.driver_connection
        replayed = await driver.fetchval(REPLAY_POSITION_SQL)
        if replayed is None:
            return False
        raw.info[_REPLAYED] = int(replayed)
        return int(replayed) >= required


class ReplicaSet:
    """The replicas loads may read from; routes each load. Safe to share between tasks.

    One per process. Call :meth:`start` to sample in the background, :meth:`aclose` to stop.

    Args:
        replicas: the replicas, tried in turn from one load to the next.
        primary: the request engine: the primary's position after a write is read with it;
            owned by the caller.
        background: the engine of background work: the sampler reads the primary's position
            with it; owned by the caller.
        invalidator: records the watermark when Redis lost it.
        max_lag_seconds: a replica lagging more than this is skipped, in seconds.
        sample_interval_seconds: time between two samples, in seconds.
        sample_timeout_seconds: how long one server's sample may take, in seconds.

    Attributes:
        primary_loads: loads served by the primary.
        sample_failures: samples of the primary's position that failed.
    """

    def __init__(
        self,
        replicas: Sequence[Replica],
        primary: AsyncEngine,
        background: AsyncEngine,
        invalidator: Invalidator,
        *,
        max_lag_seconds: float = 5.0,
        sample_interval_seconds: float = 1.0,
        sample_timeout_seconds: float = 2.0,
    ) -> None:
        self.replicas = tuple(replicas)
        self.max_lag_seconds = max_lag_seconds
        self._primary = DriverReads(primary)
        self._background = DriverReads(background)
        self._invalidator = invalidator
        self._timeout = sample_timeout_seconds
        self._history: deque[tuple[float, int]] = deque()
        self._horizon = max(HISTORY_SECONDS, 2 * max_lag_seconds)
        self._next = 0
        self._task = BackgroundTask("replica-sampler", every(sample_interval_seconds, self.sample))
        self.primary_loads = 0
        self.sample_failures = 0

    def start(self) -> None:
        """Sample in the background (no-op without replicas)."""
        if self.replicas:
            self._task.start()

    async def aclose(self) -> None:
        """Stop sampling."""
        await self._task.aclose()

    async def position_after_write(self) -> int | None:
        """Return the primary's WAL position now; None without replicas (none is needed).

        Called once a write has committed: the position is at or past its commit record.

        Raises:
            Whatever connecting or the statement raises.
        """
        if not self.replicas:
            return None
        row = await self._primary.first(COMMITTED_POSITION)
        assert row is not None
        return int(row["position"])

    async def read(
        self, fn: Callable[[Reads], Awaitable[T]], primary: Callable[[], Awaitable[T]]
    ) -> T:
        """Run ``fn`` on a replica that may serve the running load, else call ``primary()``.

        Replicas are tried in turn, each at most once; the ones passed by are counted.

        Raises:
            Whatever ``fn`` raises on a replica other than its being unreachable, refused by
            the guard or cancelled by a recovery conflict (a bad input, a statement timeout);
            whatever ``primary()`` raises.
        """
        replicas = self.replicas
        if replicas and required_position() is not None:
            start = self._next
            self._next = (start + 1) % len(replicas)
            for i in range(len(replicas)):
                replica = replicas[(start + i) % len(replicas)]
                reason = replica.skip_reason()
                if reason is None:
                    try:
                        result = await fn(replica.load_reads)
                    except GuardRefusedError:
                        reason = "behind"
                    except Exception as exc:
                        reason = _failure_reason(exc)
                        if reason is None:
                            raise
                        if reason == "down":
                            logger.warning("replica %s unreachable: %r", replica.name, exc)
                            await replica.mark_down()
                    else:
                        replica.loads += 1
                        return result
                replica.skipped[reason] += 1
        result = await primary()
        self.primary_loads += 1
        return result

    async def sample(self) -> None:
        """Sample the primary's position, then every replica's state, at once (fail-open).

        A replica that does not answer within the timeout is ``down``; a failed sample of the
        primary is counted in :attr:`sample_failures` (the lag is then measured against the
        positions sampled before).
        """
        now = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                row = await self._background.first(PRIMARY_POSITIONS)
            assert row is not None
        except Exception as exc:
            self.sample_failures += 1
            logger.warning("primary WAL position not sampled: %r", exc)
        else:
            self._remember(now, int(row["flushed"]))
            try:
                await self._invalidator.seed_watermark(int(row["inserted"]))
            except CacheUnavailableError as exc:
                logger.debug("watermark not seeded: %r", exc)
        await asyncio.gather(*(self._sample_replica(r) for r in self.replicas))

    def _remember(self, now: float, position: int) -> None:
        history = self._history
        if not history or position > history[-1][1]:
            history.append((now, position))
        while len(history) > 1 and history[0][0] < now - self._horizon:
            history.popleft()

    async def _sample_replica(self, replica: Replica) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                in_recovery, replayed = await replica.sample()
        except Exception as exc:
            if replica.status.state != "down":
                logger.warning("replica %s not sampled: %r", replica.name, exc)
            await replica.mark_down(time.time())
            return
        lag = None
        if replayed is not None:
            lag = replication_lag_seconds(self._history, replayed, time.monotonic())
        if not in_recovery:
            state = "not_replica"
        elif lag is not None and lag > self.max_lag_seconds:
            state = "lagging"
        else:
            state = "up"
        if state != replica.status.state and replica.status.state != "unknown":
            logger.info("replica %s is now %s (lag %s s)", replica.name, state, lag)
        replica.status = ReplicaStatus(state, lag, replayed, time.time())


def _failure_reason(exc: BaseException) -> str | None:
    """Return the skip reason of a load's failure on a replica; None for a failure of its own."""
    if is_unreachable(exc):
        return "down"
    if isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == _RECOVERY_CONFLICT:
        return "conflict"
    return None
