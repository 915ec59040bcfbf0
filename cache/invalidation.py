"""Invalidation by tag, and purges by namespace.

An entry is filed under tags when it is stored (a tag set ``{prefix}:t:{tag}`` holds the keys of
the entries stored under it). Invalidating a tag deletes every entry in its set, the set itself,
and records the new invalidation sequence number under ``{prefix}:ts:{tag}``, which revokes the
leases of loads still under way (see :mod:`cache.leases`). All of it runs in one Lua script, so
no reader can see half an invalidation.

With a Redis Cluster (a :class:`cache.keys.KeyScheme` with slot groups) each slot group has
its own sequence, tag sets and tag records, under its hash tag: an invalidation runs the
script once per group, one ``EVAL`` per group, sent to each master in one pipelined write
(the masters at once), so it costs one round trip per master and touches ``2 * tags + 1``
keys per group. Each master's batch ends with ``WAIT 1`` when its slots have a replica: a
failover promotes a replica, and an invalidation that only the old master saw would be lost
with it (Redis replicates asynchronously), so an invalidation that no replica acknowledged
within ``replica_ack_timeout_ms`` counts as failed (its caller keeps it in the outbox and
trips the breaker). Groups are invalidated one after another, not atomically together; the
write is acknowledged only after all of them.

Purges ``SCAN`` every master (redis-py's cluster ``scan_iter``) and unlink the keys found one
slot at a time.

With a bus (:mod:`cache.bus`), the same script publishes the keys it deleted to the processes'
near caches and reads their live holders, and the invalidation returns once each acknowledged
or its lease lapsed (with a cluster: once every group ran, in one more round trip to the bus's
node). The deleted keys stay listed in a tombstone set per tag (``{prefix}:tg:{tag}``) for the
bus's ``tombstone_ms``, and every invalidation of the tag names them again: an invalidation
that finds a tag set emptied by one just before it must not return before the near caches
dropped what that one deleted, whose message may still be on its way. An invalidation whose
tag sets and tombstones were all empty publishes nothing and waits for no one: a near cache
holds an entry only while its key is in the tag sets of its tags, or for at most the
tombstones' life after it left them (see docs/near-cache.md).

Tag sets expire with the longest-lived entry filed under them; members whose entry was already
deleted through another tag are harmless and go with the set.

An invalidation may name the source position of the change it is for (a PostgreSQL WAL
position): the same script then raises the invalidation watermark to it before it increments
the sequence, so that every lease that sees the new sequence number sees the position too (see
:mod:`cache.watermarks`).
"""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio.cluster import RedisCluster

from cache.bus import LIVE_HOLDERS, NOW_MS, InvalidationBus, Message
from cache.errors import CacheUnavailableError, translate_redis_errors
from cache.keys import KeyScheme
from cache.routing import RedisClient, primary_of, replica_count
from cache.watermarks import encode_position

# Raises the watermark at KEYS[1] to ARGV[1] (a position of POSITION_DIGITS digits: compared
# as strings) unless it is ''.
_RAISE_WATERMARK = """
if ARGV[1] ~= '' then
  local at = redis.call('GET', KEYS[1])
  if not at or ARGV[1] > at then redis.call('SET', KEYS[1], ARGV[1]) end
end
"""

# KEYS: watermark, sequence, then pairs (tag set, tag sequence); ARGV: position or '', horizon ms
_INVALIDATE = (
    _RAISE_WATERMARK
    + """
local seq = redis.call('INCR', KEYS[2])
local deleted = 0
for i = 3, #KEYS, 2 do
  local members = redis.call('SMEMBERS', KEYS[i])
  for j = 1, #members, 1000 do
    deleted = deleted + redis.call('UNLINK', unpack(members, j, math.min(j + 999, #members)))
  end
  redis.call('DEL', KEYS[i])
  redis.call('SET', KEYS[i + 1], seq, 'PX', ARGV[2])
end
return deleted
"""
)

# With near caches: the same, with tombstones per tag (KEYS in triples: tag set, tag
# sequence, tombstones; ARGV[3]: tombstone ms). The tombstones are a sorted set of the keys the
# tag's invalidations deleted, scored by when (Redis's clock, ms); each key stays that long
# after its last deletion, and is listed with the tag set's: an invalidation also names what
# the ones just before it deleted, whose messages may still be on their way (see
# docs/near-cache.md).
_DELETE_LISTING = (
    NOW_MS
    + """
local seq = redis.call('INCR', KEYS[2])
local keep = tonumber(ARGV[3])
local listed = {0}
for i = 3, LAST, 3 do
  local members = redis.call('SMEMBERS', KEYS[i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i + 2], '-inf', now - keep)
  for j = 1, #members, 1000 do
    local batch = {unpack(members, j, math.min(j + 999, #members))}
    listed[1] = listed[1] + redis.call('UNLINK', unpack(batch))
    local scored = {}
    for _, key in ipairs(batch) do
      scored[#scored + 1] = now
      scored[#scored + 1] = key
    end
    redis.call('ZADD', KEYS[i + 2], unpack(scored))
  end
  for _, key in ipairs(redis.call('ZRANGE', KEYS[i + 2], 0, -1)) do listed[#listed + 1] = key end
  if #members > 0 then redis.call('PEXPIRE', KEYS[i + 2], keep) end
  redis.call('DEL', KEYS[i])
  redis.call('SET', KEYS[i + 1], seq, 'PX', ARGV[2])
end
"""
)

# A cluster's group (the keys are published after every group ran). Returns {deleted, key, ...}.
_INVALIDATE_LISTING = (
    _RAISE_WATERMARK
    + _DELETE_LISTING.replace("LAST", "#KEYS")
    + """
return listed
"""
)

# The same, then publishing the entry keys to the near caches and reading their live holders
# (one server). KEYS: as _INVALIDATE_LISTING, then the holders; ARGV: position or '', horizon ms,
# tombstone ms, channel, message header. Returns {deleted} when no tag set nor tombstone set
# had a member, else
# {deleted, now ms, holder, lease end, ...}.
_INVALIDATE_ANNOUNCING = (
    _RAISE_WATERMARK
    + _DELETE_LISTING.replace("LAST", "#KEYS - 1")
    + """
if #listed == 1 then return listed end
local deleted = table.remove(listed, 1)
redis.call('PUBLISH', ARGV[4], ARGV[5] .. table.concat(listed, '\\n'))
"""
    + LIVE_HOLDERS.replace("HOLDERS", "#KEYS")
    + """
table.insert(live, 1, now)
table.insert(live, 1, deleted)
return live
"""
)

# KEYS: watermark, epoch; ARGV: position or ''
_REVOKE = (
    _RAISE_WATERMARK
    + """
redis.call('DEL', KEYS[2])
"""
)


class Invalidator:
    """Deletes what invalidations make wrong. Safe to share between tasks.

    Args:
        redis: the client (of one server or of a cluster); owned by the caller.
        scheme: the key scheme.
        horizon_seconds: how long an invalidation record (``ts`` key) is kept, in seconds; must
            be the :class:`cache.leases.LeaseStore`'s horizon.
        replica_ack_timeout_ms: with a cluster, how long each master waits for a replica to
            acknowledge an invalidation (``WAIT``), in milliseconds.
        bus: the near caches' bus: the entry keys an invalidation deletes (and purges) are
            published to the near caches, and the invalidation returns once every live holder
            acknowledged them or its lease lapsed (see :mod:`cache.bus`); None when no process
            of the deployment has a near cache.
    """

    def __init__(
        self,
        redis: RedisClient,
        scheme: KeyScheme,
        *,
        horizon_seconds: float = 300.0,
        replica_ack_timeout_ms: int = 500,
        bus: InvalidationBus | None = None,
    ) -> None:
        self._redis = redis
        self._scheme = scheme
        self._horizon_ms = int(horizon_seconds * 1000)
        self._ack_timeout_ms = replica_ack_timeout_ms
        self._invalidate = redis.register_script(_INVALIDATE)
        self._revoke = redis.register_script(_REVOKE)
        self._announcing = redis.register_script(_INVALIDATE_ANNOUNCING)
        self._bus = bus

    async def invalidate_tags(self, tags: Iterable[str], *, position: int | None = None) -> int:
        """Delete every entry filed under any of ``tags`` and revoke the leases that depend on them.

        Args:
            tags: tag names; duplicates are ignored, an empty iterable does nothing.
            position: the source position of the change (see :mod:`cache.watermarks`): the
                watermark is raised to it in the same script; None records none.

        Returns:
            The number of entries deleted.

        With a bus, it returns once every live holder of a near cache acknowledged dropping the
        keys it deleted, or that holder's lease lapsed: at most the bus's lease later.

        Raises:
            CacheUnavailableError: when Redis failed (with a cluster: or a master's replica did
                not acknowledge it in time); nothing can be said of what was deleted.
        """
        unique = sorted(set(tags))
        if not unique:
            return 0
        if isinstance(self._redis, RedisCluster):
            return await self._invalidate_groups(self._redis, unique, position)
        args: list[str | int] = [_position_arg(position), self._horizon_ms]
        bus = self._bus
        if bus is None:
            with translate_redis_errors("invalidate tags"):
                return int(await self._invalidate(keys=self._keys(unique, ""), args=args))
        deleted = 0

        async def publish(message: Message) -> list[bytes | str | int]:
            nonlocal deleted
            with translate_redis_errors("invalidate tags"):
                reply = await self._announcing(
                    keys=[*self._keys(unique, ""), bus.holders_key],
                    args=[*args, bus.tombstone_ms, bus.channel, message.header],
                )
            deleted = int(reply[0])
            return list(reply[1:])

        await bus.deliver("k", publish)
        return deleted

    def _keys(self, tags: list[str], group: str) -> list[str]:
        keys = [self._scheme.watermark(group), self._scheme.sequence(group)]
        scheme = self._scheme
        for tag in tags:
            keys += [scheme.tag_set(tag, group), scheme.tag_sequence(tag, group)]
            if self._bus is not None:
                keys.append(scheme.tag_tombstones(tag, group))
        return keys

    async def _invalidate_groups(
        self, cluster: RedisCluster, tags: list[str], position: int | None
    ) -> int:
        groups = self._scheme.groups
        # The masters whose slots have replicas: each one's batch ends with a WAIT.
        waits = {}
        for group in groups:
            if replica_count(cluster, group):
                node = primary_of(cluster, group)
                waits[node.name] = node
        at = _position_arg(position)
        with translate_redis_errors("invalidate tags"):
            async with cluster.pipeline(transaction=False) as pipe:
                for group in groups:
                    keys = self._keys(tags, group)
                    # EVAL, not EVALSHA: a pipeline cannot retry a NOSCRIPT reply.
                    if self._bus is None:
                        pipe.eval(_INVALIDATE, len(keys), *keys, at, self._horizon_ms)
                    else:
                        pipe.eval(
                            _INVALIDATE_LISTING,
                            len(keys),
                            *keys,
                            at,
                            self._horizon_ms,
                            self._bus.tombstone_ms,
                        )
                for node in waits.values():
                    pipe.execute_command("WAIT", 1, self._ack_timeout_ms, target_nodes=node)
                replies = await pipe.execute(raise_on_error=False)
        failed = [r for r in replies if isinstance(r, Exception)]
        if failed:
            raise CacheUnavailableError(f"Redis failed to invalidate tags: {failed[0]!r}")
        acks = replies[len(groups) :]
        if any(int(n) < 1 for n in acks):
            raise CacheUnavailableError(
                f"no replica acknowledged an invalidation within {self._ack_timeout_ms} ms"
            )
        listed = replies[: len(groups)]
        if self._bus is None:
            return sum(int(n) for n in listed)
        keys = [k.decode() if isinstance(k, bytes) else k for r in listed for k in r[1:]]
        if keys:
            # After every group ran: a holder that drops the keys cannot read them back.
            await self._bus.announce("k", "\n".join(keys))
        return sum(int(r[0]) for r in listed)

    async def revoke_leases(self, *, position: int | None = None) -> None:
        """Revoke every lease taken so far (a new epoch), so that no load under way stores.

        For changes no set of tags covers (a bulk load, a truncation), together with purges of
        the namespaces they touch.

        Args:
            position: the source position of the change: the watermark is raised to it first,
                in the same script; None records none.

        Raises:
            CacheUnavailableError: when Redis failed.
        """
        at = _position_arg(position)
        with translate_redis_errors("revoke leases"):
            if isinstance(self._redis, RedisCluster):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for group in self._scheme.groups:
                        keys = [self._scheme.watermark(group), self._scheme.epoch(group)]
                        pipe.eval(_REVOKE, len(keys), *keys, at)
                    await pipe.execute()
            else:
                keys = [self._scheme.watermark(), self._scheme.epoch()]
                await self._revoke(keys=keys, args=[at])

    async def seed_watermark(self, position: int) -> bool:
        """Record ``position`` as every slot group's missing watermark; return whether any was.

        For when Redis lost the watermark (a restart, an eviction, a failover): until one is
        recorded, loads must read the source itself. ``position`` must be at or past every
        change invalidated so far (the source's current position is).

        Raises:
            CacheUnavailableError: when Redis failed.
        """
        value = encode_position(position)
        done = False
        with translate_redis_errors("seed the watermark"):
            for group in self._scheme.groups:
                set_now = await self._redis.set(self._scheme.watermark(group), value, nx=True)
                done = done or bool(set_now)
        return done

    async def purge(self, namespace: str | None = None) -> int:
        """Delete every entry of ``namespace``, or every key of the scheme when it is None.

        Purging everything keeps the keys of :meth:`cache.keys.KeyScheme.kept_by_purge`.

        Purging everything also resets the statistics and changes the epoch, which revokes
        every lease taken before.

        Returns:
            The number of entries deleted (tag sets and other bookkeeping keys not counted).

        Raises:
            CacheUnavailableError: when Redis failed part way; some keys may be gone.
        """
        pattern = (
            self._scheme.entry_pattern(namespace)
            if namespace
            else self._scheme.everything_pattern()
        )
        kept = self._scheme.kept_by_purge()
        purged = 0
        with translate_redis_errors("purge"):
            batch: list[bytes] = []
            async for key in self._redis.scan_iter(match=pattern, count=1000):
                if key.startswith(kept):
                    continue
                batch.append(key)
                if len(batch) >= 1000:
                    purged += await self._unlink(batch, namespace)
                    batch = []
            if batch:
                purged += await self._unlink(batch, namespace)
        if self._bus is not None:
            await self._bus.announce("n" if namespace else "a", namespace or "")
        return purged

    async def _unlink(self, keys: list[bytes], namespace: str | None) -> int:
        # A cluster client splits the UNLINK by slot.
        await self._redis.unlink(*keys)
        return sum(1 for k in keys if self._scheme.is_entry(k, namespace))


def _position_arg(position: int | None) -> str:
    return "" if position is None else encode_position(position)
