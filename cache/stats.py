"""Cache statistics summed over every process that shares one Redis.

Each process counts in memory (no I/O on the hit path) and adds its counts to one Redis hash
(``{prefix}:stats``, fields ``{namespace}:{counter}``) with one pipelined round trip every
``flush_interval_seconds``, and before every :meth:`CacheStats.snapshot`. A snapshot therefore
holds every count of the calling process, and those of the other processes up to one flush
interval old.

An optional :class:`StatsObserver` sees every count once, when it leaves the process's memory
(at each flush, whether or not Redis takes it), and every load's duration as it happens: the
service exports both as Prometheus metrics without a cost on the hit path.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from cache.background import stop_task
from cache.errors import REDIS_FAILURES, translate_redis_errors
from cache.keys import KeyScheme

logger = logging.getLogger(__name__)

HITS: Final = "hits"
MISSES: Final = "misses"
STALE: Final = "stale"
BYPASS: Final = "bypass"
COALESCED: Final = "coalesced"
STORE_REJECTED: Final = "store_rejected"
STALE_IF_ERROR: Final = "stale_if_error"
LEASE_LOSSES: Final = "lease_losses"
HERD_TIMEOUTS: Final = "herd_timeouts"
REFRESHES: Final = "refreshes"
REFRESH_FAILURES: Final = "refresh_failures"
#: hits and misses: of the first GET; stale: stale entries answered (stale_if_error of them
#: after a failed load); bypass: reads that did not use Redis; coalesced: misses answered by
#: another caller's load (same process, or another process's stored value); lease_losses:
#: misses that found another process's load lease; herd_timeouts: of those, loads made after
#: the wait ran out; store_rejected: stores refused because an invalidation revoked their
#: lease (a stale set prevented); refreshes / refresh_failures: background refreshes.
COUNTERS: Final = (
    HITS,
    MISSES,
    STALE,
    STALE_IF_ERROR,
    BYPASS,
    COALESCED,
    LEASE_LOSSES,
    HERD_TIMEOUTS,
    STORE_REJECTED,
    REFRESHES,
    REFRESH_FAILURES,
)


class FlushPart(Protocol):
    """Something else that goes to Redis with the statistics flush, in the same round trip."""

    def add_to(self, pipe: Pipeline) -> Callable[[bool], None] | None:
        """Queue this part's commands on ``pipe`` (a non-transactional pipeline).

        Returns:
            None when nothing was queued; else a callback told whether Redis took the
            commands (True) or failed (False), called once after the round trip.
        """


class StatsObserver(Protocol):
    """Sees the counts of a :class:`CacheStats` as they are flushed, and each load's duration."""

    def counted(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Take ``{(namespace, counter): n}``: counts made since the previous flush."""

    def loaded(self, namespace: str, seconds: float) -> None:
        """Take the duration of one loader call in ``namespace``, in seconds."""


def _split(field: str) -> tuple[str, str]:
    namespace, _, counter = field.rpartition(":")
    return namespace, counter


def hit_ratio(hits: int, misses: int) -> float:
    """Return ``hits / (hits + misses)``, or 0.0 when both are 0."""
    total = hits + misses
    return hits / total if total else 0.0


class CacheStats:
    """Counters of cache outcomes by namespace, kept in memory and summed in Redis.

    Safe to share between tasks of one event loop. The owner calls :meth:`start` once and
    :meth:`aclose` once; :meth:`aclose` flushes what is still pending.

    Failures to reach Redis are swallowed (fail-open): the counts stay in memory and go out
    with the next flush that succeeds.

    Args:
        redis: where the counts are summed.
        scheme: the key scheme (its ``stats`` key holds the sums).
        flush_interval_seconds: time between two flushes, in seconds.
        observer: sees each count once, at the flush that takes it out of memory; None for none.
    """

    def __init__(
        self,
        redis: Redis,
        scheme: KeyScheme,
        *,
        flush_interval_seconds: float = 1.0,
        observer: StatsObserver | None = None,
    ) -> None:
        self._redis = redis
        self._key = scheme.stats
        self._interval = flush_interval_seconds
        self._pending: defaultdict[str, int] = defaultdict(int)
        # Counts the observer has seen that Redis has not taken yet.
        self._unsent: defaultdict[str, int] = defaultdict(int)
        self.observer = observer
        self._parts: list[FlushPart] = []
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()

    def count(self, namespace: str, counter: str, n: int = 1) -> None:
        """Add ``n`` to ``counter`` of ``namespace``, in memory (no I/O)."""
        self._pending[f"{namespace}:{counter}"] += n

    def add_flush_part(self, part: FlushPart) -> None:
        """Send ``part``'s commands with every flush from now on."""
        self._parts.append(part)

    def record_load(self, namespace: str, seconds: float) -> None:
        """Pass the duration of one load in ``namespace`` (seconds) to the observer, if any."""
        if self.observer is not None:
            self.observer.loaded(namespace, seconds)

    def start(self) -> None:
        """Start the background flush task on the running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._flush_forever(), name="cache-stats-flush")

    async def aclose(self) -> None:
        """Stop the background task and flush once more (fail-open)."""
        if self._task is not None:
            await stop_task(self._task)
            self._task = None
        await self.flush()

    async def flush(self) -> bool:
        """Add the pending counts to Redis in one pipelined round trip.

        Returns:
            True when Redis took them (or there was nothing to send); False when Redis failed,
            in which case the counts are kept for the next flush.
        """
        async with self._flush_lock:
            fresh, self._pending = self._pending, defaultdict(int)
            if fresh and self.observer is not None:
                self.observer.counted({_split(field): n for field, n in fresh.items()})
            batch, self._unsent = self._unsent, defaultdict(int)
            for field, n in fresh.items():
                batch[field] += n
            if not batch and not self._parts:
                return True
            done: list[Callable[[bool], None]] = []
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for field, n in batch.items():
                        pipe.hincrby(self._key, field, n)
                    for part in self._parts:
                        callback = part.add_to(pipe)
                        if callback is not None:
                            done.append(callback)
                    if len(pipe):
                        await pipe.execute()
            except REDIS_FAILURES as exc:
                logger.warning("cache stats flush failed, keeping counts: %r", exc)
                self._unsent = batch
                for callback in done:
                    callback(False)
                return False
            for callback in done:
                callback(True)
            return True

    async def reset(self) -> None:
        """Forget every count, in this process and in Redis.

        Raises:
            CacheUnavailableError: when Redis failed.
        """
        async with self._flush_lock:
            self._pending.clear()
            self._unsent.clear()
            with translate_redis_errors("reset statistics"):
                await self._redis.delete(self._key)

    async def snapshot(self, namespaces: Iterable[str] = ()) -> dict[str, Any]:
        """Return the counters summed over every process.

        Args:
            namespaces: namespaces to list even when nothing was counted in them yet.

        Returns:
            ``{<each name in COUNTERS>: int, "hit_ratio": float, "complete": bool,
            "namespaces": {name: {counter: int, ..., "hit_ratio": float}}}``. ``complete`` is False
            when Redis could not be read; the figures are then this process's unflushed counts only.
        """
        complete = await self.flush()
        raw: dict[bytes | str, bytes | str] = {}
        if complete:
            try:
                raw = await self._redis.hgetall(self._key)
            except REDIS_FAILURES as exc:
                logger.warning("cache stats read failed: %r", exc)
                complete = False
        if not complete:
            raw = {k: str(v) for k, v in self._unsent.items()}
        per_ns: dict[str, dict[str, Any]] = {ns: dict.fromkeys(COUNTERS, 0) for ns in namespaces}
        for field, value in raw.items():
            name = field.decode() if isinstance(field, bytes) else field
            ns, _, counter = name.rpartition(":")
            if counter in COUNTERS:
                per_ns.setdefault(ns, dict.fromkeys(COUNTERS, 0))[counter] = int(value)
        totals: dict[str, Any] = {c: sum(v[c] for v in per_ns.values()) for c in COUNTERS}
        for counters in per_ns.values():
            counters["hit_ratio"] = hit_ratio(counters[HITS], counters[MISSES])
        totals["hit_ratio"] = hit_ratio(totals[HITS], totals[MISSES])
        totals["complete"] = complete
        totals["namespaces"] = dict(sorted(per_ns.items()))
        return totals

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()
