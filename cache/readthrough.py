"""The read-through (cache-aside) algorithm.

``get_or_load`` answers from Redis with one ``GET`` when it can (a hit). Otherwise:

* **Miss.** The caller's loader runs once per key and process (single-flight) and, across
  processes, only in the process that wins the entry's load lease; the others poll for the
  winner's value for at most ``herd_wait_ms`` milliseconds, then load themselves. The value is
  stored under a lease that an invalidation revokes, so a load that raced a write never stores
  what the write replaced (see :mod:`cache.leases`). The loader runs with the lease's
  invalidation watermark as :func:`cache.watermarks.required_position` (None when it runs
  under no lease).
* **Stale.** Past its fresh period and within the namespace's stale-while-revalidate period, an
  entry is answered at once with state ``STALE`` while one background refresh replaces it. Past
  that, it is loaded again; if the load fails while the entry is within its stale-if-error
  period, the stale entry is answered instead of the error.
* **Early refresh.** With ``early_refresh_beta`` set, a hit may start that background refresh
  shortly before the entry expires (see :class:`cache.policy.CachePolicy`).
* **Fill.** :attr:`ReadThroughCache.filler` loads batches of keys ahead of the reads (warming),
  under the same leases (see :mod:`cache.filling`). Loads and fills write their entries alike
  (:class:`cache.entries.EntryWriter`).

* **Near cache.** With a :class:`cache.near.NearCache`, a read first asks this process's
  near cache (L1), which answers entries while they are fresh and its holder's lease is valid
  (stale ones are Redis's to answer); what comes from Redis (a hit, or a load this process
  stored) is kept there when its doorkeeper admits it, unless an invalidation raced the read
  (see :mod:`cache.near` and :mod:`cache.bus`).

Failures of Redis never fail a read (fail-open): the loader's answer is returned with state
``BYPASS``. A :class:`cache.breaker.CircuitBreaker` stops reads from touching Redis at all
after repeated failures, and until its recovery hook has run.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cache import counters
from cache.background import stop_task
from cache.breaker import CircuitBreaker
from cache.codec import Entry, Representation, decode, etag_for
from cache.compression import Compression
from cache.entries import EntryWriter, Loader, fresh_entry, wall_clock_ms
from cache.errors import CacheUnavailableError, CodecError
from cache.filling import BatchFiller
from cache.hotkeys import HotKeyTracker
from cache.keys import CacheKey
from cache.leases import Lease, LeaseStore
from cache.near import NearCache, NearMark
from cache.policy import PolicyTable
from cache.singleflight import SingleFlight
from cache.stats import CacheStats
from cache.watermarks import requiring

logger = logging.getLogger(__name__)

T = TypeVar("T")


class CacheState(enum.Enum):
    """Where an answer came from; the value is what ``X-Cache`` says."""

    HIT = "HIT"
    MISS = "MISS"
    STALE = "STALE"
    BYPASS = "BYPASS"


@dataclass(frozen=True, slots=True)
class Lookup:
    """The answer to one read.

    Attributes:
        body: the answer's bytes (identity coding).
        etag: their strong ETag, with quotes.
        status: its status.
        state: where it came from.
        fresh_for_seconds: how much longer it stays fresh, in whole seconds (0 when not cached
            or stale).
        encoded: the same answer compressed, best coding first (empty when the body is below
            the compression threshold, or was not stored).
        load_ms: how long the loader ran for this answer, in milliseconds; None when no
            loader ran for it (a hit or a stale answer).
        stored: True when this read's load was stored in Redis.
        near: True when it came from the near cache (L1), not from Redis.
    """

    body: bytes
    etag: str
    status: int
    state: CacheState
    fresh_for_seconds: int
    encoded: tuple[Representation, ...] = ()
    load_ms: float | None = None
    stored: bool = False
    near: bool = False


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A flight's result, with what a caller that shared it needs to know to trust it.

    ``started``: ``time.monotonic()`` when the flight began. ``vouched_until``: when the
    flight's store was accepted, the moment just before it was sent; a write acknowledged
    before then had invalidated before the store ran, which would have refused it. -inf
    when nothing vouches for the result (not stored, bypassed, read back from Redis).
    """

    lookup: Lookup
    started: float
    vouched_until: float = -math.inf

    def serves(self, joined_at: float) -> bool:
        """Whether a read that began at ``joined_at`` may answer with this result."""
        return self.started >= joined_at or joined_at <= self.vouched_until


class ReadThroughCache:
    """Cache-aside reads over one Redis. Safe to share between the tasks of one event loop.

    Args:
        leases: the lease store; its auto-pipeline (and so its Redis client, which should
            have short socket timeouts) carries the reads too.
        stats: where outcomes are counted.
        policies: the TTL, jitter and stale periods of each namespace.
        breaker: the Redis circuit breaker; None for none (every read tries Redis).
        load_lease_ms: how long a load lease lasts, in milliseconds; longer than the slowest
            load, or a second process may load while the first still does. A holder that dies
            delays the others by at most ``herd_wait_ms``.
        herd_wait_ms: how long a process that lost the load lease polls for the winner's value,
            in milliseconds, before it loads by itself.
        compression: the content codings stored besides identity; None for the defaults of
            :class:`cache.compression.Compression`.
        tracker: counts the keys read (sampled); None for no hot-key tracking.
        fill_leases: the lease store :attr:`filler` takes leases and stores with (see
            :class:`cache.filling.BatchFiller`); None for ``leases``.
        near: this process's near cache (L1); None for none.

    Attributes:
        filler: fills batches of this cache's entries (warming); it writes them as loads do.

    Reads go through the lease store's :class:`cache.autopipeline.AutoPipeline`: the reads of
    one event-loop iteration share one ``MGET``, sent in one write with the lease scripts of
    the misses under way.
    """

    def __init__(
        self,
        leases: LeaseStore,
        stats: CacheStats,
        policies: PolicyTable,
        *,
        breaker: CircuitBreaker | None = None,
        load_lease_ms: int = 5000,
        herd_wait_ms: int = 1000,
        compression: Compression | None = None,
        tracker: HotKeyTracker | None = None,
        fill_leases: LeaseStore | None = None,
        near: NearCache | None = None,
    ) -> None:
        self._tracker = tracker
        self._pipeline = leases.pipeline
        self._writer = EntryWriter(policies, compression or Compression(), stats)
        self.filler = BatchFiller(
            fill_leases or leases, self._writer, breaker=breaker, load_lease_ms=load_lease_ms
        )
        self._leases = leases
        self._stats = stats
        self._policies = policies
        self._breaker = breaker
        self._load_lease_ms = load_lease_ms
        self._herd_wait = herd_wait_ms / 1000
        self._flights: SingleFlight[_Outcome] = SingleFlight()
        self._refreshes: dict[str, asyncio.Task[None]] = {}
        self._near = near

    async def get_or_load(
        self, key: CacheKey, loader: Loader, *, after: PendingHit[Any] | None = None
    ) -> Lookup:
        """Return the entry at ``key``, loading and storing it on a miss.

        Args:
            key: the entry's key.
            loader: called on a miss, at most once at a time per key in this process.
            after: the :meth:`get_hit` of the same read of ``key`` that was no hit (its
                ``finish()`` gave None): its read from Redis, once done, is taken instead of
                reading again (a miss, a stale entry or a failed read costs one read).

        Returns:
            The answer, with its state: ``HIT`` (from the near cache or Redis, fresh, or stored
            by another process while this one waited), ``STALE`` (past its fresh period),
            ``MISS`` (from the loader, stored unless a concurrent invalidation revoked the
            lease) or ``BYPASS`` (from the loader; Redis failed or the breaker is open).

        Raises:
            Whatever ``loader`` raises, unless a stale entry within its stale-if-error period
            is answered instead; never a Redis error.
        """
        if self._tracker is not None:
            self._tracker.touch(key)
        breaker = self._breaker
        if breaker is not None and not breaker.allows():
            return await self._bypass(key, loader)
        if after is not None and after.read.done() and not after.read.cancelled():
            read, mark = after.read, after.mark
        else:
            begun = self._near_or_read(key, loader)
            if isinstance(begun, Lookup):
                return begun
            read, mark = begun
        try:
            raw = await read
        except CacheUnavailableError as exc:
            logger.warning("cache read of %s failed, bypassing: %r", key.redis_key, exc)
            if breaker is not None:
                breaker.record_failure()
            return await self._bypass(key, loader)
        if breaker is not None and breaker.failures:
            breaker.record_success()
        stale: Entry | None = None
        if raw is not None:
            try:
                entry = decode(raw)
            except CodecError:
                logger.warning("undecodable entry at %s, reloading", key.redis_key)
            else:
                now_ms = wall_clock_ms()
                if now_ms < entry.fresh_until_ms:
                    return self._fresh_hit(key, loader, entry, now_ms, mark)
                policy = self._policies.for_namespace(key.namespace)
                if now_ms < entry.fresh_until_ms + policy.revalidate_ms:
                    self._stats.count(key.namespace, counters.STALE)
                    self._refresh_in_background(key, loader)
                    return _lookup(entry, CacheState.STALE, now_ms)
                stale = entry
        self._stats.count(key.namespace, counters.MISSES)
        try:
            lookup, shared = await self._share(key, lambda: self._load_and_store(key, loader))
        except Exception as exc:
            if stale is None:
                raise
            logger.warning("load of %s failed, answering stale: %r", key.redis_key, exc)
            self._stats.count(key.namespace, counters.STALE)
            self._stats.count(key.namespace, counters.STALE_IF_ERROR)
            return _lookup(stale, CacheState.STALE, wall_clock_ms())
        if shared:
            self._stats.count(key.namespace, counters.COALESCED)
        return lookup

    def get_hit(self, key: CacheKey, loader: Loader) -> Lookup | PendingHit[Lookup] | None:
        """Return the fresh entry at ``key`` without a task: now, once Redis answers, or None.

        The hits of :meth:`get_or_load`, for a caller that answers them without a task (and
        everything else with :meth:`get_or_load`): a fresh entry of the near cache is returned
        at once (a :class:`Lookup`); otherwise a read from Redis is started and returned as a
        :class:`PendingHit`, whose ``finish()``, once its ``read`` is done, returns the
        ``HIT`` if Redis holds the entry fresh, else None. Hits are counted, kept in the near
        cache and refreshed early as :meth:`get_or_load` does. None (and a ``finish()`` that
        returns None) counts nothing: the caller then calls :meth:`get_or_load` with the pending
        hit as ``after``, which answers a miss, a stale entry or a failed read from this same
        read (and counts it; without ``after`` it reads Redis again). None at once while the
        breaker is open.

        Args:
            key: the entry's key.
            loader: what an early refresh loads with (see :meth:`get_or_load`).

        Returns:
            A ``HIT`` from the near cache, a :class:`PendingHit` of one from Redis, or None.
            Never raises a Redis error (a failed read finishes with None).
        """
        breaker = self._breaker
        if breaker is not None and not breaker.allows():
            return None
        begun = self._near_or_read(key, loader)
        if isinstance(begun, Lookup):
            if self._tracker is not None:
                self._tracker.touch(key)
            return begun
        read, mark = begun

        def finish() -> Lookup | None:
            if read.cancelled() or read.exception() is not None:
                return None
            if breaker is not None and breaker.failures:
                breaker.record_success()
            entry = fresh_entry(read.result())
            if entry is None:
                return None
            if self._tracker is not None:
                self._tracker.touch(key)
            return self._fresh_hit(key, loader, entry, wall_clock_ms(), mark)

        return PendingHit(read, finish, mark)

    def _near_or_read(
        self, key: CacheKey, loader: Loader
    ) -> Lookup | tuple[asyncio.Future[bytes | None], NearMark | None]:
        """The near cache's fresh entry at ``key`` (answered and counted), else a read of Redis.

        The read is begun after the near cache's mark (None without a near cache), which a fill
        from it needs.
        """
        near = self._near
        mark: NearMark | None = None
        if near is not None:
            now_ms = wall_clock_ms()
            held = near.lookup(key.redis_key, now_ms)
            if held is not None:
                return self._answer_near(key, loader, held, now_ms)
            mark = near.mark()
        return self._pipeline.get(key.redis_key), mark

    def _fresh_hit(
        self, key: CacheKey, loader: Loader, entry: Entry, now_ms: int, mark: NearMark | None
    ) -> Lookup:
        """Answer a fresh entry read from Redis after ``mark`` (kept in the near cache)."""
        self._stats.count(key.namespace, counters.HITS)
        if mark is not None:
            self._fill(key, entry, mark)
        if self._refresh_early(key, entry, now_ms):
            self._refresh_in_background(key, loader)
        return _lookup(entry, CacheState.HIT, now_ms)

    def _answer_near(self, key: CacheKey, loader: Loader, entry: Entry, now_ms: int) -> Lookup:
        """Answer a fresh entry from the near cache (it holds none past its fresh time)."""
        self._stats.count(key.namespace, counters.HITS)
        self._stats.count(key.namespace, counters.L1_HITS)
        if self._refresh_early(key, entry, now_ms):
            self._refresh_in_background(key, loader)
        return _lookup(entry, CacheState.HIT, now_ms, near=True)

    def _mark(self) -> NearMark | None:
        """The near cache's mark before a read asks Redis (None without a near cache)."""
        return None if self._near is None else self._near.mark()

    def _fill(self, key: CacheKey, entry: Entry, mark: NearMark) -> None:
        """Keep ``entry``, read from Redis after ``mark``, in the near cache (unless raced).

        Only a key the near cache's doorkeeper admits (read before, or held).
        """
        near = self._near
        if near is not None and near.is_admitted(key.redis_key):
            # Fresh entries only: past that, Redis, which may have dropped it already (a
            # scheduled change ends its life early), says whether it may be answered stale.
            near.fill(key.redis_key, key.namespace, entry, entry.fresh_until_ms, mark)

    async def _share(
        self, key: CacheKey, flight: Callable[[], Awaitable[_Outcome]]
    ) -> tuple[Lookup, bool]:
        """Run ``flight`` for ``key`` or share the one under way; return (lookup, shared).

        A shared flight that began before this read, and whose store does not vouch for it,
        may have read the source before a write acknowledged since this read began: then
        this read runs a flight of its own (or shares one begun after it). Two rounds at most:
        the flight it shared is done, so any flight it meets next began after it.
        """
        joined_at = time.monotonic()
        while True:
            outcome, shared = await self._flights.run(key.redis_key, flight)
            if not shared or outcome.serves(joined_at):
                return outcome.lookup, shared

    async def aclose(self) -> None:
        """Cancel the background refreshes still running (at shutdown)."""
        for task in list(self._refreshes.values()):
            await stop_task(task)

    def _refresh_early(self, key: CacheKey, entry: Entry, now_ms: int) -> bool:
        beta = self._policies.for_namespace(key.namespace).early_refresh_beta
        scale = entry.load_ms * beta
        left_ms = entry.fresh_until_ms - now_ms
        # P(gap >= 40 * scale) = e^-40: far from expiry, skip the draw on the hit path.
        if not scale or left_ms > 40 * scale:
            return False
        # XFetch (Vattani et al., VLDB 2015): -log(U) for U in (0, 1] is Exp(1)-distributed.
        return -scale * math.log(1.0 - random.random()) >= left_ms

    def _refresh_in_background(self, key: CacheKey, loader: Loader) -> None:
        if key.redis_key in self._refreshes or self._flights.in_flight(key.redis_key):
            return
        task = asyncio.get_running_loop().create_task(self._refresh(key, loader))
        self._refreshes[key.redis_key] = task
        task.add_done_callback(lambda _: self._refreshes.pop(key.redis_key, None))

    async def _refresh(self, key: CacheKey, loader: Loader) -> None:
        mark = self._mark()
        try:
            grant = await self._leases.take(key.redis_key, load_lease_ms=self._load_lease_ms)
            if not grant.lease.loads:
                return  # another process is refreshing it
            self._stats.count(key.namespace, counters.REFRESHES)
            await self._load_under(grant.lease, key, loader, mark)
        except Exception as exc:
            self._stats.count(key.namespace, counters.REFRESH_FAILURES)
            logger.info("background refresh of %s failed: %r", key.redis_key, exc)

    async def _bypass(self, key: CacheKey, loader: Loader) -> Lookup:
        # Through the same single-flight: a Redis outage must not multiply database loads.
        self._stats.count(key.namespace, counters.BYPASS)
        lookup, _ = await self._share(key, lambda: self._load_only(key, loader))
        return lookup

    async def _load_only(self, key: CacheKey, loader: Loader) -> _Outcome:
        started = time.monotonic()
        with requiring(None):  # no lease: only the source itself is recent enough
            loaded = await loader()
        load_ms = (time.monotonic() - started) * 1000
        self._stats.record_load(key.namespace, load_ms / 1000)
        body = loaded.body
        lookup = Lookup(body, etag_for(body), loaded.status, CacheState.BYPASS, 0, (), load_ms)
        return _Outcome(lookup, started)

    async def _load_and_store(self, key: CacheKey, loader: Loader) -> _Outcome:
        started = time.monotonic()
        mark = self._mark()
        deadline = started + self._herd_wait
        pause = 0.002
        lost = False
        while True:
            try:
                grant = await self._leases.take(
                    key.redis_key, load_lease_ms=self._load_lease_ms, return_value=True
                )
            except CacheUnavailableError as exc:
                logger.warning(
                    "lease for %s failed, loading without storing: %r", key.redis_key, exc
                )
                if self._breaker is not None:
                    self._breaker.record_failure()
                return await self._load_only(key, loader)  # an outage: no lease, no store
            entry = fresh_entry(grant.value)
            if entry is not None:
                if grant.lease.loads:
                    with contextlib.suppress(CacheUnavailableError):
                        await self._leases.release(grant.lease, key.redis_key)
                self._stats.count(key.namespace, counters.COALESCED)
                if mark is not None:
                    self._fill(key, entry, mark)
                return _Outcome(_lookup(entry, CacheState.HIT, wall_clock_ms()), started)
            left = deadline - time.monotonic()
            if grant.lease.loads or left <= 0:
                break
            if not lost:
                lost = True
                self._stats.count(key.namespace, counters.LEASE_LOSSES)
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)
        if not grant.lease.loads:
            self._stats.count(key.namespace, counters.HERD_TIMEOUTS)
        lookup, vouched_until = await self._load_under(grant.lease, key, loader, mark)
        return _Outcome(lookup, started, vouched_until)

    async def _load_under(
        self, lease: Lease, key: CacheKey, loader: Loader, mark: NearMark | None
    ) -> tuple[Lookup, float]:
        """Load and store under ``lease``; return the lookup and when the store was sent.

        The second member is ``time.monotonic()`` just before an accepted store was sent, or
        -inf when nothing was stored. A stored entry is kept in the near cache when ``mark``
        (taken before the lease) is given and no invalidation of its key was applied since.
        """
        started = time.monotonic()
        try:
            with requiring(lease.watermark):
                loaded = await loader()
        except BaseException:
            with contextlib.suppress(CacheUnavailableError):
                await self._leases.release(lease, key.redis_key)
            raise
        load_ms = (time.monotonic() - started) * 1000
        self._stats.record_load(key.namespace, load_ms / 1000)
        entry, stored, vouched_until = await self._writer.write(
            self._leases, lease, key, loaded, load_ms
        )
        if stored is True and mark is not None:
            self._fill(key, entry, mark)
        lookup = _lookup(entry, CacheState.MISS, wall_clock_ms(), load_ms, stored=stored is True)
        return lookup, vouched_until


@dataclass(frozen=True, slots=True)
class PendingHit(Generic[T]):
    """A hit that is known once a read from Redis is done (see :meth:`ReadThroughCache.get_hit`).

    Attributes:
        read: the read (the value at the key, None when there is none; it fails with
            :class:`CacheUnavailableError` when Redis fails). Its callbacks call ``finish``.
        finish: once ``read`` is done, on the event loop, the answer (counted), or None when
            it is not a hit (nothing counted). Call it once: each call counts its hit.
            Raises ``asyncio.InvalidStateError`` while ``read`` is not done.
    """

    read: asyncio.Future[bytes | None]
    finish: Callable[[], T | None]
    #: the near cache's mark taken before ``read`` (for :meth:`ReadThroughCache.get_or_load`)
    mark: NearMark | None = None


def _lookup(
    entry: Entry,
    state: CacheState,
    now_ms: int,
    load_ms: float | None = None,
    *,
    stored: bool = False,
    near: bool = False,
) -> Lookup:
    fresh_ms = entry.fresh_until_ms - now_ms
    return Lookup(
        entry.body,
        entry.etag,
        entry.status,
        state,
        max(0, fresh_ms // 1000),
        entry.encoded,
        load_ms,
        stored,
        near,
    )
