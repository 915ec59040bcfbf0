"""The near cache's figures: each worker's report, ``/stats``'s ``l1`` and tiers, the metrics.

Each worker holds its own near cache (L1, :class:`cache.near.NearCache`; none when
``CACHE_L1_MAX_BYTES`` is 0) and its own :class:`cache.bus.InvalidationBus`, which every worker
has, since its writes wait for the holders. Its report to the other workers (see
:mod:`service.workers`) carries ``{"max_bytes", "bytes", "entries", "evictions",
"fills_refused", "invalidations", "lease_valid", "ack_waits", "lapsed_leases"}`` (see
:func:`worker_figures`); ``/stats`` lists the live workers' and sums them.

The cache counter ``l1_hits`` is counted in ``hits`` too (a near cache answers no stale entry):
:func:`tier_figures` splits the hits and stale answers between the tiers, L1 (the near cache)
and L2 (Redis).

Metric families of :func:`near_sampler` (``content_cache_l1_requests_total`` is
:class:`service.metrics.ServiceMetrics`'s, fed by the statistics flush):

* ``content_cache_l1_bytes``, ``content_cache_l1_entries``, ``content_cache_l1_max_bytes``:
  each worker's near cache (bytes as :func:`cache.near.entry_size` counts them; 0 when off);
* ``content_cache_l1_lease_valid``: 1 while the worker's near cache may answer, else 0;
* ``content_cache_l1_evictions_total``, ``content_cache_l1_fills_refused_total``,
  ``content_cache_l1_invalidations_total``: what the near caches did;
* ``content_cache_l1_lapsed_leases_total``: holders whose lease a write waited out, because
  their acknowledgement did not come.

The gauges are per worker (label ``pid`` in multiprocess mode); the counters advance by what
was counted since the previous sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any, Final

from prometheus_client import Counter, Gauge

from cache import InvalidationBus, MemberReport, NearCache
from cache.counters import HITS, L1_HITS, MISSES, STALE
from service.metrics import Sampler, ServiceMetrics
from service.workers import rfc3339

#: The figures of a worker's report, summed at the top of ``/stats``'s ``l1`` (not
#: ``lease_valid``).
SUMMED: Final = ("max_bytes", "bytes", "entries")
#: Every integer figure of a worker's report, in the order of its ``/stats`` row.
COUNTS: Final = (
    "max_bytes",
    "bytes",
    "entries",
    "evictions",
    "fills_refused",
    "invalidations",
    "ack_waits",
    "lapsed_leases",
)


def worker_figures(near: NearCache | None, bus: InvalidationBus) -> dict[str, Any]:
    """Return this worker's near cache and bus figures, as its report carries them.

    Returns:
        ``{"max_bytes", "bytes", "entries", "evictions", "fills_refused", "invalidations":
        int, "lease_valid": bool, "ack_waits", "lapsed_leases": int}``: bytes as
        :func:`cache.near.entry_size` counts them; the cache's figures 0 and ``lease_valid``
        false when it has no near cache; ``ack_waits`` (writes that waited for a holder) and
        ``lapsed_leases`` (holders waited out) of its bus.
    """
    if near is None:
        figures: dict[str, Any] = dict.fromkeys(COUNTS, 0)
        figures["lease_valid"] = False
    else:
        figures = asdict(near.figures())
    figures["ack_waits"] = bus.waits
    figures["lapsed_leases"] = bus.lapsed
    return figures


def tier_figures(counters: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Return ``cache.tiers``: the hits and stale answers of L1 and of L2 (Redis).

    Each tier's ``hit_ratio`` is its hits / (hits + misses) of every read, so that the two
    add up to the cache's ``hit_ratio`` (0 when there was no read).

    Args:
        counters: the cache's counters (``hits``, ``misses``, ``stale``, ``l1_hits``).

    Returns:
        ``{"l1": {"hits": int, "stale": int, "hit_ratio": float}, "l2": {...}}``.
    """
    hits, misses = int(counters[HITS]), int(counters[MISSES])
    l1_hits = int(counters[L1_HITS])
    reads = hits + misses
    l2_hits = max(0, hits - l1_hits)
    return {
        "l1": {
            "hits": l1_hits,
            "stale": 0,  # a near cache answers fresh entries only
            "hit_ratio": l1_hits / reads if reads else 0.0,
        },
        "l2": {
            "hits": l2_hits,
            "stale": int(counters[STALE]),
            "hit_ratio": l2_hits / reads if reads else 0.0,
        },
    }


def near_stats(
    reports: Iterable[MemberReport], *, lease_ms: int, lease_check: bool
) -> dict[str, Any]:
    """Return ``/stats``'s ``l1``: the live workers' near caches, listed and summed.

    Args:
        reports: the live workers' reports, sorted.
        lease_ms: the answering worker's ``CACHE_L1_LEASE_MS``.
        lease_check: the answering worker's ``CACHE_L1_LEASE_CHECK``.

    Returns:
        ``{"max_bytes": sum, "bytes": sum, "entries": sum, "lease_ms": int, "lease_check":
        bool, "workers": [{"instance", "pid", "started_at", "reported_at", <each of COUNTS>,
        "lease_valid"}, ...]}``. ``lease_ms`` and ``lease_check`` are the answering worker's
        settings. A worker whose report holds no near-cache figures (one of a version before
        them) is not listed.
    """
    totals: dict[str, Any] = dict.fromkeys(SUMMED, 0)
    rows: list[dict[str, Any]] = []
    for member in reports:
        report = member.report
        figures = report.get("l1")
        if not isinstance(figures, dict):
            continue
        row: dict[str, Any] = {
            "instance": report.get("instance"),
            "pid": report.get("pid"),
            "started_at": report.get("started_at"),
            "reported_at": rfc3339(member.reported_at),
        }
        for name in COUNTS:
            row[name] = int(figures.get(name) or 0)
        row["lease_valid"] = bool(figures.get("lease_valid"))
        for name in SUMMED:
            totals[name] += row[name]
        rows.append(row)
    return {
        **totals,
        "lease_ms": lease_ms,
        "lease_check": lease_check,
        "workers": rows,
    }


def near_sampler(metrics: ServiceMetrics, near: NearCache | None, bus: InvalidationBus) -> Sampler:
    """Register the near cache's families on ``metrics``; return the sampler that sets them.

    The gauges are set from memory (no I/O); the counters advance by what was counted since
    the previous sample.
    """
    own = metrics.family_registry

    def gauge(name: str, documentation: str) -> Gauge:
        return Gauge(name, documentation, multiprocess_mode="liveall", registry=own)

    def counter(name: str, documentation: str) -> Counter:
        return Counter(name, documentation, registry=own)

    gauges = {
        "bytes": gauge(
            "content_cache_l1_bytes",
            "Bytes of the entries held in each worker's near cache (L1).",
        ),
        "entries": gauge(
            "content_cache_l1_entries", "Entries held in each worker's near cache (L1)."
        ),
        "max_bytes": gauge(
            "content_cache_l1_max_bytes",
            "Bound of each worker's near cache (L1), bytes; 0 when it is off.",
        ),
    }
    lease_valid = gauge(
        "content_cache_l1_lease_valid",
        "1 while a worker's near cache (L1) may answer (its holder's lease is valid), else 0.",
    )
    counters = {
        "evictions": counter(
            "content_cache_l1_evictions",
            "Entries evicted from the near caches (L1) to stay within their bound.",
        ),
        "fills_refused": counter(
            "content_cache_l1_fills_refused",
            "Near-cache (L1) fills refused because an invalidation raced their read.",
        ),
        "invalidations": counter(
            "content_cache_l1_invalidations",
            "Invalidation messages the near caches (L1) applied.",
        ),
        "lapsed_leases": counter(
            "content_cache_l1_lapsed_leases",
            "Near-cache holders whose lease a write waited out (no acknowledgement came).",
        ),
    }
    published = dict.fromkeys(counters, 0)

    def sample(_: ServiceMetrics) -> None:
        figures = worker_figures(near, bus)
        for name, family in gauges.items():
            family.set(figures[name])
        lease_valid.set(1 if figures["lease_valid"] else 0)
        for name, total in counters.items():
            delta = figures[name] - published[name]
            if delta > 0:
                total.inc(delta)
                published[name] = figures[name]

    return sample
