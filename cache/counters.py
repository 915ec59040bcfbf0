"""The counters of cache outcomes: their names, and the figures of the hash that sums them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

HITS: Final = "hits"
MISSES: Final = "misses"
STALE: Final = "stale"
BYPASS: Final = "bypass"
COALESCED: Final = "coalesced"
STORE_REJECTED: Final = "store_rejected"
STALE_IF_ERROR: Final = "stale_if_error"
LEASE_LOSSES: Final = "lease_losses"
HERD_TIMEOUTS: Final = "herd_timeouts"
REFRESHES: Final = "refreshes"
REFRESH_FAILURES: Final = "refresh_failures"
L1_HITS: Final = "l1_hits"
#: hits and misses: of the first GET; stale: stale entries answered (stale_if_error of them
#: after a failed load); bypass: reads that did not use Redis; coalesced: misses answered by
#: another caller's load (same process, or another process's stored value); lease_losses:
#: misses that found another process's load lease; herd_timeouts: of those, loads made after
#: the wait ran out; store_rejected: stores refused because an invalidation revoked their
#: lease (a stale set prevented); refreshes / refresh_failures: background refreshes; l1_hits
#: the hits that came from a near cache (counted in hits too; a near cache answers fresh
#: entries only).
COUNTERS: Final = (
    HITS,
    MISSES,
    STALE,
    STALE_IF_ERROR,
    BYPASS,
    COALESCED,
    LEASE_LOSSES,
    HERD_TIMEOUTS,
    STORE_REJECTED,
    REFRESHES,
    REFRESH_FAILURES,
    L1_HITS,
)

#: The counters that say how a read was answered, to the name of that state (``hit``, ``miss``,
#: ``stale``, ``bypass``): the states of request rates and of the Prometheus ``result`` label.
READ_STATES: Final = {HITS: "hit", MISSES: "miss", STALE: "stale", BYPASS: "bypass"}
_COUNTER_SET: Final = frozenset(COUNTERS)
_MAX_FIELD_NAMES: Final = 10_000


def hit_ratio(hits: int, misses: int) -> float:
    """Return ``hits / (hits + misses)``, or 0.0 when both are 0."""
    total = hits + misses
    return hits / total if total else 0.0


def counter_figures(
    raw: Mapping[bytes | str, bytes | str],
    namespaces: Iterable[str],
    names: dict[bytes | str, tuple[str, str] | None],
    *,
    complete: bool,
) -> dict[str, Any]:
    """Return the figures of the counters hash's fields (``{namespace}:{counter}`` to a count).

    Args:
        raw: the hash (or this process's counts when Redis could not be read).
        namespaces: namespaces to list even when nothing was counted in them.
        names: a cache of split field names, kept by the caller across calls (it holds at
            most a bounded number of entries).
        complete: whether ``raw`` is the hash read from Redis.

    Returns:
        ``{<each name in COUNTERS>: int, "hit_ratio": float, "complete": bool,
        "namespaces": {name: {counter: int, ..., "hit_ratio": float}}}``, namespaces sorted.
    """
    per_ns: dict[str, dict[str, Any]] = {ns: dict.fromkeys(COUNTERS, 0) for ns in namespaces}
    for field, value in raw.items():
        # The hash holds a bounded set of fields: each is split once per process, not per read.
        try:
            name = names[field]
        except KeyError:
            if len(names) > _MAX_FIELD_NAMES:
                names.clear()
            text = field.decode() if isinstance(field, bytes) else field
            ns, _, counter = text.rpartition(":")
            name = names[field] = (ns, counter) if counter in _COUNTER_SET else None
        if name is not None:
            counters = per_ns.get(name[0])
            if counters is None:
                counters = per_ns[name[0]] = dict.fromkeys(COUNTERS, 0)
            counters[name[1]] = int(value)
    totals: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
    for counters in per_ns.values():
        for c in COUNTERS:
            totals[c] += counters[c]
        counters["hit_ratio"] = hit_ratio(counters[HITS], counters[MISSES])
    totals["hit_ratio"] = hit_ratio(totals[HITS], totals[MISSES])
    totals["complete"] = complete
    totals["namespaces"] = dict(sorted(per_ns.items()))
    return totals
