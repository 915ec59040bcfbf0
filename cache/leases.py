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

In the Redis Cluster layout (:class:`cache.keys.KeyScheme` with slot groups) the epoch, the
sequence, the tag sets and the tag records are kept per slot group, under the entry's hash tag,
so that both scripts touch one slot; an invalidation records itself in every group.

Because W's invalidation runs after W's commit and R read the sequence before its query, any
invalidation that R's query might have missed carries a larger number, and the store is
refused. The records in ``ts`` keys expire after ``horizon_seconds``; a lease older than half
of that is not used to store at all, so an expired record can never let a stale set through.

The lease also holds the *invalidation watermark* (see :mod:`cache.watermarks`), read in the same
script as the sequence: an invalidation records its change's source position and increments the
sequence in one script, so a lease that R took after W's invalidation holds a watermark at or past
W's position, and R's loader, reading a lagging copy of the source (a replica), reads one that has
applied W. The loader runs with the watermark as :func:`cache.watermarks.required_position`.

The same round trip also takes the entry's *load lease*, the other half of Facebook's lease:
``SET {prefix}:l:{entry} token NX PX ttl``. Only its holder loads; other processes that miss the
same key wait for its value instead of querying the database too (the thundering herd). The
load lease expires by itself, so a holder that dies only delays the others by its TTL, and the
store script releases it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cache.autopipeline import AutoPipeline
from cache.errors import translate_redis_errors
from cache.keys import KeyScheme
from cache.routing import RedisClient
from cache.watermarks import decode_position

# KEYS: epoch, sequence, entry, load lease, watermark
# ARGV: new epoch, lease token, load lease ttl ms (0: take none), "1" to return the entry
_BEGIN = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  redis.call('SET', KEYS[1], ARGV[1])
  epoch = ARGV[1]
end
local seq = redis.call('GET', KEYS[2]) or '0'
local won = 0
if tonumber(ARGV[3]) > 0 and redis.call('SET', KEYS[4], ARGV[2], 'NX', 'PX', ARGV[3]) then
  won = 1
end
local value = false
if ARGV[4] == '1' then value = redis.call('GET', KEYS[3]) end
return {epoch, seq, won, value, redis.call('GET', KEYS[5])}
"""

# KEYS: entry, epoch, load lease, tag set 1..n, tag sequence 1..n
# ARGV: stored bytes, ttl ms, lease epoch, lease sequence, n, lease token
_STORE = """
if redis.call('GET', KEYS[3]) == ARGV[6] then redis.call('DEL', KEYS[3]) end
local n = tonumber(ARGV[5])
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
local seq = tonumber(ARGV[4])
for i = 1, n do
  local at = redis.call('GET', KEYS[3 + n + i])
  if at and tonumber(at) > seq then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local ttl = math.ceil(tonumber(ARGV[2]) / 1000)
for i = 1, n do
  local tag = KEYS[3 + i]
  redis.call('SADD', tag, KEYS[1])
  if redis.call('TTL', tag) < ttl then redis.call('EXPIRE', tag, ttl) end
end
return 1
"""

# KEYS: load lease; ARGV: token
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to store one load's result, unless an invalidation revokes it.

    Attributes:
        epoch: the keyspace epoch when the lease was taken.
        sequence: the invalidation sequence number when the lease was taken.
        taken_at: ``time.monotonic()`` when the lease was taken, in seconds.
        token: the random token of the lease.
        loads: True when this lease also holds the entry's load lease (it alone should load).
        watermark: the invalidation watermark when the lease was taken (a source position,
            see :mod:`cache.watermarks`); None when none was recorded.
    """

    epoch: bytes
    sequence: int
    taken_at: float
    token: str = ""
    loads: bool = False
    watermark: int | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """What :meth:`LeaseStore.take` found: a lease, or the entry another process stored.

    Attributes:
        lease: the lease (``lease.loads`` says whether the load lease was won).
        value: the stored entry when it was asked for and present.
    """

    lease: Lease
    value: bytes | None = None


class LeaseStore:
    """Takes leases and stores entries under them. Safe to share between tasks.

    Args:
        redis: the client; owned by the caller.
        scheme: the key scheme.
        horizon_seconds: how long invalidation records are kept, in seconds; leases older than
            half of it are refused at store time.
        pipeline: the auto-pipeline that takes leases and stores entries (and carries the
            cache's reads: :class:`cache.readthrough.ReadThroughCache` uses it), owned by the
            caller; None for one of the store's own. A pipeline holds no connection between
            batches; its ``aclose`` only waits for the batches under way.
    """

    def __init__(
        self,
        redis: RedisClient,
        scheme: KeyScheme,
        *,
        horizon_seconds: float = 300.0,
        pipeline: AutoPipeline | None = None,
    ) -> None:
        self._scheme = scheme
        self.horizon_seconds = horizon_seconds
        self.pipeline = pipeline or AutoPipeline(redis)
        self._begin = redis.register_script(_BEGIN)
        self._store = redis.register_script(_STORE)
        self._release = redis.register_script(_RELEASE)

    async def take(
        self, redis_key: str, *, load_lease_ms: int = 0, return_value: bool = False
    ) -> Grant:
        """Take a lease; call it before reading the source of truth. One round trip.

        The lease holds the invalidation watermark of that moment (see :mod:`cache.watermarks`).

        Args:
            redis_key: the entry the load is for.
            load_lease_ms: when > 0, also try to take the entry's load lease for that many
                milliseconds.
            return_value: when True, also return the entry when present (another process may
                have stored it meanwhile; it may be stale).

        Raises:
            CacheUnavailableError: when Redis failed.
        """
        token = secrets.token_hex(8)
        group = self._scheme.group_of(redis_key)
        keys = [
            self._scheme.epoch(group),
            self._scheme.sequence(group),
            redis_key,
            self._scheme.load_lease(redis_key),
            self._scheme.watermark(group),
        ]
        with translate_redis_errors("take a lease"):
            epoch, seq, won, value, watermark = await self.pipeline.run_script(
                self._begin, keys, [token, token, load_lease_ms, int(return_value)]
            )
        lease = Lease(
            bytes(epoch),
            int(seq),
            time.monotonic(),
            token,
            bool(won),
            decode_position(watermark),
        )
        return Grant(lease, bytes(value) if value is not None else None)

    async def store(
        self, lease: Lease, redis_key: str, stored: bytes, ttl_ms: int, tags: Sequence[str]
    ) -> bool:
        """Store ``stored`` at ``redis_key`` for ``ttl_ms`` milliseconds, filed under ``tags``.

        Releases the entry's load lease when ``lease`` holds it, stored or not.

        Returns:
            True when stored; False when the lease was revoked (an invalidation of one of
            ``tags`` or a purge came after it was taken) or is older than half the horizon.

        Raises:
            CacheUnavailableError: when Redis failed.
        """
        if time.monotonic() - lease.taken_at > self.horizon_seconds / 2:
            await self.release(lease, redis_key)
            return False
        group = self._scheme.group_of(redis_key)
        keys = [redis_key, self._scheme.epoch(group), self._scheme.load_lease(redis_key)]
        keys += [self._scheme.tag_set(t, group) for t in tags]
        keys += [self._scheme.tag_sequence(t, group) for t in tags]
        with translate_redis_errors("store an entry"):
            done = await self.pipeline.run_script(
                self._store,
                keys,
                [stored, ttl_ms, lease.epoch, lease.sequence, len(tags), lease.token],
            )
        return bool(done)

    async def release(self, lease: Lease, redis_key: str) -> None:
        """Release the load lease of ``redis_key`` if ``lease`` holds it (after a failed load).

        Raises:
            CacheUnavailableError: when Redis failed (the load lease then expires by itself).
        """
        if not lease.loads:
            return
        with translate_redis_errors("release a load lease"):
            await self.pipeline.run_script(
                self._release, [self._scheme.load_lease(redis_key)], [lease.token]
            )
