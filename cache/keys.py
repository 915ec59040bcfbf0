"""The key scheme: every Redis key the library reads or writes is built here, and only here.

Layout, for a scheme whose prefix is ``cs``:

==========================  ================================================================
``cs:e:{namespace}:{id}``   a cached entry (see :mod:`cache.codec`)
``cs:t:{tag}``              a tag set: the entry keys stored under that tag
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
``cs:limits:{...}``         rate-limit counters, named by the rate limiter that is given
                            :meth:`KeyScheme.rate_limits` as its prefix
==========================  ================================================================

Identities are built from the caller's parts or query parameters in a canonical order, so that
two requests meaning the same thing share one entry. An identity longer than
:data:`MAX_IDENTITY_LENGTH` characters is replaced by its BLAKE2b digest.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

#: Identities longer than this many characters are hashed.
MAX_IDENTITY_LENGTH = 160

_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


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
            keeps caches that share a Redis apart. Must not contain ``*``, ``?`` or ``[``.
    """

    prefix: str

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in "*?[] "):
            raise ValueError(f"invalid key prefix {self.prefix!r}")

    def namespace(self, name: str) -> Namespace:
        """Return the namespace ``name`` of this scheme (letters, digits, ``-`` and ``_``)."""
        return Namespace(self, name)

    def entry(self, namespace: str, identity: str) -> str:
        """Return the Redis key of the entry ``identity`` in ``namespace``."""
        return f"{self.prefix}:e:{namespace}:{identity}"

    def entry_pattern(self, namespace: str | None = None) -> str:
        """Return a SCAN pattern matching the entries of one namespace, or of all of them."""
        return f"{self.prefix}:e:{namespace}:*" if namespace else f"{self.prefix}:e:*"

    def everything_pattern(self) -> str:
        """Return a SCAN pattern matching every key of this scheme."""
        return f"{self.prefix}:*"

    def kept_by_purge(self) -> tuple[bytes, ...]:
        """Return the key prefixes that purging everything keeps.

        Hot-key counts (what a warming job after a purge works from), warming jobs (a running
        job keeps its lock and state), request rates, the live members' reports, rate-limit
        counters and the invalidation watermark (still a bound on every change invalidated so
        far): none of them is cached content.
        """
        return tuple(
            f"{self.prefix}:{kind}:".encode()
            for kind in ("hot", "warm", "rates", "members", "limits", "source")
        )

    def load_lease(self, redis_key: str) -> str:
        """Return the key of the load lease of the entry at ``redis_key`` (an entry key)."""
        return f"{self.prefix}:l:{redis_key[len(self.prefix) + 3 :]}"

    def tag_set(self, tag: str) -> str:
        """Return the key of the set of entry keys stored under ``tag``."""
        return f"{self.prefix}:t:{tag}"

    def tag_sequence(self, tag: str) -> str:
        """Return the key holding the sequence number at which ``tag`` was last invalidated."""
        return f"{self.prefix}:ts:{tag}"

    @property
    def sequence(self) -> str:
        """The key of the invalidation sequence counter."""
        return f"{self.prefix}:seq"

    @property
    def epoch(self) -> str:
        """The key of the keyspace epoch token."""
        return f"{self.prefix}:epoch"

    @property
    def watermark(self) -> str:
        """The key of the invalidation watermark (see :mod:`cache.watermarks`)."""
        return f"{self.prefix}:source:watermark"

    @property
    def stats(self) -> str:
        """The key of the statistics hash."""
        return f"{self.prefix}:stats"

    def hot_keys(self, namespace: str, bucket: int) -> str:
        """Return the key of the sampled read counts of ``namespace`` in time ``bucket``."""
        return f"{self.prefix}:hot:{namespace}:{bucket}"

    def hot_keys_merge(self, namespace: str) -> str:
        """Return the scratch key where the buckets of ``namespace`` are merged for a read."""
        return f"{self.prefix}:hot:{namespace}:merged"

    @property
    def warming_lock(self) -> str:
        """The key naming the running warming job (one per deployment)."""
        return f"{self.prefix}:warm:lock"

    def warming_job(self, job_id: str) -> str:
        """Return the key of the state of warming job ``job_id``."""
        return f"{self.prefix}:warm:job:{job_id}"

    @property
    def warming_last(self) -> str:
        """The key naming the newest warming job that ended."""
        return f"{self.prefix}:warm:last"

    def rate_buckets(self, width_seconds: int) -> str:
        """Return the key of the hash of rate buckets ``width_seconds`` wide."""
        return f"{self.prefix}:rates:{width_seconds}s"

    def rate_limits(self) -> str:
        """Return the prefix (no trailing ``:``) of the keys of a rate limiter's counters."""
        return f"{self.prefix}:limits"

    def members(self, group: str) -> str:
        """Return the key of the hash of the live members of ``group`` and their reports."""
        return f"{self.prefix}:members:{group}"


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
