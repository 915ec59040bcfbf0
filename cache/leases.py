"""Load leases: a store is accepted only if nothing it depends on was invalidated meanwhile.

This prevents the *stale set* described by Nishtala et al., "Scaling Memcache at Facebook"
(NSDI 2013, section 3.2.1): reader R misses, reads the old row, writer W commits and
invalidates, then R stores the old row, which would then be served until its TTL ends.

Facebook's memcache hands R a lease token that a delete revokes. Here the token is the pair
(epoch, sequence) read from Redis *before* R queries the database:

* every invalidation increments ``{prefix}:seq`` and records the new value under
  ``{prefix}:ts:{tag}`` for each tag it invalidates (see :mod:`cache.invalidation`);
* R's store is a Lua script that refuses to write when any tag of R's value was invalidated
  at a sequence number greater than the one R read, or when the epoch changed (the keyspace
  was purged or Redis lost its data).

Because W's invalidation runs after W's commit and R read the sequence before its query, any
invalidation that R's query might have missed carries a larger number, and the store is
refused. The records in ``ts`` keys expire after ``horizon_seconds``; a lease older than half
of that is not used to store at all, so an expired record can never let a stale set through.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from cache.errors import translate_redis_errors
from cache.keys import KeyScheme

_BEGIN = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  redis.call('SET', KEYS[1], ARGV[1])
  epoch = ARGV[1]
end
return {epoch, redis.call('GET', KEYS[2]) or '0'}
"""

# KEYS: entry, epoch, tag set 1..n, tag sequence 1..n
# ARGV: stored bytes, ttl ms, lease epoch, lease sequence, n
_STORE = """
local n = tonumber(ARGV[5])
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
local seq = tonumber(ARGV[4])
for i = 1, n do
  local at = redis.call('GET', KEYS[2 + n + i])
  if at and tonumber(at) > seq then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local ttl = math.ceil(tonumber(ARGV[2]) / 1000)
for i = 1, n do
  local tag = KEYS[2 + i]
  redis.call('SADD', tag, KEYS[1])
  if redis.call('TTL', tag) < ttl then redis.call('EXPIRE', tag, ttl) end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to store one load's result, unless an invalidation revokes it.

    Attributes:
        epoch: the keyspace epoch when the lease was taken.
        sequence: the invalidation sequence number when the lease was taken.
        taken_at: ``time.monotonic()`` when the lease was taken, in seconds.
    """

    epoch: bytes
    sequence: int
    taken_at: float


class LeaseStore:
    """Takes leases and stores entries under them. Safe to share between tasks.

    Args:
        redis: the client; owned by the caller.
        scheme: the key scheme.
        horizon_seconds: how long invalidation records are kept, in seconds; leases older than
            half of it are refused at store time.
    """

    def __init__(self, redis: Redis, scheme: KeyScheme, *, horizon_seconds: float = 300.0) -> None:
        self._scheme = scheme
        self.horizon_seconds = horizon_seconds
        self._begin = redis.register_script(_BEGIN)
        self._store = redis.register_script(_STORE)

    async def take(self) -> Lease:
        """Take a lease; call it before reading the source of truth.

        Raises:
            CacheUnavailableError: when Redis failed.
        """
        with translate_redis_errors("take a lease"):
            epoch, seq = await self._begin(
                keys=[self._scheme.epoch, self._scheme.sequence], args=[secrets.token_hex(8)]
            )
        return Lease(bytes(epoch), int(seq), time.monotonic())

    async def store(
        self, lease: Lease, redis_key: str, stored: bytes, ttl_ms: int, tags: Sequence[str]
    ) -> bool:
        """Store ``stored`` at ``redis_key`` for ``ttl_ms`` milliseconds, filed under ``tags``.

        Returns:
            True when stored; False when the lease was revoked (an invalidation of one of
            ``tags`` or a purge came after it was taken) or is older than half the horizon.

        Raises:
            CacheUnavailableError: when Redis failed.
        """
        if time.monotonic() - lease.taken_at > self.horizon_seconds / 2:
            return False
        keys = [redis_key, self._scheme.epoch]
        keys += [self._scheme.tag_set(t) for t in tags]
        keys += [self._scheme.tag_sequence(t) for t in tags]
        with translate_redis_errors("store an entry"):
            done = await self._store(
                keys=keys, args=[stored, ttl_ms, lease.epoch, lease.sequence, len(tags)]
            )
        return bool(done)
