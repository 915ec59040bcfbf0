"""Prometheus metrics of one service process, summed over the workers of one instance.

Under ``content-service serve`` every uvicorn worker writes its samples to memory-mapped files
in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode) and any worker that
answers a scrape reads the files of all of them: one scrape of an instance shows the sum of its
workers, and Prometheus sums over instances. Without that variable (one process, as in the
tests) the samples stay in this process's memory. The variable must be set before
prometheus_client is first imported, which ``serve`` does
(:func:`service.metrics_dir.prepare_multiprocess_dir`).

Counters and histograms of a worker that has stopped keep counting in the sums (totals never go
back). Gauges of a stopped worker drop out: a worker removes its gauge files when it closes its
metrics, and each scrape removes those of processes that no longer run (a killed worker).

Families (the contract's names; ``{...}`` are labels):

* ``content_cache_requests_total{namespace, result}``: result ``hit``, ``miss``, ``stale``,
  ``bypass``; ``content_cache_events_total{namespace, event}``: the cache's other counters
  (``coalesced``, ``lease_losses``, ...), both as :class:`cache.CacheStats` flushes them;
  ``content_cache_l1_requests_total{namespace, result}``: of the hits and stale answers, those
  the near cache (L1) gave (result ``hit``, ``stale``; counted in the first family too).
* ``content_cache_l1_ack_wait_seconds``: histogram of how long writes waited for the near
  caches' acknowledgements; ``content_cache_invalidation_seconds``: histogram of each
  invalidation message, from before its script ran (it deletes and publishes) to the last
  acknowledgement: the wait for the near caches lies within it.
* ``content_cache_load_seconds{namespace}``: histogram of loader calls.
* ``http_requests_total{route, method, status}``, ``http_request_duration_seconds{route,
  method}``: every answer, by route template (``unmatched`` when no route matched).
* ``content_db_pool_connections{state}`` (``size``, ``checked_out``, ``checked_in``,
  ``overflow``) and ``content_redis_pool_connections{state}`` (``in_use``, ``max``): per worker
  (label ``pid`` under ``serve``).
* ``content_breaker_open{backend}``: 1 while a breaker of any live worker is open.
* ``content_outbox_backlog``: the newest backlog a live worker sampled.
* ``content_warming_keys_total{result}``: ``done``, ``skipped``, ``error``.
* the read replicas' families: see :mod:`service.replica_figures`; the near caches' gauges and
  counters: see :mod:`service.near_figures`.
"""

from __future__ import annotations

import logging
import math
import os
import re
from bisect import bisect_left
from collections.abc import Callable, Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from cache.counters import L1_HITS, READ_STATES
from service.metrics_dir import MULTIPROC_ENV

logger = logging.getLogger(__name__)

#: media type of :meth:`ServiceMetrics.exposition`'s text (Prometheus text format 0.0.4)
CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4
#: route label of a request no route matched (a 404, a slash redirect)
UNMATCHED: Final = "unmatched"
#: the cache counters that are results of ``content_cache_requests_total``
RESULTS: Final = READ_STATES
#: the cache counters that are results of ``content_cache_l1_requests_total``
L1_RESULTS: Final = {L1_HITS: "hit"}
WARMING_RESULTS: Final = ("done", "skipped", "error")
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Hits answer in well under a millisecond, misses in a few, timeouts in seconds.
_HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_L1_WAIT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Fine up to 30 ms (0.25 ms steps to 4 ms, 0.5 ms to 10 ms, 1 ms to 30 ms), where the
#: publication and the acknowledgements of a write lie, even on a busy core.
_INVALIDATION_BUCKETS = (
    *(i / 4000 for i in range(1, 17)),
    *(i / 2000 for i in range(9, 21)),
    *(i / 1000 for i in range(11, 31)),
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
_LOAD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")

Sampler = Callable[["ServiceMetrics"], None]


class _AnswerRow:
    """Answers of one (route, method, status) not yet published: count, seconds, per bucket."""

    __slots__ = ("buckets", "count", "seconds")

    def __init__(self, buckets: int) -> None:
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * buckets

    def reset(self) -> None:
        """Forget what was published."""
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * len(self.buckets)


def is_multiprocess() -> bool:
    """True when prometheus_client was imported with ``PROMETHEUS_MULTIPROC_DIR`` set."""
    return bool(getattr(prometheus_values.ValueClass, "_multiprocess", False))


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ServiceMetrics:
    """The metric families of one process and the text a scrape answers.

    An answer is counted in a plain dict (a lookup, three increments and a bisection: no lock,
    no memory-mapped write), and published to the HTTP families by :meth:`sample`, which the
    lifespan runs every second and every scrape runs first: a scrape shows every answer of the
    worker that serves it, and those of the other workers up to a second old. Cache counts are
    published as :class:`cache.CacheStats` flushes them; gauges are set by the samplers. Safe
    to share between the tasks of one loop. Owned by the lifespan state, which calls
    :meth:`close` on shutdown.

    Args:
        multiprocess_dir: where the workers' sample files are (multiprocess mode); None keeps
            the samples in this process's own registry.
    """

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        # In multiprocess mode the registry holds the collector of the sample files alone:
        # describing it at registration would read the other workers' files, which one of
        # them may be creating at that instant (empty, unreadable) while they all start.
        self.registry = CollectorRegistry(auto_describe=not multiprocess_dir)
        own = None if multiprocess_dir else self.registry
        self._own = own
        if multiprocess_dir:
            MultiProcessCollector(self.registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        self.cache_requests = Counter(
            "content_cache_requests",
            "Cache reads by namespace and result (hit, miss, stale, bypass).",
            ["namespace", "result"],
            registry=own,
        )
        self.cache_events = Counter(
            "content_cache_events",
            "Other cache outcomes by namespace (coalesced, lease_losses, refreshes, ...).",
            ["namespace", "event"],
            registry=own,
        )
        self.l1_requests = Counter(
            "content_cache_l1_requests",
            "Cache reads answered from a near cache (L1) by namespace and result (hit, stale); "
            "counted in content_cache_requests too.",
            ["namespace", "result"],
            registry=own,
        )
        self.cache_load_seconds = Histogram(
            "content_cache_load_seconds",
            "Duration of cache loads (reads from PostgreSQL on a miss), seconds.",
            ["namespace"],
            buckets=_LOAD_BUCKETS,
            registry=own,
        )
        self.http_requests = Counter(
            "http_requests",
            "HTTP answers by route template, method and status.",
            ["route", "method", "status"],
            registry=own,
        )
        self.http_duration_seconds = Histogram(
            "http_request_duration_seconds",
            "Time from a request's arrival to its last answer byte handed to the server, seconds.",
            ["route", "method"],
            buckets=_HTTP_BUCKETS,
            registry=own,
        )
        self.db_pool = Gauge(
            "content_db_pool_connections",
            "SQLAlchemy pool connections of each worker by state.",
            ["state"],
            multiprocess_mode="liveall",
            registry=own,
        )
        self.redis_pool = Gauge(
            "content_redis_pool_connections",
            "Redis client pool connections of each worker by state.",
            ["state"],
            multiprocess_mode="liveall",
            registry=own,
        )
        self.breaker_open = Gauge(
            "content_breaker_open",
            "1 while the circuit breaker of a backend is open in any live worker, else 0.",
            ["backend"],
            multiprocess_mode="livemax",
            registry=own,
        )
        self.outbox_backlog = Gauge(
            "content_outbox_backlog",
            "Invalidation outbox rows not applied yet, as last sampled.",
            multiprocess_mode="livemostrecent",
            registry=own,
        )
        self.warming_keys = Counter(
            "content_warming_keys",
            "Keys handled by cache warming jobs by result (done, skipped, error).",
            ["result"],
            registry=own,
        )
        self.l1_ack_wait_seconds = Histogram(
            "content_cache_l1_ack_wait_seconds",
            "How long writes waited for the near caches' acknowledgements (or leases), seconds.",
            buckets=_L1_WAIT_BUCKETS,
            registry=own,
        )
        self.invalidation_seconds = Histogram(
            "content_cache_invalidation_seconds",
            "How long each invalidation message took, from before its publication to the last"
            " near cache's acknowledgement (or lapsed lease), seconds.",
            buckets=_INVALIDATION_BUCKETS,
            registry=own,
        )
        for result in WARMING_RESULTS:
            self.warming_keys.labels(result)
        self._http: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._answers: dict[tuple[str, str, int], _AnswerRow] = {}
        self._bounds = (*_HTTP_BUCKETS, math.inf)
        self._loads: dict[str, Any] = {}
        self._samplers: list[Sampler] = []

    @classmethod
    def from_environment(cls) -> ServiceMetrics:
        """Return metrics in multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is in force.

        The variable is in force only if it was set when prometheus_client was imported; a
        variable set later is logged and ignored (this process then exports its own samples).
        """
        path = os.environ.get(MULTIPROC_ENV)
        if path and not is_multiprocess():
            logger.warning(
                "%s was set after prometheus_client was imported; exporting this process only",
                MULTIPROC_ENV,
            )
            path = None
        return cls(path if path else None)

    @property
    def family_registry(self) -> CollectorRegistry | None:
        """The registry a family of this process registers with (see :meth:`exposition`).

        This process's own registry; None in multiprocess mode, where the family's samples go
        to the sample files, which the registry's collector reads.
        """
        return self._own

    # -- what the cache reports (cache.StatsObserver) --

    def counted(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add ``{(namespace, counter): n}`` (a :class:`cache.CacheStats` flush) to the counters."""
        for (namespace, counter), n in counts.items():
            result = RESULTS.get(counter)
            if result is not None:
                self.cache_requests.labels(namespace, result).inc(n)
            elif (result := L1_RESULTS.get(counter)) is not None:
                self.l1_requests.labels(namespace, result).inc(n)
            else:
                self.cache_events.labels(namespace, counter).inc(n)

    def observe_l1_wait(self, seconds: float) -> None:
        """Observe how long one write waited for the near caches' acknowledgements, seconds."""
        self.l1_ack_wait_seconds.observe(seconds)

    def observe_invalidation(self, seconds: float) -> None:
        """Observe how long one invalidation message took to be acknowledged, seconds."""
        self.invalidation_seconds.observe(seconds)

    def loaded(self, namespace: str, seconds: float) -> None:
        """Observe one load of ``namespace`` that took ``seconds``."""
        child = self._loads.get(namespace)
        if child is None:
            child = self._loads[namespace] = self.cache_load_seconds.labels(namespace)
        child.observe(seconds)

    # -- what the HTTP layer reports --

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answer of ``route`` (a template) and its duration in seconds, in memory.

        The counts reach the metric families at the next :meth:`sample` (every second, and
        before every scrape this process answers). Methods outside the standard ones are
        counted as ``other``, so that a client cannot add label values at will.
        """
        row = self._answers.get((route, method, status))
        if row is None:
            if method not in METHODS:
                method = "other"
            row = self._answers.setdefault((route, method, status), _AnswerRow(len(self._bounds)))
        row.count += 1
        row.seconds += seconds
        row.buckets[bisect_left(self._bounds, seconds)] += 1

    def _publish_answers(self) -> None:
        """Add the answers counted since the last call to the HTTP families."""
        for (route, method, status), row in self._answers.items():
            if not row.count:
                continue
            children = self._http.get((route, method, status))
            if children is None:
                children = self._http[(route, method, status)] = (
                    self.http_requests.labels(route, method, str(status)),
                    self.http_duration_seconds.labels(route, method),
                )
            counter, histogram = children
            counter.inc(row.count)
            # prometheus_client has no call that adds many observations at once: its
            # histogram child keeps one value per bucket (not cumulative) and their sum.
            histogram._sum.inc(row.seconds)
            for value, n in zip(histogram._buckets, row.buckets, strict=True):
                if n:
                    value.inc(n)
            row.reset()

    # -- gauges and counters fed by other parts of the service --

    def set_db_pool(self, figures: Mapping[str, int]) -> None:
        """Set this worker's database pool gauges from ``{state: connections}``."""
        for state, n in figures.items():
            self.db_pool.labels(state).set(n)

    def set_redis_pool(self, in_use: int, max_connections: int) -> None:
        """Set this worker's Redis pool gauges: connections checked out and the pool's bound."""
        self.redis_pool.labels("in_use").set(in_use)
        self.redis_pool.labels("max").set(max_connections)

    def set_breaker_open(self, backend: str, is_open: bool) -> None:
        """Set ``content_breaker_open{backend}`` to 1 when open, else 0."""
        self.breaker_open.labels(backend).set(1 if is_open else 0)

    def set_outbox_backlog(self, rows: int) -> None:
        """Set the outbox backlog (rows not applied yet), as a sampler measured it."""
        self.outbox_backlog.set(rows)

    def count_warmed(self, result: str, n: int = 1) -> None:
        """Add ``n`` warmed keys with ``result`` (``done``, ``skipped`` or ``error``).

        Raises:
            ValueError: ``result`` is not one of those.
        """
        if result not in WARMING_RESULTS:
            raise ValueError(f"warming result {result!r} is not one of {WARMING_RESULTS}")
        self.warming_keys.labels(result).inc(n)

    # -- sampling and scraping --

    def add_sampler(self, sampler: Sampler) -> None:
        """Call ``sampler(self)`` before every scrape this process answers and on :meth:`sample`."""
        self._samplers.append(sampler)

    def sample(self) -> None:
        """Publish the answers counted so far, and run the samplers (a failing one is logged)."""
        self._publish_answers()
        for sampler in self._samplers:
            try:
                sampler(self)
            except Exception:
                logger.exception("metrics sampler failed")

    def exposition(self) -> bytes:
        """Return the text a scrape answers: this process's samples, or all live workers'."""
        self.sample()
        if self.multiprocess_dir:
            self._forget_dead_processes()
        return generate_latest(self.registry)

    def close(self) -> None:
        """Drop this process's gauges from what other workers export (multiprocess mode)."""
        if self.multiprocess_dir:
            mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def _forget_dead_processes(self) -> None:
        assert self.multiprocess_dir is not None
        pids = set()
        for path in os.listdir(self.multiprocess_dir):
            match = _LIVE_FILE.match(path)
            if match:
                pids.add(int(match.group(1)))
        for pid in pids:
            if not _is_running(pid):
                mark_process_dead(pid, self.multiprocess_dir)  # type: ignore[no-untyped-call]
