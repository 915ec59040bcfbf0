"""The key scheme: every Redis key the library reads or writes is built here, and only here.

Layout, for a scheme whose prefix is ``cs``:

==========================  ================================================================
``cs:e:{namespace}:{id}``   a cached entry (see :mod:`cache.codec`)
``cs:t:{tag}``              a tag set: the entry keys stored under that tag
``cs:tg:{tag}``             the entry keys the tag's recent invalidations deleted, scored by
                            when: kept a short while for the near caches (see
                            :mod:`cache.invalidation`)
``cs:ts:{tag}``             the invalidation sequence number at which the tag was last
                            invalidated (kept for a bounded time, see :mod:`cache.invalidation`)
``cs:seq``                  the invalidation sequence: incremented by every invalidation
``cs:epoch``                a random token, new whenever the keyspace was emptied
``cs:source:watermark``     the highest source position an invalidation recorded (see
                            :mod:`cache.watermarks`); kept by purges
``cs:stats``                a hash of counters, ``{namespace}:{counter}`` to an integer
``cs:hot:{namespace}:{n}``  sampled read counts of time bucket ``n`` (see :mod:`cache.hotkeys`)
``cs:warm:lock``            the id of the running warming job, with its runner's lease as TTL
``cs:warm:job:{id}``        a warming job's state, a hash (see :mod:`cache.warming`)
``cs:warm:last``            the id of the newest warming job that ended
``cs:rates:{width}s``       rate buckets of ``width`` seconds, ``{start}:{state}`` to an
                            integer (see :mod:`cache.rates`)
``cs:members:{group}``      the live members of a group, member name to a JSON report
                            (see :mod:`cache.members`)
``cs:l1:holders``           the near-cache holders' leases, holder to the lease's end in ms;
                            channels ``cs:l1:bus`` and ``cs:l1:holder:{holder}`` (see
                            :mod:`cache.bus`)
``cs:limits:{...}``         rate-limit counters, named by the rate limiter that is given
                            :meth:`KeyScheme.rate_limits` as its prefix
==========================  ================================================================

With ``slot_groups`` set (Redis Cluster), the keys a script uses together share a *hash tag*
(the part of a key between the first ``{`` and ``}``, which alone decides its slot): each
entry falls into one of ``slot_groups`` groups, by a hash of its namespace and identity, and
its load lease, and the invalidation sequence, epoch, tag sets and tag records it is checked
against, are kept per group under the group's tag. A tag's records therefore exist once per
group, and invalidating it touches every group (see :mod:`cache.invalidation`). The group tags
are chosen so that their slots are spread evenly over the 16384 slots (so over the masters of
a cluster whose slots were split into ranges). The operational keys (statistics, rates, hot
keys, warming jobs, members) share one tag, ``{<prefix>:ops}``, so that their scripts and
pipelines stay in one slot: they are few and written about once a second. See
``docs/cluster.md``.

=========================  ==========================================================
cluster layout (``{G}``:   a group's tag, ``{O}``: ``{cs:ops}``)
``cs:e:{G}:{ns}:{id}``     an entry; ``cs:l:{G}:{ns}:{id}`` its load lease
``cs:t:{G}:{tag}``         the tag set of the group's entries filed under ``tag``
``cs:ts:{G}:{tag}``        the group's record of ``tag``'s last invalidation
``cs:seq:{G}``             the group's invalidation sequence
``cs:epoch:{G}``           the group's epoch token
``cs:stats:{O}``, ...      the operational keys: ``cs:{kind}:{O}:{rest}``
=========================  ==========================================================

Identities are built from the caller's parts or query parameters in a canonical order, so that
two requests meaning the same thing share one entry. An identity longer than
:data:`MAX_IDENTITY_LENGTH` characters is replaced by its BLAKE2b digest.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

#: Identities longer than this many characters are hashed.
MAX_IDENTITY_LENGTH = 160

#: The number of hash slots of a Redis Cluster.
CLUSTER_SLOTS = 16384

#: The most slot groups a scheme may have.
MAX_SLOT_GROUPS = 1024

_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def key_slot(key: str | bytes) -> int:
    """Return the Redis Cluster hash slot of ``key`` (CRC16 of its hash tag, mod 16384)."""
    raw = key.encode() if isinstance(key, str) else key
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return binascii.crc_hqx(raw, 0) % CLUSTER_SLOTS


def _group_tags(prefix: str, groups: int) -> tuple[str, ...]:
    """Return ``groups`` hash tags whose slots fall one in each of ``groups`` equal slot ranges.

    Deterministic: every process of a deployment computes the same tags.
    """
    tags = []
    width = CLUSTER_SLOTS / groups
    for group in range(groups):
        low, high = int(group * width), int((group + 1) * width)
        salt = 0
        while not low <= key_slot(f"{{{prefix}:{group}.{salt}}}") < high:
            salt += 1
        tags.append(f"{{{prefix}:{group}.{salt}}}")
    return tuple(tags)


def _encode(part: str) -> str:
    # Most parts (slugs, usernames) need no escaping; the check is cheaper than quote().
    return part if _UNRESERVED.fullmatch(part) else quote(part, safe="-_.~")


@dataclass(frozen=True, slots=True)
class CacheKey:
    """One entry's key.

    Attributes:
        namespace: the namespace it belongs to (the unit of statistics, policy and purge).
        redis_key: the full Redis key of the entry.
        identity: the entry's identity within its namespace (the key's last part).
    """

    namespace: str
    redis_key: str
    identity: str


@dataclass(frozen=True, slots=True)
class KeyScheme:
    """All the keys of one cache, under one prefix.

    Attributes:
        prefix: the first segment of every key; one prefix per deployment (or per test run)
            keeps caches that share a Redis apart. Must not contain ``*``, ``?``, ``[``,
            ``{``, ``}`` or spaces.
        slot_groups: 0 for one Redis (no hash tags: the standalone layout); for a Redis
            Cluster, the number of slot groups entries are spread over (1 to
            :data:`MAX_SLOT_GROUPS`): more spreads them more evenly over the masters, and
            makes each tag invalidation touch more groups.
    """

    prefix: str
    slot_groups: int = 0
    groups: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in "*?[]{} "):
            raise ValueError(f"invalid key prefix {self.prefix!r}")
        if not 0 <= self.slot_groups <= MAX_SLOT_GROUPS:
            raise ValueError(f"slot_groups must be within [0, {MAX_SLOT_GROUPS}]")
        groups = _group_tags(self.prefix, self.slot_groups) if self.slot_groups else ("",)
        object.__setattr__(self, "groups", groups)

    @property
    def is_clustered(self) -> bool:
        """Whether the keys carry hash tags (the Redis Cluster layout)."""
        return self.slot_groups > 0

    def group_for(self, namespace: str, identity: str) -> str:
        """Return the slot group (its hash tag; "" in the standalone layout) of an entry."""
        if not self.slot_groups:
            return ""
        digest = zlib.crc32(f"{namespace}:{identity}".encode())
        return self.groups[digest % self.slot_groups]

    def group_of(self, redis_key: str) -> str:
        """Return the slot group (its hash tag; "" in the standalone layout) of an entry key."""
        if not self.slot_groups:
            return ""
        start = redis_key.find("{")
        return redis_key[start : redis_key.find("}", start) + 1]

    def _ops(self, kind: str, rest: str = "") -> str:
        """Return an operational key: ``{prefix}:{kind}[:{rest}]``, tagged in the cluster layout."""
        head = (
            f"{self.prefix}:{kind}:{{{self.prefix}:ops}}"
            if self.slot_groups
            else (f"{self.prefix}:{kind}")
        )
        return f"{head}:{rest}" if rest else head

    def namespace(self, name: str) -> Namespace:
        """Return the namespace ``name`` of this scheme (letters, digits, ``-`` and ``_``)."""
        return Namespace(self, name)

    def entry(self, namespace: str, identity: str) -> str:
        """Return the Redis key of the entry ``identity`` in ``namespace``."""
        group = self.group_for(namespace, identity)
        if group:
            return f"{self.prefix}:e:{group}:{namespace}:{identity}"
        return f"{self.prefix}:e:{namespace}:{identity}"

    def entry_pattern(self, namespace: str | None = None) -> str:
        """Return a SCAN pattern matching the entries of one namespace, or of all of them."""
        if not namespace:
            return f"{self.prefix}:e:*"
        if self.slot_groups:
            return f"{self.prefix}:e:{{*}}:{namespace}:*"
        return f"{self.prefix}:e:{namespace}:*"

    def is_entry(self, redis_key: bytes, namespace: str | None = None) -> bool:
        """Return whether ``redis_key`` is an entry key (of ``namespace``, when given)."""
        if not redis_key.startswith(f"{self.prefix}:e:".encode()):
            return False
        if namespace is None:
            return True
        marker = f":{namespace}:".encode()
        if self.slot_groups:
            return redis_key.find(marker, redis_key.find(b"}")) == redis_key.find(b"}") + 1
        return redis_key.startswith(f"{self.prefix}:e:{namespace}:".encode())

    def everything_pattern(self) -> str:
        """Return a SCAN pattern matching every key of this scheme."""
        return f"{self.prefix}:*"

    def kept_by_purge(self) -> tuple[bytes, ...]:
        """Return the key prefixes that purging everything keeps.

        Hot-key counts (what a warming job after a purge works from), warming jobs (a running
        job keeps its lock and state), request rates, the live members' reports, rate-limit
        counters, the invalidation watermark (still a bound on every change invalidated so
        far) and the near caches' leases: none of them is cached content.
        """
        return tuple(
            f"{self.prefix}:{kind}:".encode()
            for kind in ("hot", "warm", "rates", "members", "limits", "source", "l1")
        )

    def load_lease(self, redis_key: str) -> str:
        """Return the key of the load lease of the entry at ``redis_key`` (an entry key)."""
        return f"{self.prefix}:l:{redis_key[len(self.prefix) + 3 :]}"

    def tag_set(self, tag: str, group: str = "") -> str:
        """Return the key of the set of entry keys stored under ``tag`` (in slot ``group``)."""
        return f"{self.prefix}:t:{group}:{tag}" if group else f"{self.prefix}:t:{tag}"

    def tag_sequence(self, tag: str, group: str = "") -> str:
        """Return the key holding the sequence number at which ``tag`` was last invalidated."""
        return f"{self.prefix}:ts:{group}:{tag}" if group else f"{self.prefix}:ts:{tag}"

    def tag_tombstones(self, tag: str, group: str = "") -> str:
        """Return the key of the set of entry keys ``tag``'s recent invalidations deleted."""
        return f"{self.prefix}:tg:{group}:{tag}" if group else f"{self.prefix}:tg:{tag}"

    def sequence(self, group: str = "") -> str:
        """Return the key of the invalidation sequence counter (of slot ``group``)."""
        return f"{self.prefix}:seq:{group}" if group else f"{self.prefix}:seq"

    def epoch(self, group: str = "") -> str:
        """Return the key of the keyspace epoch token (of slot ``group``)."""
        return f"{self.prefix}:epoch:{group}" if group else f"{self.prefix}:epoch"

    def watermark(self, group: str = "") -> str:
        """Return the key of the invalidation watermark of slot ``group``.

        See :mod:`cache.watermarks`; each group's is raised by the invalidations it runs.
        """
        return (
            f"{self.prefix}:source:watermark:{group}"
            if group
            else f"{self.prefix}:source:watermark"
        )

    @property
    def stats(self) -> str:
        """The key of the statistics hash."""
        return self._ops("stats")

    def hot_keys(self, namespace: str, bucket: int) -> str:
        """Return the key of the sampled read counts of ``namespace`` in time ``bucket``."""
        return self._ops("hot", f"{namespace}:{bucket}")

    def hot_keys_merge(self, namespace: str) -> str:
        """Return the scratch key where the buckets of ``namespace`` are merged for a read."""
        return self._ops("hot", f"{namespace}:merged")

    @property
    def warming_lock(self) -> str:
        """The key naming the running warming job (one per deployment)."""
        return self._ops("warm", "lock")

    def warming_job(self, job_id: str) -> str:
        """Return the key of the state of warming job ``job_id`` (a prefix when it is "")."""
        return self._ops("warm", f"job:{job_id}")

    @property
    def warming_last(self) -> str:
        """The key naming the newest warming job that ended."""
        return self._ops("warm", "last")

    def rate_buckets(self, width_seconds: int) -> str:
        """Return the key of the hash of rate buckets ``width_seconds`` wide."""
        return self._ops("rates", f"{width_seconds}s")

    def rate_limits(self) -> str:
        """Return the prefix (no trailing ``:``) of the keys of a rate limiter's counters."""
        return f"{self.prefix}:limits"

    def _near(self, rest: str) -> str:
        """Return a key or channel of the near caches' bus: one hash tag in the cluster layout."""
        if self.slot_groups:
            return f"{self.prefix}:l1:{{{self.prefix}:l1}}:{rest}"
        return f"{self.prefix}:l1:{rest}"

    @property
    def near_holders(self) -> str:
        """The key of the near-cache holders' leases: a sorted set, holder to its end in ms."""
        return self._near("holders")

    @property
    def near_channel(self) -> str:
        """The channel near-cache invalidations are published on (not a key)."""
        return self._near("bus")

    def near_holder_channel(self, holder: str) -> str:
        """Return the channel of one holder: its lease tokens and the acknowledgements it gets."""
        return self._near(f"holder:{holder}")

    def members(self, group: str) -> str:
        """Return the key of the hash of the live members of ``group`` and their reports."""
        return self._ops("members", group)


@dataclass(frozen=True, slots=True)
class Namespace:
    """A family of entries that share a policy, statistics and purge, such as ``article``.

    Attributes:
        scheme: the key scheme it belongs to.
        name: its name, the second segment of its entry keys.
    """

    scheme: KeyScheme
    name: str

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ValueError(f"invalid namespace name {self.name!r}")

    def key(self, *parts: object) -> CacheKey:
        """Return the key of the entry identified by ``parts``, joined by ``/``.

        Each part is percent-encoded, so ``key("a/b")`` and ``key("a", "b")`` differ.
        """
        identity = "/".join(_encode(str(p)) for p in parts)
        return self._make(identity)

    def key_for_params(self, params: Mapping[str, object]) -> CacheKey:
        """Return the key of the entry identified by query parameters.

        Parameters whose value is None are left out; the rest are sorted by name, so that the
        key does not depend on the order in which a client sent them.
        """
        identity = "&".join(
            f"{quote(name, safe='-_.~')}={quote(str(value), safe='-_.~,')}"
            for name, value in sorted(params.items())
            if value is not None
        )
        return self._make(identity or "-")

    def _make(self, identity: str) -> CacheKey:
        if len(identity) > MAX_IDENTITY_LENGTH:
            identity = "h-" + hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()
        return CacheKey(self.name, self.scheme.entry(self.name, identity), identity)
