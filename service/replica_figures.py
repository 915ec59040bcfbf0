"""The read replicas' figures: each worker's report, ``/stats``'s ``db_replicas``, the metrics.

Each worker counts the loads each server ran and the loads that passed each replica by, in
memory (:class:`service.replicas.ReplicaSet`). Its report to the other workers (see
:mod:`service.workers`) carries them as ``{"primary_loads": n, "replicas": {name: {"loads": n,
"skipped": {reason: n}}}}``; ``/stats`` sums them over the live workers, and shows each
replica's state and lag as the answering worker last sampled them.

Metric families (labels in braces; ``replica`` is ``host:port/database``):

* ``content_db_loads_total{server}``: cache-miss loads by the server that ran them
  (``primary`` or a replica's name);
* ``content_db_replica_skipped_total{replica, reason}``: loads that passed a replica by, by
  reason (``lagging``, ``down``, ``not_replica``, ``behind``, ``conflict``);
* ``content_db_replica_lag_seconds{replica}``: its replay lag as last sampled, the largest a
  live worker saw (-1 while unknown);
* ``content_db_replica_usable{replica}``: 1 while loads may try it, in every live worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge

from cache import MemberReport
from service.metrics import Sampler, ServiceMetrics
from service.replicas import SKIP_REASONS, ReplicaSet
from service.workers import rfc3339

#: ``server`` label of the loads the primary ran.
PRIMARY = "primary"


def worker_figures(replicas: ReplicaSet) -> dict[str, Any]:
    """Return this worker's counts, as its report to the other workers carries them."""
    return {
        "primary_loads": replicas.primary_loads,
        "replicas": {
            r.name: {"loads": r.loads, "skipped": dict(r.skipped)} for r in replicas.replicas
        },
    }


def replica_stats(replicas: ReplicaSet, reports: Iterable[MemberReport]) -> dict[str, Any]:
    """Return ``/stats``'s ``db_replicas``: counts summed over ``reports``, states as sampled here.

    Returns:
        ``{"max_lag_seconds": float, "primary_loads": int, "replicas": [{"name": str,
        "state": str, "lag_seconds": float or None, "replayed_position": int or None,
        "sampled_at": RFC 3339 or None, "loads": int, "skipped": {reason: int}}, ...]}``, the
        replicas in the order of ``DATABASE_REPLICA_URLS``. A worker that reports no figures
        (one started before replicas were configured) adds nothing.
    """
    primary_loads = 0
    loads = {r.name: 0 for r in replicas.replicas}
    skipped = {r.name: dict.fromkeys(SKIP_REASONS, 0) for r in replicas.replicas}
    for member in reports:
        figures = member.report.get("db_replicas")
        if not isinstance(figures, dict):
            continue
        primary_loads += int(figures.get("primary_loads") or 0)
        for name, counts in (figures.get("replicas") or {}).items():
            if name not in loads or not isinstance(counts, dict):
                continue
            loads[name] += int(counts.get("loads") or 0)
            for reason, n in (counts.get("skipped") or {}).items():
                if reason in skipped[name]:
                    skipped[name][reason] += int(n or 0)
    rows = []
    for replica in replicas.replicas:
        status = replica.status
        rows.append(
            {
                "name": replica.name,
                "state": status.state,
                "lag_seconds": status.lag_seconds,
                "replayed_position": status.replayed,
                "sampled_at": None if status.sampled_at is None else rfc3339(status.sampled_at),
                "loads": loads[replica.name],
                "skipped": skipped[replica.name],
            }
        )
    return {
        "max_lag_seconds": replicas.max_lag_seconds,
        "primary_loads": primary_loads,
        "replicas": rows,
    }


def replica_sampler(metrics: ServiceMetrics, replicas: ReplicaSet) -> Sampler:
    """Register the replica families on ``metrics``; return the sampler that publishes them.

    The counters advance by what was counted since the previous sample; the gauges are set.
    """
    own = metrics.family_registry
    loads = Counter(
        "content_db_loads",
        "Cache-miss loads by the server that ran them (primary, or a replica).",
        ["server"],
        registry=own,
    )
    skipped = Counter(
        "content_db_replica_skipped",
        "Cache-miss loads that passed a read replica by, by reason.",
        ["replica", "reason"],
        registry=own,
    )
    lag = Gauge(
        "content_db_replica_lag_seconds",
        "Replay lag of a read replica as last sampled, seconds (-1 while unknown).",
        ["replica"],
        multiprocess_mode="livemax",
        registry=own,
    )
    usable = Gauge(
        "content_db_replica_usable",
        "1 while cache-miss loads may try a read replica (in every live worker), else 0.",
        ["replica"],
        multiprocess_mode="livemin",
        registry=own,
    )
    published: dict[tuple[str, ...], int] = {}

    def advance(counter: Counter, labels: tuple[str, ...], total: int) -> None:
        delta = total - published.get(labels, 0)
        if delta > 0:
            counter.labels(*labels[1:]).inc(delta)
            published[labels] = total

    loads.labels(PRIMARY)
    for replica in replicas.replicas:
        loads.labels(replica.name)
        for reason in SKIP_REASONS:
            skipped.labels(replica.name, reason)

    def sample(_: ServiceMetrics) -> None:
        advance(loads, ("loads", PRIMARY), replicas.primary_loads)
        for replica in replicas.replicas:
            advance(loads, ("loads", replica.name), replica.loads)
            for reason, n in replica.skipped.items():
                advance(skipped, ("skipped", replica.name, reason), n)
            status = replica.status
            lag.labels(replica.name).set(-1 if status.lag_seconds is None else status.lag_seconds)
            usable.labels(replica.name).set(0 if replica.skip_reason() else 1)

    return sample
