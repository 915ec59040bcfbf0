"""Hot-key tracking: which entries are read most, across every process that shares one Redis.

Each process samples its reads (one read in ``1 / sample_rate`` on average, with geometric
gaps so that no periodic traffic pattern is missed or over-counted) and counts the sampled
identities per namespace in memory, up to ``max_keys_per_namespace`` distinct identities per
flush. The counts go to Redis with the statistics flush (a :class:`cache.stats.FlushPart`: no
round trip of their own) into time-bucketed sorted sets, ``{prefix}:hot:{namespace}:{bucket}``
with ``bucket = floor(unix seconds / bucket_seconds)``; each bucket keeps its
``max_keys_per_namespace`` best members and expires after ``buckets`` bucket widths.

:meth:`HotKeyTracker.top` merges the live buckets at read time with ``ZUNIONSTORE`` (in one
script, on a scratch key it deletes; on a Redis Cluster every bucket shares the operational
keys' hash tag, see :class:`cache.keys.KeyScheme`) and
weights ``0.5 ** (age_in_buckets * bucket_seconds / half_life_seconds)``, so that recent traffic
weighs more (exponential decay, as in the decayed counts of Cormode et al., "Forward Decay",
ICDE 2009, kept here per time bucket).
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable

from cache.errors import translate_redis_errors
from cache.keys import CacheKey, KeyScheme
from cache.routing import AnyPipeline, RedisClient

# KEYS: the scratch key, then the buckets; ARGV: how many, then each bucket's weight.
# The weighted union of the buckets, its best members with their scores, the scratch deleted.
_TOP = """
local union = {'ZUNIONSTORE', KEYS[1], #KEYS - 1}
for i = 2, #KEYS do union[#union + 1] = KEYS[i] end
union[#union + 1] = 'WEIGHTS'
for i = 2, #ARGV do union[#union + 1] = ARGV[i] end
redis.call(unpack(union))
local top = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
redis.call('DEL', KEYS[1])
return top
"""


class HotKeyTracker:
    """Sampled, decayed, bounded counts of the identities read, by namespace.

    :meth:`touch` is on the hit path: a decrement and a comparison for an unsampled read.
    Safe to share between the tasks of one event loop. Register it with
    :meth:`cache.stats.CacheStats.add_flush_part`; if Redis fails the flush, that flush's
    samples are dropped (the counts are an estimate; nothing else depends on them).

    Args:
        redis: where the buckets live (read by :meth:`top`).
        scheme: the key scheme.
        sample_rate: the fraction of reads sampled, in (0, 1]; 0 turns tracking off.
        max_keys_per_namespace: distinct identities counted per namespace per flush, and
            members kept per bucket in Redis.
        bucket_seconds: width of a time bucket, in seconds.
        buckets: how many buckets are kept (the tracker's memory), counting the current one.
        half_life_seconds: age at which a read weighs half as much as one made now, in seconds.
    """

    def __init__(
        self,
        redis: RedisClient,
        scheme: KeyScheme,
        *,
        sample_rate: float = 0.05,
        max_keys_per_namespace: int = 1000,
        bucket_seconds: int = 60,
        buckets: int = 10,
        half_life_seconds: float = 300.0,
    ) -> None:
        if not 0 <= sample_rate <= 1:
            raise ValueError("sample_rate must be within [0, 1]")
        self._redis = redis
        self._scheme = scheme
        self.sample_rate = sample_rate
        self._max_keys = max_keys_per_namespace
        self._bucket_seconds = bucket_seconds
        self._buckets = buckets
        self._half_life = half_life_seconds
        self._counts: defaultdict[str, dict[str, int]] = defaultdict(dict)
        self._countdown = self._gap()

    def _gap(self) -> int:
        """Reads until the next sample: geometric with mean ``1 / sample_rate``."""
        rate = self.sample_rate
        if rate <= 0:
            return sys.maxsize
        if rate >= 1:
            return 1
        return 1 + int(math.log(1.0 - random.random()) / math.log(1.0 - rate))

    def touch(self, key: CacheKey) -> None:
        """Count a read of ``key`` if it is sampled (in memory; no I/O)."""
        self._countdown -= 1
        if self._countdown > 0:
            return
        self._countdown = self._gap()
        identity = key.identity
        counts = self._counts[key.namespace]
        if identity in counts:
            counts[identity] += 1
        elif len(counts) < self._max_keys:
            counts[identity] = 1

    def _bucket(self, now: float) -> int:
        return int(now // self._bucket_seconds)

    def add_to(self, pipe: AnyPipeline) -> Callable[[bool], None] | None:
        """Queue this flush's samples on ``pipe`` (see :class:`cache.stats.FlushPart`).

        Returns:
            None: samples of a failed flush are dropped (they are an estimate).
        """
        if not self._counts:
            return None
        counts, self._counts = self._counts, defaultdict(dict)
        bucket = self._bucket(time.time())
        keep_ms = self._buckets * self._bucket_seconds * 1000
        for namespace, identities in counts.items():
            key = self._scheme.hot_keys(namespace, bucket)
            for identity, n in identities.items():
                pipe.zincrby(key, n, identity)
            pipe.zremrangebyrank(key, 0, -self._max_keys - 1)
            pipe.pexpire(key, keep_ms)
        return None

    async def top(self, namespace: str, limit: int) -> list[tuple[str, float]]:
        """Return the ``limit`` hottest identities of ``namespace``, hottest first.

        Returns:
            ``[(identity, decayed score)]``, identities as in :attr:`cache.keys.CacheKey.identity`.

        Raises:
            CacheUnavailableError: Redis failed.
        """
        if limit <= 0:
            return []
        now = time.time()
        current = self._bucket(now)
        keys = [self._scheme.hot_keys(namespace, current - age) for age in range(self._buckets)]
        weights = [
            0.5 ** (age * self._bucket_seconds / self._half_life) for age in range(self._buckets)
        ]
        merged = self._scheme.hot_keys_merge(namespace)
        with translate_redis_errors("read the hot keys"):
            # One script: atomic on one Redis and on a cluster alike (redis-py's cluster
            # transactions are not usable from an event loop other than the first).
            reply = await self._redis.eval(_TOP, len(keys) + 1, merged, *keys, limit, *weights)
        members = list(zip(reply[0::2], reply[1::2], strict=True))
        return [(m.decode() if isinstance(m, bytes) else m, float(score)) for m, score in members]
