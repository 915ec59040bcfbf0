"""Cache statistics summed over every process that shares one Redis.

Each process counts in memory (no I/O on the hit path) and adds its counts to one Redis hash
(``{prefix}:stats``, fields ``{namespace}:{counter}``), and those of the hits, misses, stale and
bypassed reads to rate buckets (:mod:`cache.rates`), with one pipelined round trip every
``flush_interval_seconds``, and within the round trip of every :meth:`CacheStats.read`. A
reading therefore holds every count of the calling process, and those of the other processes
up to one flush interval old.

An optional :class:`StatsObserver` sees every count once, when it leaves the process's memory
(at each flush, whether or not Redis takes it), and every load's duration as it happens: the
service exports both as Prometheus metrics without a cost on the hit path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cache.background import BackgroundTask, every
from cache.counters import READ_STATES, counter_figures
from cache.errors import REDIS_FAILURES, translate_redis_errors
from cache.keys import KeyScheme
from cache.rates import RateBuckets, WindowFigures
from cache.routing import AnyPipeline, RedisClient
from cache.singleflight import SingleFlight

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StatsReading:
    """One read of the statistics, and the replies of other commands from the same round trip.

    Attributes:
        counters: as :meth:`CacheStats.snapshot` returns.
        rates: window name (``10s``, ``1m``, ``5m``) to its figures (see :mod:`cache.rates`).
        replies: the replies of the caller's extra commands, in order; None when Redis failed.
        read_at: when the read was made, Unix time in seconds.
    """

    counters: dict[str, Any]
    rates: dict[str, WindowFigures]
    replies: list[Any] | None
    read_at: float


class FlushPart(Protocol):
    """Something else that goes to Redis with the statistics flush, in the same round trip."""

    def add_to(self, pipe: AnyPipeline) -> Callable[[bool], None] | None:
        """Queue this part's commands on ``pipe`` (a non-transactional pipeline).

        Returns:
            A callback told whether Redis took the flush's commands (True) or not (False),
            called once after the round trip; None when the part needs no word of it (it
            queued nothing, or drops what it queued if the flush fails).
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
        clock: returns the Unix time in seconds (the rate buckets' time).
    """

    def __init__(
        self,
        redis: RedisClient,
        scheme: KeyScheme,
        *,
        flush_interval_seconds: float = 1.0,
        observer: StatsObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._key = scheme.stats
        self._pending: defaultdict[str, int] = defaultdict(int)
        # Counts the observer has seen that Redis has not taken yet.
        self._unsent: defaultdict[str, int] = defaultdict(int)
        self.observer = observer
        self._parts: list[FlushPart] = []
        self._flusher = BackgroundTask(
            "cache-stats-flush", every(flush_interval_seconds, self.flush, at_once=False)
        )
        self._flush_lock = asyncio.Lock()
        self._clock = clock
        self._rates = RateBuckets(scheme)
        self._names: dict[bytes | str, tuple[str, str] | None] = {}
        self._reads: SingleFlight[StatsReading] = SingleFlight()

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
        self._flusher.start()

    async def aclose(self) -> None:
        """Stop the background task and flush once more (fail-open)."""
        await self._flusher.aclose()
        await self.flush()

    async def flush(self) -> bool:
        """Add the pending counts (and their rate buckets) to Redis in one pipelined round trip.

        The commands of every flush part go in the same round trip.

        Returns:
            True when Redis took them (or there was nothing to send); False when Redis failed,
            in which case the counts are kept for the next flush.
        """
        async with self._flush_lock:
            batch = self._take()
            if not batch and not self._parts:
                return True
            done: list[Callable[[bool], None]] = []
            replies: list[Any] = []
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    self._queue_counts(pipe, batch, self._clock())
                    sent = len(pipe)
                    for part in self._parts:
                        callback = part.add_to(pipe)
                        if callback is not None:
                            done.append(callback)
                    if len(pipe):
                        # An error reply to one command must not make the others, which Redis
                        # applied, count as unsent (and be added twice).
                        replies = await pipe.execute(raise_on_error=False)
            except REDIS_FAILURES as exc:
                logger.warning("cache stats flush failed, keeping counts: %r", exc)
                self._keep(batch)
                for callback in done:
                    callback(False)
                return False
            errors = [r for r in replies if isinstance(r, Exception)]
            if errors:
                logger.warning("cache stats flush: %d commands failed: %r", len(errors), errors[0])
            counted = not any(isinstance(r, Exception) for r in replies[:sent])
            if not counted:
                self._keep(batch)
            for callback in done:
                callback(not errors)
            return counted

    def _take(self) -> dict[str, int]:
        """Return the counts to send (pending and unsent ones); the observer sees the pending."""
        fresh, self._pending = self._pending, defaultdict(int)
        if fresh and self.observer is not None:
            self.observer.counted({_split(field): n for field, n in fresh.items()})
        batch, self._unsent = self._unsent, defaultdict(int)
        for field, n in fresh.items():
            batch[field] += n
        return batch

    def _keep(self, batch: Mapping[str, int]) -> None:
        for field, n in batch.items():
            self._unsent[field] += n

    def _queue_counts(self, pipe: AnyPipeline, batch: Mapping[str, int], now: float) -> None:
        if not batch:
            return
        by_state: defaultdict[str, int] = defaultdict(int)
        for field, n in batch.items():
            pipe.hincrby(self._key, field, n)
            state = READ_STATES.get(field[field.rfind(":") + 1 :])
            if state is not None:
                by_state[state] += n
        if by_state:
            self._rates.add_to(pipe, by_state, now)

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
        """Return the counters summed over every process (pending counts sent first).

        Args:
            namespaces: namespaces to list even when nothing was counted in them yet.

        Returns:
            ``{<each name in COUNTERS>: int, "hit_ratio": float, "complete": bool,
            "namespaces": {name: {counter: int, ..., "hit_ratio": float}}}``. ``complete`` is False
            when Redis could not be read; the figures are then this process's unflushed counts only.
        """
        return (await self.read(namespaces, with_rates=False)).counters

    async def read(
        self,
        namespaces: Iterable[str] = (),
        extra: Callable[[AnyPipeline], None] | None = None,
        *,
        with_rates: bool = True,
        share: str | None = None,
    ) -> StatsReading:
        """Send the pending counts, then read the counters, rates and ``extra``'s commands.

        All in one pipelined round trip: the pending counts' commands first, so that the
        counters read include them. Flush parts are not sent (they go with the flushes).

        Args:
            namespaces: namespaces to list even when nothing was counted in them yet.
            extra: queues further commands on the pipeline; their replies come back in
                :attr:`StatsReading.replies`.
            with_rates: read the rate buckets too (else the rates are zeros).
            share: when given, concurrent calls with the same ``share`` share one round trip
                (single-flight) and one reading, which the callers must not change: the
                first caller's arguments are used, so they must agree. A caller that joins
                gets a reading begun before it called: at most one round trip old.

        Returns:
            The reading. When Redis failed (logged, fail-open), ``counters`` holds this
            process's unsent counts with ``complete`` False, the rates are zeros, ``replies``
            is None, and the counts are kept for the next flush. An error reply to one of
            ``extra``'s commands is in its place in ``replies`` (an exception object).
        """
        if share is not None:
            reading, _ = await self._reads.run(
                share, lambda: self.read(namespaces, extra, with_rates=with_rates)
            )
            return reading
        now = self._clock()
        batch = self._take()
        replies: list[Any] = []
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                self._queue_counts(pipe, batch, now)
                sent = len(pipe)
                pipe.hgetall(self._key)
                rate_replies = self._rates.queue_read(pipe) if with_rates else 0
                if extra is not None:
                    extra(pipe)
                # Error replies come back in place: the counts that Redis applied must not be
                # kept to be sent again because another command failed.
                replies = await pipe.execute(raise_on_error=False)
            if any(isinstance(r, Exception) for r in replies[: sent + 1 + rate_replies]):
                if any(isinstance(r, Exception) for r in replies[:sent]):
                    self._keep(batch)
                raise next(r for r in replies if isinstance(r, Exception))
        except REDIS_FAILURES as exc:
            logger.warning("cache stats read failed: %r", exc)
            if not replies:
                self._keep(batch)
            unsent: dict[bytes | str, bytes | str] = {k: str(v) for k, v in self._unsent.items()}
            counters = counter_figures(unsent, namespaces, self._names, complete=False)
            return StatsReading(counters, RateBuckets.empty(), None, now)
        first_extra = sent + 1 + rate_replies
        return StatsReading(
            counter_figures(replies[sent], namespaces, self._names, complete=True),
            self._rates.figures(replies[sent + 1 : first_extra], now)
            if with_rates
            else RateBuckets.empty(),
            replies[first_extra:],
            now,
        )
