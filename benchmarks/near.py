"""The near cache (L1): Zipfian hits with it off and at 1 % of the entries, writes, a soak.

Three parts, each written as its own section of ``benchmarks/results.md`` (replacing that
section of an earlier run; :mod:`benchmarks.run` overwrites the page whole: run this after it):

1. ``hits``: ``constant``, ``redis_get`` (the anchor), ``l1_off`` (the service with
   ``CACHE_L1_MAX_BYTES=0``) and ``l1_1pct`` (the service with an L1 of 1 % of the entries'
   stored bytes: the mean ``STRLEN`` of a sample of the article entries times 1 % of the
   articles) in interleaved rounds, each one uvicorn worker pinned to CPU 0 (the service's
   as ``content-service serve`` runs it: its HTTP protocol, its metrics), wrk (one thread,
   pinned to CPU 1) sending the Zipfian script (θ = 0.99) of :mod:`benchmarks.run` over the
   ``--articles`` seeded articles. Every entry is loaded into Redis (L2) first by a sweep over
   every article, and ``l1_1pct`` is loaded with Zipfian hits for a few seconds before the
   rounds. The check column counts the answers marked ``Cache-Status: ...; detail=l1``.
2. ``writes``: two ``content-service serve --workers 2`` instances (CPU 0) sharing a cache
   prefix, with L1 off everywhere (``w0``: 0 holders) and on everywhere (``w4``: 4 holders, the
   default ``CACHE_L1_MAX_BYTES``); wrk sends PATCHes of eight articles from one connection to
   one instance, as :mod:`benchmarks.run`'s ``patch`` does, for ``--write-rounds`` rounds of
   ``--write-seconds``: the client-side p50, p99 and p99.9 and their differences, and the
   writer instance's invalidations (``content_cache_invalidation_seconds``: from the script
   that deletes and publishes to the last acknowledgement, where the wait for the holders
   lies) are what the holders cost. ``*_idle``:
   nothing else runs; ``*_loaded``: while the holders answer Zipfian reads of a hot set
   (:data:`HOT_SLUGS` articles, the patched ones hottest) from two more wrk processes.
3. ``soak``: one worker with the 1 % L1 under the Zipfian load (the patched articles hottest)
   and a PATCH every :data:`SOAK_WRITE_SECONDS`, for ``--soak-seconds``; every
   :data:`SAMPLE_SECONDS` its RSS (``/proc/{pid}/status``, the pid from ``/stats``) and its L1's
   bytes and entries (``/stats`` ``l1``). First the same load runs for :data:`BASELINE_SECONDS`
   on a worker with L1 off: its RSS plus ``CACHE_L1_MAX_BYTES`` (which counts each entry's
   fixed overhead) plus the keys the L1 keeps uncounted (:func:`l1_overhead_bytes`) is the
   bound drawn. The plot goes to ``benchmarks/near-soak.svg``.

Servers come from ``DATABASE_URL`` and ``REDIS_URL`` (or embedded ones when both are unset).

Usage::

    .venv/bin/python -m benchmarks.near [--rounds 3] [--seconds 10] [--write-rounds 5]
        [--write-seconds 20] [--soak-seconds 1800]
        [--skip-soak] [--only hits,writes,soak] [--articles 100000] [--connections 64]
        [--output benchmarks/results.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from benchmarks import workloads
from benchmarks.anchors import asyncpg_dsn
from benchmarks.measure import MeasureError, Measurement, check_statuses, parse, run_wrk
from benchmarks.report import (
    TargetResult,
    markdown_table,
    round_rows,
    summary_rows,
    text_table,
    write_section,
)
from benchmarks.run import (
    ANCHOR_PATH,
    ARTICLE_PATH,
    AUTH,
    IDLE_PATH,
    PATCHED,
    TOKEN,
    database_servers,
    ensure_data,
    ensure_patched,
    first_author,
    log,
    purge,
    service_env,
)
from benchmarks.servers import Server, pinned, serve, serve_service
from benchmarks.soak import (
    MIB,
    Sample,
    every,
    plot_svg,
    read_sample,
    rss_slope_mib_per_hour,
    table_rows,
)
from benchmarks.targets import TargetSpec
from cache import KeyScheme
from cache.near import ENTRY_OVERHEAD_BYTES, uncounted_keys
from service.keyspaces import ContentKeys
from service.settings import Settings

PARTS = ("hits", "writes", "soak")
PREFIX = "bench-near"
#: The L1 of ``l1_1pct`` and of the soak holds this share of the articles' entries.
L1_SHARE = 0.01
#: Entries whose length (``STRLEN``) is averaged to size the L1.
SIZE_SAMPLE = 2000
#: Seconds of Zipfian hits that load the L1 before the rounds.
L1_WARM_SECONDS = 5
#: Hot set of the read load beside the writes: the patched articles, then the hottest seeded.
HOT_SLUGS = 10_000
#: wrk connections of each of the two read loads beside the writes.
READ_LOAD_CONNECTIONS = 4
INSTANCES = 2
WORKERS = 2
SAMPLE_SECONDS = 10
SOAK_WRITE_SECONDS = 1.0
BASELINE_SECONDS = 60
SVG_PATH = Path(__file__).with_name("near-soak.svg")
#: Keys the L1 keeps beyond its entries, uncounted in its bytes (docs/near-cache.md, "Memory";
#: :func:`cache.near.uncounted_keys`: ghost queue, doorkeeper, recent drops), about this many
#: bytes each. The fixed overhead of each entry
#: (``cache.near.ENTRY_OVERHEAD_BYTES``) is within ``CACHE_L1_MAX_BYTES`` already.
L1_KEY_BOOKKEEPING_BYTES = 150
#: The documented bound of a worker's RSS: without L1, plus this many times CACHE_L1_MAX_BYTES.
RSS_BOUND_FACTOR = 1.5
SECTIONS = {
    "hits": "## Near cache: Zipfian hits (`benchmarks.near`)",
    "writes": "## Near cache: write latency and holders (`benchmarks.near`)",
    "soak": "## Near cache: soak (`benchmarks.near`)",
}
#: Settings of every service here beyond :data:`benchmarks.run.SERVICE_SETTINGS`.
QUIET = {"LOG_LEVEL": "warning", "ACCESS_LOG": "false"}

HIT_TARGETS = (
    TargetSpec("constant", "Starlette answering constant bytes", "constant"),
    TargetSpec("redis_get", "Starlette + one redis-py GET of the article's stored entry",
               "redis_get", anchor="constant"),
    TargetSpec("l1_off", "service GET of a cached article, CACHE_L1_MAX_BYTES=0", "l1_off",
               anchor="redis_get", checks=("HIT", "l1")),
    TargetSpec("l1_1pct", "service GET of a cached article, an L1 of 1 % of the entries' bytes",
               "l1_1pct", anchor="redis_get", checks=("HIT", "l1"), ratio_goal=2.0),
)  # fmt: skip
#: Write targets: (name, cluster, whether the holders answer reads meanwhile).
WRITE_TARGETS = (
    ("w0_idle", "w0", False),
    ("w4_idle", "w4", False),
    ("w0_loaded", "w0", True),
    ("w4_loaded", "w4", True),
)
#: The p99 a write may add with 4 holders over 0, milliseconds.
WRITE_GOAL_MS = 2.0


def l1_overhead_bytes(max_bytes: int, max_entries: int) -> int:
    """Return the L1's uncounted bookkeeping for at most ``max_entries`` entries, bytes."""
    return uncounted_keys(max_bytes, max_entries) * L1_KEY_BOOKKEEPING_BYTES


@dataclass
class Bench:
    """What the parts share: options, environment, files, data and the L1's size."""

    args: argparse.Namespace
    env: dict[str, str]
    files: Path
    slugs: list[str]
    author: str
    is_warm: bool = False
    entry_bytes: float = 0.0
    entry_memory_bytes: float = 0.0
    l1_max_bytes: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def l1_entries(self) -> int:
        """How many entries the sized L1 is meant to hold (1 % of the articles)."""
        return max(1, round(len(self.slugs) * L1_SHARE))


def options(argv: list[str] | None) -> argparse.Namespace:
    """Return the parsed command line (``args.parts``: the parts to run, in order)."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.near", description=__doc__.splitlines()[0]
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds of the hits (default 3)")
    p.add_argument("--seconds", type=int, default=10, help="seconds per hit target per round")
    p.add_argument("--write-rounds", type=int, default=5, help="rounds of the writes (default 5)")
    p.add_argument("--write-seconds", type=int, default=20, help="seconds per write round (20)")
    p.add_argument("--soak-seconds", type=int, default=1800, help="length of the soak")
    p.add_argument("--skip-soak", action="store_true", help="leave the soak out")
    p.add_argument("--only", default="", help="comma-separated parts: hits, writes, soak")
    p.add_argument("--articles", type=int, default=100_000, help="seeded articles (N)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections of reads")
    p.add_argument("--output", type=Path, default=Path(__file__).with_name("results.md"))
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(PARTS)
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        p.error(f"unknown parts {unknown}; known: {', '.join(PARTS)}")
    if args.soak_seconds < 2 * SAMPLE_SECONDS:
        p.error(f"--soak-seconds must be at least {2 * SAMPLE_SECONDS}")
    args.parts = [n for n in PARTS if n in names and not (n == "soak" and args.skip_soak)]
    return args


def l1_size_bytes(mean_entry_bytes: float, entries: int) -> int:
    """Return the ``CACHE_L1_MAX_BYTES`` that holds ``entries`` entries of the mean size."""
    return max(1, round(mean_entry_bytes * entries))


def entry_sizes(redis_url: str, keys: Sequence[str]) -> tuple[float, float]:
    """Return the mean ``STRLEN`` and ``MEMORY USAGE`` of the entries at ``keys``, bytes.

    Missing entries (a load that Redis timed out on a busy machine) are left out.

    Raises:
        RuntimeError: half of the entries or more are missing (the cache is not loaded).
    """
    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.strlen(key)
            pipe.memory_usage(key)
        replies = pipe.execute()
    finally:
        client.close()
    found = [(n, int(u or 0)) for n, u in zip(replies[0::2], replies[1::2], strict=True) if n]
    if len(found) < len(keys) / 2:
        raise RuntimeError(f"only {len(found)} of {len(keys)} entries in Redis")
    if len(found) < len(keys):
        log(f"{len(keys) - len(found)} of {len(keys)} sampled entries missing: left out")
    # The mean is over the entries found.
    return statistics.fmean(n for n, _ in found), statistics.fmean(u for _, u in found)


def l1_totals(stats: Mapping[str, Any]) -> dict[str, int]:
    """Return the L1 figures of a ``/stats`` document, 0 where absent.

    Keys: ``max_bytes``, ``bytes``, ``entries``, ``holders`` (workers listed), ``evictions``
    (summed over the workers) and ``l1_hits`` (of ``cache``).
    """
    l1 = stats.get("l1") or {}
    workers = l1.get("workers") or []
    return {
        "max_bytes": int(l1.get("max_bytes") or 0),
        "bytes": int(l1.get("bytes") or 0),
        "entries": int(l1.get("entries") or 0),
        "holders": len(workers),
        "evictions": sum(int(w.get("evictions") or 0) for w in workers),
        "l1_hits": int((stats.get("cache") or {}).get("l1_hits") or 0),
    }


def histogram_totals(metrics: str, name: str) -> tuple[float, float]:
    """Return ``(sum, count)`` of histogram ``name`` in Prometheus text, over every label set.

    Parsed by prometheus-client; ``(0.0, 0.0)`` when the histogram is absent.
    """
    total = {f"{name}_sum": 0.0, f"{name}_count": 0.0}
    for family in text_string_to_metric_families(metrics):
        if family.name == name:
            for sample in family.samples:
                if sample.name in total:
                    total[sample.name] += sample.value
    return total[f"{name}_sum"], total[f"{name}_count"]


def histogram_buckets(metrics: str, name: str) -> dict[float, float]:
    """Return histogram ``name``'s cumulative counts by bucket bound (``le``), every label set.

    Parsed by prometheus-client; empty when the histogram is absent.
    """
    counts: dict[float, float] = {}
    for family in text_string_to_metric_families(metrics):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                bound = float(sample.labels["le"])
                counts[bound] = counts.get(bound, 0.0) + sample.value
    return counts


def bucket_quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """Return the ``q``-quantile of cumulative ``buckets``, as Prometheus's histogram_quantile.

    Interpolated linearly within the bucket the rank falls in (from the bound below it, 0 for
    the first); a rank in the ``+Inf`` bucket gives the largest finite bound. None when the
    buckets count nothing.
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def stats_of(server: Server) -> dict[str, Any]:
    """Return ``server``'s ``/stats`` document."""
    r = httpx.get(server.base_url + "/stats", timeout=30)
    r.raise_for_status()
    document: dict[str, Any] = r.json()
    return document


def near_env(env: dict[str, str], prefix: str, l1_max_bytes: int | None) -> dict[str, str]:
    """Return a service's environment: ``prefix``, and ``CACHE_L1_MAX_BYTES`` unless None."""
    extra = {} if l1_max_bytes is None else {"CACHE_L1_MAX_BYTES": str(l1_max_bytes)}
    return {**service_env(env, prefix), **QUIET, **extra}


def write_scripts(bench: Bench) -> None:
    """Write the slug files and the wrk scripts of every part into ``bench.files``."""
    f, c = bench.files, bench.args.connections
    hot = [*PATCHED, *[s for s in bench.slugs[:HOT_SLUGS] if s not in PATCHED]]
    soak = [*PATCHED, *bench.slugs]
    for name, slugs in (("slugs", bench.slugs), ("hot", hot), ("soak", soak)):
        (f / f"{name}.txt").write_text("\n".join(slugs) + "\n")
    scripts = {
        "walk": workloads.walk(ARTICLE_PATH, str(f / "slugs.txt"), IDLE_PATH, c),
        "walk_hot": workloads.walk(ARTICLE_PATH, str(f / "hot.txt"), IDLE_PATH, c),
        "anchor": workloads.zipf(ANCHOR_PATH, str(f / "slugs.txt")),
        "zipf": workloads.zipf(ARTICLE_PATH, str(f / "slugs.txt")),
        "zipf_hot": workloads.zipf(ARTICLE_PATH, str(f / "hot.txt")),
        "zipf_soak": workloads.zipf(ARTICLE_PATH, str(f / "soak.txt")),
        "patch": workloads.patch(ARTICLE_PATH, PATCHED, TOKEN),
    }
    for name, text in scripts.items():
        (f / f"{name}.lua").write_text(text)


def sweep(bench: Bench, server: Server, script: str) -> Measurement:
    """Request every slug of walk ``script`` once from ``server``; return the measurement."""
    started = time.monotonic()
    m = run_wrk(
        server, bench.files / f"{script}.lua", seconds=3600, connections=bench.args.connections
    )
    check_statuses(f"{server.name} {script}", m, {"200"})
    log(f"{server.name}: {script} sweep of {m.requests} requests in "
        f"{time.monotonic() - started:.0f} s ({m.caches})")  # fmt: skip
    return m


def load_and_size(bench: Bench, server: Server) -> None:
    """Load every article's entry through ``server`` (L1 off) and size the 1 % L1, once."""
    if bench.is_warm:
        return
    purge(server)
    sweep(bench, server, "walk")
    namespace = ContentKeys.from_scheme(KeyScheme(PREFIX)).article
    sample = random.Random(7).sample(bench.slugs, min(SIZE_SAMPLE, len(bench.slugs)))
    keys = [namespace.key(s).redis_key for s in sample]
    bench.entry_bytes, bench.entry_memory_bytes = entry_sizes(bench.env["REDIS_URL"], keys)
    bench.l1_max_bytes = l1_size_bytes(bench.entry_bytes, bench.l1_entries)
    bench.is_warm = True
    log(f"entries: mean STRLEN {bench.entry_bytes:.0f} B, MEMORY USAGE "
        f"{bench.entry_memory_bytes:.0f} B over a sample; CACHE_L1_MAX_BYTES="
        f"{bench.l1_max_bytes} ({bench.l1_entries} entries' worth)")  # fmt: skip


def machine_line(placement: str) -> str:
    """Return the results page's line on the machine, with ``placement`` of the processes."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"- machine: {os.cpu_count()} cores; {placement}; load average at the end {load}"


# --- 1. Zipfian hits --------------------------------------------------------------------------


def hits(bench: Bench, command: str) -> str:
    """Run the hits part; return its section of the results page."""
    args = bench.args
    env = bench.env
    with ExitStack() as stack:
        servers = {
            "constant": stack.enter_context(serve("constant", "benchmarks.anchors:constant", env,
                                                  cpu=0, ready_path="/a/x")),
            "redis_get": stack.enter_context(serve(
                "redis_get", "benchmarks.anchors:redis_get", {**env, "CACHE_PREFIX": PREFIX},
                cpu=0, ready_path="/a/x")),
            "l1_off": stack.enter_context(serve_service("l1_off", near_env(env, PREFIX, 0),
                                                        cpu=0, ready_path=IDLE_PATH)),
        }  # fmt: skip
        load_and_size(bench, servers["l1_off"])
        servers["l1_1pct"] = stack.enter_context(
            serve_service("l1_1pct", near_env(env, PREFIX, bench.l1_max_bytes), cpu=0,
                          ready_path=IDLE_PATH)
        )  # fmt: skip
        anchor = servers["redis_get"].base_url + ANCHOR_PATH + bench.slugs[0]
        if httpx.get(anchor).status_code != 200:
            raise RuntimeError(f"redis_get answered no entry for {bench.slugs[0]}")
        warm = run_wrk(servers["l1_1pct"], bench.files / "zipf.lua", seconds=L1_WARM_SECONDS,
                       connections=args.connections)  # fmt: skip
        log(f"l1_1pct warm-up: {warm.requests} requests, details {warm.details}")
        results = {spec.name: TargetResult(spec) for spec in HIT_TARGETS}
        for i in range(args.rounds):
            for name, result in results.items():
                if result.failure:
                    continue
                script = "anchor" if name in ("constant", "redis_get") else "zipf"
                try:
                    m = run_wrk(servers[name], bench.files / f"{script}.lua",
                                seconds=args.seconds, connections=args.connections)  # fmt: skip
                    check_statuses(name, m, {"200"})
                except MeasureError as exc:
                    result.failure = f"round {i + 1}: {exc}"
                    bench.failures.append(f"{name}: {result.failure}")
                    log(f"FAILED {name}: {exc}")
                    continue
                result.rounds.append(m)
                log(f"round {i + 1} {name}: {m.requests_per_second:.0f} req/s, p50 "
                    f"{m.p50_us / 1000:.2f} ms, {m.cpu_us_per_request:.0f} µs CPU/req, "
                    f"details {m.details}")  # fmt: skip
        l1_stats = stats_of(servers["l1_1pct"])
        l1 = l1_totals(l1_stats)
        rss = {n: servers[n].rss_bytes() for n in ("l1_off", "l1_1pct")}
    rows = summary_rows(results)
    notes = [
        f"CACHE_L1_MAX_BYTES of l1_1pct: {bench.l1_max_bytes:,} bytes = {bench.l1_entries:,}"
        f" entries x {bench.entry_bytes:,.0f} B, the mean STRLEN of {SIZE_SAMPLE:,} article"
        f" entries (mean MEMORY USAGE {bench.entry_memory_bytes:,.0f} B)",
        (
            f"l1_1pct's L1 after the rounds: {l1['entries']:,} entries, {l1['bytes']:,} bytes"
            f" (max_bytes {l1['max_bytes']:,}), {l1['evictions']:,} evictions"
            if "l1" in l1_stats
            else "l1_1pct's /stats has no `l1` object (bytes, entries)"
        )
        + f"; /stats cache.l1_hits {l1['l1_hits']:,}",
        f"worker RSS after the rounds: l1_off {rss['l1_off'] / MIB:.1f} MiB, l1_1pct"
        f" {rss['l1_1pct'] / MIB:.1f} MiB",
    ]
    text = "\n".join([text_table(rows), "", *notes])
    print(text, flush=True)
    return "\n".join([
        SECTIONS["hits"],
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `{command}`",
        machine_line("each server one uvicorn worker pinned to CPU 0 (the service's run by"
                     " `content-service serve`), wrk to CPU 1"),
        f"- rounds: {args.rounds} of {args.seconds} s per target, interleaved; wrk -t1"
        f" -c{args.connections}, Zipfian (θ = 0.99) over {len(bench.slugs):,} articles, every"
        f" entry loaded into Redis first; l1_1pct loaded for {L1_WARM_SECONDS} s of the same"
        " load before the rounds",
        "",
        "Medians over the rounds. ratio: req/s over redis_get's (goal of l1_1pct ≥ 2.0); CPU"
        " ratio: CPU per request over redis_get's. check: the share of answers with X-Cache"
        " HIT, and with Cache-Status detail=l1 (answered from the worker's L1).",
        "",
        markdown_table(rows),
        "",
        *(f"- {n}" for n in notes),
        *(f"- FAILED {r.spec.name}: {r.failure}" for r in results.values() if r.failure),
        "",
        *(f"- `{s.name}`: {s.description}" for s in HIT_TARGETS),
        "",
        "Every round:",
        "",
        markdown_table(round_rows(results)),
        "",
    ])  # fmt: skip


# --- 2. Write latency with 0 and 4 holders ----------------------------------------------------

ACK_WAIT = "content_cache_l1_ack_wait_seconds"
INVALIDATION = "content_cache_invalidation_seconds"


@dataclass(frozen=True)
class Cluster:
    """Two instances of two workers sharing a cache prefix."""

    name: str
    prefix: str
    instances: tuple[Server, ...]

    def pids(self) -> set[int]:
        """Return every worker's process id."""
        return {pid for s in self.instances for pid in s.worker_pids()}


@dataclass
class WriteResult:
    """Every round of one write target.

    Attributes:
        name: the target's name.
        cluster: ``w0`` or ``w4``.
        is_loaded: whether the holders answered reads meanwhile.
        holders: L1 holders listed in ``/stats`` before the rounds.
        rounds: the writes' measurement of each round.
        ack_waits: per round, ``(seconds, count)`` of the acknowledgement waits (``/metrics``).
        invalidations: per round, the writer instance's ``INVALIDATION`` buckets observed in
            it (cumulative counts by bound, seconds).
        reads: per round, the read loads' measurements (loaded targets only).
    """

    name: str
    cluster: str
    is_loaded: bool
    holders: int
    rounds: list[Measurement] = field(default_factory=list)
    ack_waits: list[tuple[float, float]] = field(default_factory=list)
    invalidations: list[dict[float, float]] = field(default_factory=list)
    reads: list[list[Measurement]] = field(default_factory=list)

    def median(self, figure: Any) -> float:
        """Return the median of ``figure(measurement)`` over the rounds (0 with none)."""
        return statistics.median(figure(m) for m in self.rounds) if self.rounds else 0.0

    def invalidation_ms(self, q: float) -> float | None:
        """Return the median over the rounds of the invalidations' ``q``-quantile, in ms."""
        figures = [v for b in self.invalidations if (v := bucket_quantile(b, q)) is not None]
        return statistics.median(figures) * 1000 if figures else None


def live_holders(redis_url: str, prefix: str) -> int:
    """Return how many near-cache holders of ``prefix`` hold a lease now, read from Redis.

    The leases are the sorted set ``KeyScheme(prefix).near_holders``, scored by their ends on
    Redis's clock in milliseconds (see :mod:`cache.bus`).
    """
    client = redis.Redis.from_url(redis_url)
    try:
        seconds, micros = client.time()
        now_ms = seconds * 1000 + micros // 1000
        return int(client.zcount(KeyScheme(prefix).near_holders, f"({now_ms}", "+inf"))
    finally:
        client.close()


def wait_for_holders(bench: Bench, cluster: Cluster, holders: int) -> dict[str, Any]:
    """Wait until ``/stats`` lists every worker of ``cluster`` and ``holders`` leases live.

    Returns:
        The last ``/stats`` document.

    Raises:
        RuntimeError: not within 60 seconds.
    """
    expected = cluster.pids()
    deadline = time.monotonic() + 60
    while True:
        stats = stats_of(cluster.instances[0])
        listed = {int(w["pid"]) for w in stats["db_pool"]["workers"]}
        live = live_holders(bench.env["REDIS_URL"], cluster.prefix)
        if listed == expected and live == holders:
            return stats
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{cluster.name}: /stats lists workers {sorted(listed)} and "
                f"{live} holders lease; expected {sorted(expected)}, {holders}"
            )
        time.sleep(0.5)


#: Attempts at starting one instance: a worker of ``serve --workers N`` that fails its startup
#: (see :func:`start_instance`) makes uvicorn stop the whole instance.
START_ATTEMPTS = 8


def start_instance(stack: ExitStack, name: str, env: dict[str, str], output: IO[bytes]) -> Server:
    """Start ``content-service serve --workers 2``; return it once every worker answers.

    Every worker must list itself in ``/stats`` (``db_pool.workers``) within 20 seconds: a
    worker that fails its startup makes uvicorn stop the instance after the first worker
    already answered. Such an instance is started again, up to :data:`START_ATTEMPTS` times.
    ``stack`` stops the instance that runs.

    Raises:
        RuntimeError: no attempt started every worker.
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        inner = ExitStack()
        try:
            served = serve_service(
                name, env, cpu=0, ready_path=IDLE_PATH, workers=WORKERS, output=output
            )
            server = inner.enter_context(served)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                time.sleep(0.5)
                pids = set(server.worker_pids())
                listed = {int(w["pid"]) for w in stats_of(server)["db_pool"]["workers"]}
                if len(pids) == WORKERS and pids <= listed:
                    stack.push(inner.pop_all())
                    return server
        except (RuntimeError, httpx.HTTPError) as exc:
            log(f"{name}: attempt {attempt} did not start: {exc}")
        finally:
            inner.close()
    raise RuntimeError(f"{name}: no worker set started in {START_ATTEMPTS} attempts")


@contextmanager
def cluster(bench: Bench, name: str, l1_max_bytes: int | None) -> Iterator[Cluster]:
    """Run :data:`INSTANCES` ``content-service serve --workers 2`` on one cache prefix."""
    prefix = f"{PREFIX}-{name}"
    env = near_env(bench.env, prefix, l1_max_bytes)
    with ExitStack() as stack:
        logs: IO[bytes] = stack.enter_context((bench.files / f"{name}.log").open("ab"))
        instances = tuple(start_instance(stack, f"{name}-{i}", env, logs) for i in range(INSTANCES))
        yield Cluster(name, prefix, instances)


def background_reads(bench: Bench, servers: Sequence[Server], seconds: int) -> list[Any]:
    """Start one wrk of Zipfian reads of the hot set per server (CPU 1); return the processes."""
    script = str(bench.files / "zipf_hot.lua")
    head = ["wrk", "-t1", f"-c{READ_LOAD_CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s"]
    commands = [pinned(1, [*head, "-s", script, s.base_url]) for s in servers]
    pipe = subprocess.PIPE
    return [subprocess.Popen(c, stdout=pipe, stderr=pipe, text=True) for c in commands]


def write_round(bench: Bench, c: Cluster, result: WriteResult) -> Measurement:
    """Run one round of ``result``'s target on ``c``; keep and return the writes' figures.

    Raises:
        MeasureError: a write or a read answered other than 200, or wrk failed.
    """
    writer = c.instances[0]
    seconds = bench.args.write_seconds
    metrics = httpx.get(writer.base_url + "/metrics").text
    before = histogram_totals(metrics, ACK_WAIT)
    buckets_before = histogram_buckets(metrics, INVALIDATION)
    loads = background_reads(bench, c.instances, seconds + 2) if result.is_loaded else []
    if loads:
        time.sleep(1)
    m = run_wrk(writer, bench.files / "patch.lua", seconds=seconds, connections=1)
    reads = []
    for proc in loads:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise MeasureError(f"read load: wrk exited with {proc.returncode}:\n{out}{err}")
        reads.append(parse(out, 0.0))
        check_statuses(f"{result.name} reads", reads[-1], {"200"})
    metrics = httpx.get(writer.base_url + "/metrics").text
    after = histogram_totals(metrics, ACK_WAIT)
    check_statuses(result.name, m, {"200"})
    result.rounds.append(m)
    result.ack_waits.append((after[0] - before[0], after[1] - before[1]))
    buckets = histogram_buckets(metrics, INVALIDATION)
    result.invalidations.append({b: n - buckets_before.get(b, 0.0) for b, n in buckets.items()})
    result.reads.append(reads)
    return m


def write_rows(results: Sequence[WriteResult]) -> list[list[str]]:
    """Return the write table's rows, header first."""
    rows = [[
        "target", "holders", "reads meanwhile", "writes/s", "p50 ms", "p99 ms", "p99.9 ms",
        "CPU µs/write", "waits/write", "wait ms", "invalidation p50 ms", "invalidation p99 ms",
        "reads req/s", "reads from L1",
    ]]  # fmt: skip
    for r in results:
        if not r.rounds:
            rows.append([r.name, str(r.holders), "", "FAILED", *[""] * 10])
            continue
        waits = [s / n * 1000 for s, n in r.ack_waits if n]
        waited = [n / m.requests for (_, n), m in zip(r.ack_waits, r.rounds, strict=True)]
        reads = [sum(m.requests_per_second for m in rs) for rs in r.reads if rs]
        shares = [sum(m.details.get("l1", 0) for m in rs) / max(1, sum(m.requests for m in rs))
                  for rs in r.reads if rs]  # fmt: skip
        rows.append([
            r.name, str(r.holders), "yes" if r.is_loaded else "no",
            f"{r.median(lambda m: m.requests_per_second):.0f}",
            f"{r.median(lambda m: m.p50_us) / 1000:.2f}",
            f"{r.median(lambda m: m.p99_us) / 1000:.2f}",
            f"{r.median(lambda m: m.p999_us) / 1000:.2f}",
            f"{r.median(lambda m: m.cpu_us_per_request):.0f}",
            f"{statistics.median(waited):.2f}" if r.ack_waits else "",
            f"{statistics.median(waits):.2f}" if waits else "-",
            *(f"{v:.2f}" if (v := r.invalidation_ms(q)) is not None else "-" for q in (0.5, 0.99)),
            f"{statistics.median(reads):.0f}" if reads else "",
            f"{statistics.median(shares):.1%}" if shares else "",
        ])  # fmt: skip
    return rows


def write_findings(results: Mapping[str, WriteResult]) -> list[str]:
    """Return the lines that compare 4 holders with 0 (idle, and under reads when measured).

    Two measures: the client's latency (its p99 over the rounds, a figure this machine's
    writes make noisy: the spread of ``w0``'s p99 over the rounds is given beside it), and the
    writer's invalidations (script to last acknowledgement, :data:`INVALIDATION`), within which
    a write waits for the holders: the goal is judged on the second, and is "not measured"
    when its histogram is missing.
    """
    lines = []
    for load in ("idle", "loaded"):
        w0, w4 = results.get(f"w0_{load}"), results.get(f"w4_{load}")
        if w0 is None or w4 is None or not w0.rounds or not w4.rounds:
            continue
        added = {
            p: (w4.median(f) - w0.median(f)) / 1000
            for p, f in (("p50", lambda m: m.p50_us), ("p99", lambda m: m.p99_us),
                         ("p99.9", lambda m: m.p999_us))
        }  # fmt: skip
        spread = [m.p99_us / 1000 for m in w0.rounds]
        lines.append(
            f"w4_{load} - w0_{load}: "
            + ", ".join(f"{v:+.2f} ms {p}" for p, v in added.items())
            + f" (w0_{load}'s p99 over the rounds: {min(spread):.2f} to {max(spread):.2f} ms)"
        )
        invalidation = {p: (w4.invalidation_ms(q), w0.invalidation_ms(q))
                        for p, q in (("p50", 0.5), ("p99", 0.99))}  # fmt: skip
        if any(a is None or b is None for a, b in invalidation.values()):
            if load == "idle":
                lines.append("invalidation, w4_idle - w0_idle: not measured (goal: not judged)")
            continue
        diff = {p: a - b for p, (a, b) in invalidation.items() if a is not None and b is not None}
        line = f"invalidation, w4_{load} - w0_{load}: " + ", ".join(
            f"{v:+.2f} ms {p}" for p, v in diff.items()
        )
        if load == "idle":
            met = "met" if diff["p99"] <= WRITE_GOAL_MS else "NOT met"
            line += f" (goal: p99 +≤ {WRITE_GOAL_MS:g} ms with 4 holders: {met})"
        lines.append(line)
    return lines


def writes(bench: Bench, command: str) -> str:
    """Run the writes part; return its section of the results page."""
    args = bench.args
    with ExitStack() as stack:
        clusters = {
            "w0": stack.enter_context(cluster(bench, "w0", 0)),
            "w4": stack.enter_context(cluster(bench, "w4", None)),
        }
        holders = {"w0": 0, "w4": INSTANCES * WORKERS}
        for name, c in clusters.items():
            wait_for_holders(bench, c, holders[name])
            ensure_patched(c.instances[0], bench.author)
            purge(c.instances[0])
            sweep(bench, c.instances[0], "walk_hot")
        results = {name: WriteResult(name, cl, loaded, holders[cl])
                   for name, cl, loaded in WRITE_TARGETS}  # fmt: skip
        for i in range(args.write_rounds):
            for name, result in results.items():
                if name in bench.failures:
                    continue
                try:
                    m = write_round(bench, clusters[result.cluster], result)
                except (MeasureError, httpx.HTTPError) as exc:
                    bench.failures.append(name)
                    log(f"FAILED {name}: {exc}")
                    continue
                log(f"round {i + 1} {name}: {m.requests_per_second:.0f} writes/s, p50 "
                    f"{m.p50_us / 1000:.2f} ms, p99 {m.p99_us / 1000:.2f} ms, ack waits "
                    f"{result.ack_waits[-1]}")  # fmt: skip
        for name, c in clusters.items():
            wait_for_holders(bench, c, holders[name])  # every holder still live
            purge(c.instances[0])
    rows = write_rows(list(results.values()))
    findings = write_findings(results)
    default_l1 = Settings.model_fields["cache_l1_max_bytes"].default
    print(text_table(rows), "", *findings, sep="\n", flush=True)
    return "\n".join([
        SECTIONS["writes"],
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `{command}`",
        machine_line(f"{INSTANCES} x `content-service serve --workers {WORKERS}` per cluster,"
                     " every worker pinned to CPU 0, every wrk to CPU 1"),
        f"- rounds: {args.write_rounds} of {args.write_seconds} s per target, interleaved;"
        " writes: wrk -t1"
        f" -c1 PATCH of {len(PATCHED)} articles in turn to the first instance; reads"
        f" meanwhile: one wrk -c{READ_LOAD_CONNECTIONS} per instance, Zipfian over"
        f" {HOT_SLUGS:,} hot articles (the patched ones hottest), loaded into Redis first",
        f"- w0: CACHE_L1_MAX_BYTES=0 on every worker; w4: the default ({default_l1:,} bytes)"
        " on every worker, each one L1 holder",
        "",
        "Medians over the rounds, latency measured by the client. waits/write: the writer"
        f" instance's `{ACK_WAIT}` observations per write (an invalidation is observed when an"
        " acknowledgement was still due once Redis replied; a PATCH may invalidate more than"
        " once); wait ms: their mean (sum over count). invalidation p50/p99: of the writer"
        f" instance's `{INVALIDATION}` (every invalidation message its workers published, the"
        " writes' and their outbox replays', from before the invalidation's script ran to the"
        " last acknowledgement), interpolated in its buckets per round: a write's wait for the"
        " holders lies within it, and it varies less than the client's latency, so the goal is"
        " judged on its p99 (the spread of w0's p99 over the rounds is given below).",
        "",
        markdown_table(rows),
        "",
        *(f"- {line}" for line in findings),
        *(f"- FAILED {n}" for n in results if n in bench.failures),
        "",
    ])  # fmt: skip


# --- 3. Soak ----------------------------------------------------------------------------------


@dataclass
class SoakRun:
    """What one soak load measured: reads, samples, writes."""

    reads: Measurement
    samples: list[Sample]
    write_ms: list[float]
    write_failures: list[str]


def write_steadily(server: Server, stop: threading.Event, run: SoakRun) -> None:
    """PATCH the patched articles in turn every :data:`SOAK_WRITE_SECONDS` until ``stop``."""
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as client:
        n = 0
        while not stop.wait(SOAK_WRITE_SECONDS):
            n += 1
            started = time.perf_counter()
            try:
                r = client.patch(ARTICLE_PATH + PATCHED[n % len(PATCHED)],
                                 json={"title": f"Soak {n}"})  # fmt: skip
            except httpx.HTTPError as exc:
                run.write_failures.append(repr(exc))
                continue
            run.write_ms.append((time.perf_counter() - started) * 1000)
            if r.status_code != 200:
                run.write_failures.append(f"{r.status_code}: {r.text[:200]}")


def soak_load(bench: Bench, server: Server, seconds: int, *, is_sampled: bool) -> SoakRun:
    """Load ``server`` with Zipfian reads and steady writes for ``seconds``; sample it.

    Raises:
        MeasureError: wrk failed, or a read answered other than 200.
    """
    command = pinned(1, [
        "wrk", "-t1", f"-c{bench.args.connections}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(bench.files / "zipf_soak.lua"), server.base_url,
    ])  # fmt: skip
    run = SoakRun(Measurement(0, 0.0, 0, 0, 0, 0.0, 0), [], [], [])
    stop = threading.Event()
    writer = threading.Thread(target=write_steadily, args=(server, stop, run))
    cpu_before = server.cpu_seconds()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    writer.start()
    try:
        k = 1
        while proc.poll() is None:
            try:
                proc.wait(max(0.0, started + k * SAMPLE_SECONDS - time.monotonic()))
            except subprocess.TimeoutExpired:
                if is_sampled:
                    try:
                        sample = read_sample(stats_of(server), time.monotonic() - started)
                    except (httpx.HTTPError, RuntimeError, OSError) as exc:
                        log(f"sample at {k * SAMPLE_SECONDS} s failed: {exc}")
                    else:
                        run.samples.append(sample)
                        if k % 6 == 0:
                            log(
                                f"soak {sample.seconds:.0f} s: RSS {sample.rss_bytes / MIB:.1f}"
                                f" MiB, L1 {sample.l1_bytes:,} B, {sample.l1_entries} entries"
                            )
            k += 1
        out, err = proc.communicate()
    finally:
        stop.set()
        writer.join()
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
    if proc.returncode != 0:
        raise MeasureError(f"wrk exited with {proc.returncode}:\n{out}{err}")
    run.reads = parse(out, server.cpu_seconds() - cpu_before)
    check_statuses(f"{server.name} reads", run.reads, {"200"})
    return run


def soak(bench: Bench, command: str) -> str:
    """Run the soak part; return its section of the results page."""
    args = bench.args
    env = bench.env
    baseline_seconds = min(BASELINE_SECONDS, args.soak_seconds)
    with serve("soak_l1_off", "service.app:create_app", near_env(env, PREFIX, 0), cpu=0,
               ready_path=IDLE_PATH) as off:  # fmt: skip
        load_and_size(bench, off)
        ensure_patched(off, bench.author)
        log(f"soak baseline: L1 off for {baseline_seconds} s")
        baseline = soak_load(bench, off, baseline_seconds, is_sampled=False)
        baseline_rss = off.rss_bytes()
    max_bytes = bench.l1_max_bytes
    with serve("soak_l1", "service.app:create_app", near_env(env, PREFIX, max_bytes), cpu=0,
               ready_path=IDLE_PATH) as server:  # fmt: skip
        log(f"soak: CACHE_L1_MAX_BYTES={max_bytes} for {args.soak_seconds} s")
        run = soak_load(bench, server, args.soak_seconds, is_sampled=True)
    overhead = l1_overhead_bytes(max_bytes, max((s.l1_entries for s in run.samples), default=0))
    bound = baseline_rss + int(RSS_BOUND_FACTOR * max_bytes)
    SVG_PATH.write_text(plot_svg(run.samples, max_bytes, bound))
    findings = soak_findings(run, baseline, baseline_rss, max_bytes, bound)
    print(*findings, sep="\n", flush=True)
    if run.write_failures:
        bench.failures.append(f"soak writes: {run.write_failures[:3]}")
    return "\n".join([
        SECTIONS["soak"],
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `{command}`",
        machine_line("one uvicorn worker pinned to CPU 0, wrk to CPU 1"),
        f"- load: wrk -t1 -c{args.connections} Zipfian (θ = 0.99) over {len(bench.slugs):,}"
        f" articles plus the {len(PATCHED)} patched ones (hottest), and one PATCH every"
        f" {SOAK_WRITE_SECONDS:g} s of a patched article, for {args.soak_seconds} s;"
        f" CACHE_L1_MAX_BYTES={max_bytes:,} ({bench.l1_entries:,} entries' worth); a sample"
        f" every {SAMPLE_SECONDS} s",
        f"- bound drawn, as docs/near-cache.md documents it: RSS of a worker with L1 off after"
        f" {baseline_seconds} s of the same load ({baseline_rss / MIB:.1f} MiB) +"
        f" {RSS_BOUND_FACTOR:g} x CACHE_L1_MAX_BYTES (each entry counted with"
        f" {ENTRY_OVERHEAD_BYTES} B of overhead, cache.near.ENTRY_OVERHEAD_BYTES; the rest for"
        f" the keys the L1 keeps uncounted, about {overhead:,} bytes at"
        f" {L1_KEY_BOOKKEEPING_BYTES} B a key, and the allocator's gaps) = {bound / MIB:.1f} MiB",
        "",
        *(f"- {line}" for line in findings),
        "",
        f"![RSS and L1 bytes over the soak]({SVG_PATH.name})",
        "",
        markdown_table(table_rows(every(run.samples, 60))),
        "",
        "<details><summary>Every sample</summary>",
        "",
        markdown_table(table_rows(run.samples)),
        "",
        "</details>",
        "",
    ])  # fmt: skip


def soak_findings(
    run: SoakRun, baseline: SoakRun, baseline_rss: int, max_bytes: int, bound: int
) -> list[str]:
    """Return the soak's summary lines."""
    r, samples = run.reads, run.samples
    lines = [
        f"reads: {r.requests:,} in {r.seconds:.0f} s ({r.requests_per_second:,.0f} req/s; L1 off"
        f" baseline {baseline.reads.requests_per_second:,.0f}), p50 {r.p50_us / 1000:.2f} ms,"
        f" p99 {r.p99_us / 1000:.2f} ms, {r.cpu_us_per_request:.0f} µs CPU/req, answered from"
        f" L1 {r.share(r.details, 'l1'):.1%}",
    ]
    if run.write_ms:
        ms = sorted(run.write_ms)
        lines.append(
            f"writes: {len(ms)}, p50 {statistics.median(ms):.2f} ms, max {ms[-1]:.2f} ms,"
            f" {len(run.write_failures)} failed"
        )
    if samples:
        rss = [s.rss_bytes for s in samples]
        rss_met = "met" if max(rss) <= bound else "NOT met"
        lines.append(
            f"RSS: first sample {rss[0] / MIB:.1f} MiB, last {rss[-1] / MIB:.1f} MiB, max"
            f" {max(rss) / MIB:.1f} MiB (bound {bound / MIB:.1f} MiB: {rss_met}); slope over"
            f" the second half {rss_slope_mib_per_hour(samples):+.2f} MiB per hour"
        )
    reported = [s for s in samples if s.has_l1]
    if reported:
        l1 = [s.l1_bytes for s in reported]
        entries = [s.l1_entries for s in reported]
        l1_met = "met" if max(l1) <= max_bytes else "NOT met"
        lines.append(
            f"L1: max {max(l1):,} bytes (CACHE_L1_MAX_BYTES {max_bytes:,}: {l1_met}), entries"
            f" {min(entries):,} to {max(entries):,}, {reported[-1].l1_evictions:,} evictions"
        )
    elif samples:
        lines.append("L1: /stats reported no `l1` object: its bytes and entries are unknown")
    return lines


PART_RUNNERS = {"hits": hits, "writes": writes, "soak": soak}


def purge_prefixes(redis_url: str) -> None:
    """Delete every key of the prefixes used here (give the Redis memory back)."""
    client = redis.Redis.from_url(redis_url)
    try:
        for pattern in (f"{PREFIX}:*", f"{PREFIX}-*"):
            batch = []
            for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) == 1000:
                    client.unlink(*batch)
                    batch.clear()
            if batch:
                client.unlink(*batch)
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    """Run the parts, print and write their figures; return the exit status."""
    args = options(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    command = shlex.join(["python", "-m", "benchmarks.near", *(argv or sys.argv[1:])])
    with database_servers(dict(os.environ)) as env, ExitStack() as stack:
        slugs = ensure_data(env, args.articles)
        files = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="content-near-")))
        author = asyncio.run(first_author(asyncpg_dsn(env["DATABASE_URL"])))
        bench = Bench(args, env, files, slugs, author)
        write_scripts(bench)
        try:
            for part in args.parts:
                log(f"part {part}")
                try:
                    text = PART_RUNNERS[part](bench, command)
                except (MeasureError, RuntimeError, httpx.HTTPError) as exc:
                    bench.failures.append(f"{part}: {exc}")
                    log(f"FAILED {part}: {exc}")
                    for served in sorted(files.glob("*.log")):
                        tail = served.read_text(errors="replace").splitlines()[-20:]
                        log(f"the last lines of {served.name}:\n" + "\n".join(tail))
                    continue
                write_section(args.output, SECTIONS[part], text)
                log(f"section {SECTIONS[part]!r} written to {args.output}")
        finally:
            purge_prefixes(env["REDIS_URL"])
    for failure in bench.failures:
        print(f"FAILED {failure}")
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
