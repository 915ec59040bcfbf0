"""Per-namespace cache policy: how long an entry lives, and how much its TTL is spread."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How long entries of one namespace are kept.

    An entry is *fresh* for its (jittered) TTL. After that it is *stale*: for
    ``stale_while_revalidate_seconds`` it is still served at once while one refresh runs in the
    background, and for ``stale_if_error_seconds`` it is served when a load fails (the names
    and meaning follow HTTP's RFC 5861). Redis keeps it for the TTL plus the longer of the two.

    Attributes:
        ttl_seconds: fresh lifetime of an entry, in seconds (> 0).
        jitter_ratio: fraction in ``[0, 1)`` by which each stored TTL is shortened at random,
            so that entries written together do not expire together (a 0.1 ratio stores a
            300-second TTL as a value between 270 and 300 seconds).
        stale_while_revalidate_seconds: how long after the fresh period a stale entry is served
            while it is refreshed in the background, in seconds (0: never).
        stale_if_error_seconds: how long after the fresh period a stale entry is served when
            the load fails, in seconds (0: never).
        early_refresh_beta: the beta of probabilistic early refresh (Vattani, Chierichetti and
            Lowenstein, "Optimal Probabilistic Cache Stampede Prevention", VLDB 2015): a hit
            refreshes in the background when ``now - load_time * beta * ln(random()) >=
            fresh_until``. 0 turns it off; 1 is the paper's optimum.
    """

    ttl_seconds: float = 300.0
    jitter_ratio: float = 0.1
    stale_while_revalidate_seconds: float = 0.0
    stale_if_error_seconds: float = 0.0
    early_refresh_beta: float = 0.0

    def __post_init__(self) -> None:
        if self.ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be > 0")
        if not 0 <= self.jitter_ratio < 1:
            raise ValueError("jitter_ratio must be in [0, 1)")
        if min(self.stale_while_revalidate_seconds, self.stale_if_error_seconds) < 0:
            raise ValueError("stale periods must be >= 0")
        if self.early_refresh_beta < 0:
            raise ValueError("early_refresh_beta must be >= 0")

    @property
    def stale_ms(self) -> int:
        """How long Redis keeps an entry after its fresh period, in milliseconds."""
        return int(max(self.stale_while_revalidate_seconds, self.stale_if_error_seconds) * 1000)

    @property
    def revalidate_ms(self) -> int:
        """The stale-while-revalidate period, in milliseconds."""
        return int(self.stale_while_revalidate_seconds * 1000)

    def jittered_ttl_ms(
        self, ttl_seconds: float | None = None, rng: random.Random | None = None
    ) -> int:
        """Return the TTL to store, in milliseconds, with jitter applied.

        Args:
            ttl_seconds: a shorter lifetime asked for by the loader (for instance up to the
                moment the value is known to change), in seconds; the policy's TTL when None.
                The smaller of the two wins.
            rng: the random source; the module's when None.

        Returns:
            A whole number of milliseconds, at least 1.
        """
        base = self.ttl_seconds if ttl_seconds is None else min(ttl_seconds, self.ttl_seconds)
        draw = (rng or random).random()
        return max(1, int(base * 1000 * (1 - self.jitter_ratio * draw)))


@dataclass(frozen=True, slots=True)
class PolicyTable:
    """The policy of each namespace, with a default for the namespaces it does not name.

    Attributes:
        default: the policy of any namespace not in ``by_namespace``.
        by_namespace: namespace name to its policy.
    """

    default: CachePolicy = field(default_factory=CachePolicy)
    by_namespace: Mapping[str, CachePolicy] = field(default_factory=dict)

    def for_namespace(self, namespace: str) -> CachePolicy:
        """Return the policy of ``namespace``."""
        return self.by_namespace.get(namespace, self.default)
