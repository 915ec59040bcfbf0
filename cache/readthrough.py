"""The read-through (cache-aside) algorithm.

``get_or_load`` answers from Redis with one ``GET`` when it can (a hit), and otherwise runs the
caller's loader once per key and process (single-flight), under a lease that stops it from
storing a value that a concurrent write made stale (see :mod:`cache.leases`).

Failures of Redis never fail a read (fail-open): the loader's answer is returned with state
``BYPASS`` and the failure is counted.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from cache import stats as counters
from cache.codec import Entry, decode, encode, etag_for
from cache.errors import REDIS_FAILURES, CacheUnavailableError, CodecError
from cache.keys import CacheKey
from cache.leases import Lease, LeaseStore
from cache.policy import PolicyTable
from cache.singleflight import SingleFlight
from cache.stats import CacheStats

logger = logging.getLogger(__name__)


class CacheState(enum.Enum):
    """Where an answer came from; the value is what ``X-Cache`` says."""

    HIT = "HIT"
    MISS = "MISS"
    STALE = "STALE"
    BYPASS = "BYPASS"


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a loader returns.

    Attributes:
        body: the answer's bytes, serialized once, as they will be sent.
        tags: the tags to file the entry under: everything whose change makes it wrong.
        status: the answer's status (200; a loader may cache an absence as 404).
        ttl_seconds: a lifetime shorter than the policy's, in seconds, when the loader knows
            the value will change at a given moment; None for the policy's TTL.
    """

    body: bytes
    tags: Iterable[str] = ()
    status: int = 200
    ttl_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Lookup:
    """The answer to one read.

    Attributes:
        body: the answer's bytes.
        etag: its strong ETag, with quotes.
        status: its status.
        state: where it came from.
        fresh_for_seconds: how much longer it stays fresh, in whole seconds (0 when not cached).
    """

    body: bytes
    etag: str
    status: int
    state: CacheState
    fresh_for_seconds: int


Loader = Callable[[], Awaitable[Loaded]]


class ReadThroughCache:
    """Cache-aside reads over one Redis. Safe to share between the tasks of one event loop.

    Args:
        redis: the client; owned by the caller, who should give it short socket timeouts.
        leases: the lease store of the same scheme.
        stats: where outcomes are counted.
        policies: the TTL and jitter of each namespace.
    """

    def __init__(
        self,
        redis: Redis,
        leases: LeaseStore,
        stats: CacheStats,
        policies: PolicyTable,
    ) -> None:
        self._redis = redis
        self._leases = leases
        self._stats = stats
        self._policies = policies
        self._flights: SingleFlight[Lookup] = SingleFlight()

    async def get_or_load(self, key: CacheKey, loader: Loader) -> Lookup:
        """Return the entry at ``key``, loading and storing it on a miss.

        Args:
            key: the entry's key.
            loader: called on a miss, at most once at a time per key in this process.

        Returns:
            The answer, with its state: ``HIT`` (from Redis), ``MISS`` (from the loader, stored
            unless a concurrent invalidation revoked the lease) or ``BYPASS`` (from the loader,
            Redis failed).

        Raises:
            Whatever ``loader`` raises; never a Redis error.
        """
        try:
            raw = cast("bytes | None", await self._redis.get(key.redis_key))
        except REDIS_FAILURES as exc:
            logger.warning("cache read of %s failed, bypassing: %r", key.redis_key, exc)
            return await self._bypass(key, loader)
        if raw is not None:
            try:
                entry = decode(raw)
            except CodecError:
                logger.warning("undecodable entry at %s, reloading", key.redis_key)
            else:
                self._stats.count(key.namespace, counters.HITS)
                return _lookup(entry, CacheState.HIT)
        self._stats.count(key.namespace, counters.MISSES)
        lookup, shared = await self._flights.run(
            key.redis_key, lambda: self._load_and_store(key, loader)
        )
        if shared:
            self._stats.count(key.namespace, counters.COALESCED)
        return lookup

    async def _bypass(self, key: CacheKey, loader: Loader) -> Lookup:
        # Through the same single-flight: a Redis outage must not multiply database loads.
        self._stats.count(key.namespace, counters.BYPASS)
        lookup, _ = await self._flights.run(key.redis_key, lambda: self._load_only(loader))
        return lookup

    @staticmethod
    async def _load_only(loader: Loader) -> Lookup:
        loaded = await loader()
        return Lookup(loaded.body, etag_for(loaded.body), loaded.status, CacheState.BYPASS, 0)

    async def _load_and_store(self, key: CacheKey, loader: Loader) -> Lookup:
        lease: Lease | None
        try:
            lease = await self._leases.take()
        except CacheUnavailableError as exc:
            logger.warning("lease for %s failed, loading without storing: %r", key.redis_key, exc)
            lease = None
        loaded = await loader()
        policy = self._policies.for_namespace(key.namespace)
        ttl_ms = policy.jittered_ttl_ms(loaded.ttl_seconds)
        entry = Entry(
            body=loaded.body,
            etag=etag_for(loaded.body),
            status=loaded.status,
            fresh_until_ms=int(time.time() * 1000) + ttl_ms,
        )
        if lease is None:
            return _lookup(entry, CacheState.BYPASS)
        try:
            stored = await self._leases.store(
                lease, key.redis_key, encode(entry), ttl_ms, sorted(set(loaded.tags))
            )
        except CacheUnavailableError as exc:
            logger.warning("store of %s failed: %r", key.redis_key, exc)
            return _lookup(entry, CacheState.MISS)
        if not stored:
            self._stats.count(key.namespace, counters.STORE_REJECTED)
        return _lookup(entry, CacheState.MISS)


def _lookup(entry: Entry, state: CacheState) -> Lookup:
    fresh_ms = entry.fresh_until_ms - int(time.time() * 1000)
    return Lookup(entry.body, entry.etag, entry.status, state, max(0, fresh_ms // 1000))
