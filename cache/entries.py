"""Entries as loaders give them, and as they are written to Redis under a lease.

:class:`Loaded` is what a loader returns; :class:`EntryWriter` turns it into a stored
:class:`cache.codec.Entry` (TTL with jitter, stale periods, a scheduled expiry, the compressed
representations) and writes it under the load's lease, for the read path and the warming path
alike.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from cache import counters
from cache.codec import Entry, decode, encode, etag_for
from cache.compression import Compression
from cache.errors import CacheUnavailableError, CodecError
from cache.keys import CacheKey
from cache.leases import Lease, LeaseStore
from cache.policy import PolicyTable
from cache.stats import CacheStats

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a loader returns.

    Attributes:
        body: the answer's bytes, serialized once, as they will be sent.
        tags: the tags to file the entry under: everything whose change makes it wrong.
        status: the answer's status (200; a loader may cache an absence as 404).
        ttl_seconds: a fresh lifetime shorter than the policy's, in seconds (for instance for a
            cached absence); None for the policy's TTL.
        expires_at: the moment the value may become wrong with no write (a scheduled change),
            in seconds since the epoch; the entry is neither fresh nor served stale past it.
            None when no such moment is known.
    """

    body: bytes
    tags: Iterable[str] = ()
    status: int = 200
    ttl_seconds: float | None = None
    expires_at: float | None = None


Loader = Callable[[], Awaitable[Loaded]]

#: Loads many keys at once: returns the Loaded of each key it found; keys it leaves out are
#: not stored (a warming source may name entries that no longer exist).
BatchLoader = Callable[[Sequence[CacheKey]], Awaitable[Mapping[CacheKey, Loaded]]]


def wall_clock_ms() -> int:
    """Return the wall clock in milliseconds since the epoch (entries' times are such)."""
    return int(time.time() * 1000)


def fresh_entry(raw: bytes | None) -> Entry | None:
    """Return the entry stored as ``raw`` if it is still fresh; None if not, or undecodable."""
    if raw is None:
        return None
    try:
        entry = decode(raw)
    except CodecError:
        return None
    return entry if entry.fresh_until_ms > wall_clock_ms() else None


class EntryWriter:
    """Writes loaded values as entries under their leases. Safe to share between tasks.

    Args:
        policies: the TTL, jitter and stale periods of each namespace.
        compression: the content codings stored besides identity.
        stats: where refused stores are counted (``store_rejected``).
    """

    def __init__(self, policies: PolicyTable, compression: Compression, stats: CacheStats) -> None:
        self._policies = policies
        self._compression = compression
        self._stats = stats

    async def write(
        self, leases: LeaseStore, lease: Lease, key: CacheKey, loaded: Loaded, load_ms: float
    ) -> tuple[Entry, bool | None, float]:
        """Store ``loaded`` at ``key`` under ``lease``; return the entry, outcome and vouch time.

        The outcome is True when stored, False when the lease was revoked (an invalidation
        raced the load: counted as ``store_rejected``), None when nothing was stored (Redis
        failed, or the entry would already be expired). The vouch time is
        ``time.monotonic()`` just before an accepted store was sent, else -inf.

        Args:
            leases: the lease store ``lease`` came from.
            lease: the load's lease.
            key: the entry's key.
            loaded: what the loader returned.
            load_ms: how long the load took, in milliseconds (kept in the entry for the early
                refresh).
        """
        policy = self._policies.for_namespace(key.namespace)
        now_ms = wall_clock_ms()
        fresh_ms = policy.jittered_ttl_ms(loaded.ttl_seconds)
        keep_ms = fresh_ms + policy.stale_ms
        if loaded.expires_at is not None:
            limit_ms = int(loaded.expires_at * 1000) - now_ms
            fresh_ms, keep_ms = min(fresh_ms, limit_ms), min(keep_ms, limit_ms)
        etag = etag_for(loaded.body)
        entry = Entry(
            body=loaded.body,
            etag=etag,
            status=loaded.status,
            fresh_until_ms=now_ms + max(fresh_ms, 0),
            load_ms=int(load_ms),
            encoded=self._compression.representations(loaded.body, etag) if keep_ms > 0 else (),
        )
        if keep_ms <= 0:
            with contextlib.suppress(CacheUnavailableError):
                await leases.release(lease, key.redis_key)
            return entry, None, -math.inf
        sent_at = time.monotonic()
        try:
            stored = await leases.store(
                lease, key.redis_key, encode(entry), keep_ms, sorted(set(loaded.tags))
            )
        except CacheUnavailableError as exc:
            logger.warning("store of %s failed: %r", key.redis_key, exc)
            return entry, None, -math.inf
        if not stored:
            self._stats.count(key.namespace, counters.STORE_REJECTED)
            return entry, False, -math.inf
        return entry, True, sent_at
