"""The benchmark: the service's hits, misses and writes side by side with their anchors.

Every server is one uvicorn worker (uvloop, httptools, no access log) pinned to CPU 0; wrk
(Debian package ``wrk``) loads it from CPU 1 with one thread. The targets are measured in
interleaved rounds (round 1: every target; round 2: every target; ...), so that the noise of a
shared machine falls on all of them alike; compare the ratios of one run, not figures across
runs. Results go to stdout and to a Markdown page (``benchmarks/results.md`` by default).

Targets (declared in :mod:`benchmarks.targets`): ``constant``, ``redis_get`` and ``asyncpg``
are anchors driven by the same Zipfian script over the same slugs as ``hit_zipf``; ``hit_*``
and ``revalidate_304`` hit a service whose article entries were all loaded first
(``hit_tracked`` and ``hit_untracked``: two more workers on the same entries, alike but
for hot-key tracking, on and off); ``miss``
sweeps a second service worker (its own cache prefix) that is purged before each round;
``post`` and ``patch`` write through the first service at one connection.

Data: ``--articles`` published articles with bodies of 2 to 8 KB, seeded with ``content-service
seed`` when the database holds fewer. Servers come from ``DATABASE_URL`` and ``REDIS_URL``, or
embedded ones when both are unset.

Usage::

    .venv/bin/python -m benchmarks.run [--rounds 3] [--seconds 10] [--articles 100000]
        [--connections 64] [--only hit_zipf,redis_get] [--output benchmarks/results.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from benchmarks import workloads
from benchmarks.anchors import asyncpg_dsn
from benchmarks.measure import MeasureError, Measurement, check_statuses, run_wrk
from benchmarks.report import (
    TargetResult,
    headline_ratios,
    markdown_table,
    round_rows,
    summary_rows,
    text_table,
)
from benchmarks.servers import Server, serve
from benchmarks.targets import SPECS

TOKEN = "bench-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PREFIX = "bench"
MISS_PREFIX = "bench-miss"
BODY_BYTES = (2048, 8192)
ETAG_SAMPLE = 1000
PATCHED = [f"bench-patch-{i}" for i in range(1, 9)]
ARTICLE_PATH = "/api/v1/articles/"
ANCHOR_PATH = "/a/"
IDLE_PATH = "/health/live"
SEEDED = (
    "slug LIKE 'article-%' AND status = 'published' AND published_at <= now()"
    " AND octet_length(body) BETWEEN $1 AND $2"
)
#: Settings of both service workers: entries outlive the run, so hits stay hits.
SERVICE_SETTINGS = {"CACHE_TTL_SECONDS": "86400", "API_TOKENS": f"{TOKEN}:admin"}


@dataclass
class Bench:
    """What the rounds need: options, environment, files and running servers."""

    args: argparse.Namespace
    env: dict[str, str]
    files: Path
    servers: dict[str, Server]
    slug_count: int = 0
    warm_rss_bytes: int = 0
    miss_rss_bytes: int = 0
    miss_keys: int = 0


def log(message: str) -> None:
    """Print a progress line to stderr (stdout holds the results)."""
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def options(argv: list[str] | None) -> argparse.Namespace:
    """Return the parsed command line."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.splitlines()[0]
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--seconds", type=int, default=10, help="seconds per target per round")
    p.add_argument("--articles", type=int, default=100_000, help="seeded articles (N)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (-c)")
    p.add_argument("--only", default="", help="comma-separated targets (default: all)")
    p.add_argument("--output", type=Path, default=Path(__file__).with_name("results.md"))
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(SPECS)
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        p.error(f"unknown targets {unknown}; known: {', '.join(SPECS)}")
    args.targets = [n for n in SPECS if n in names]
    return args


def service_env(env: dict[str, str], prefix: str) -> dict[str, str]:
    """Return the environment of a service worker whose keys start with ``prefix``."""
    return {**env, **SERVICE_SETTINGS, "CACHE_PREFIX": prefix}


async def _count_seeded(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(f"SELECT count(*) FROM articles WHERE {SEEDED}", *BODY_BYTES)
        )
    finally:
        await conn.close()


async def _prepare_rows(dsn: str, n: int) -> list[str]:
    """Drop earlier runs' posted articles; return the first ``n`` seeded slugs by id."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM articles WHERE slug LIKE 'bench-post-%'")
        rows = await conn.fetch(
            f"SELECT slug FROM articles WHERE {SEEDED} ORDER BY id LIMIT {int(n)}", *BODY_BYTES
        )
        return [r["slug"] for r in rows]
    finally:
        await conn.close()


def ensure_data(env: dict[str, str], n: int) -> list[str]:
    """Migrate, seed until ``n`` published articles with 2-8 KB bodies exist, return their slugs.

    The slugs come in a fixed pseudo-random order: the rank order of the Zipfian scripts.
    """
    python = [sys.executable, "-m", "service"]
    seed_env = service_env(env, PREFIX)
    migrated = subprocess.run([*python, "migrate"], env=seed_env, capture_output=True, text=True)
    if migrated.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{migrated.stdout}{migrated.stderr}")
    dsn = asyncpg_dsn(env["DATABASE_URL"])
    for _ in range(5):
        have = asyncio.run(_count_seeded(dsn))
        if have >= n:
            break
        # About 90 % of seeded articles are published; ask for enough to cover the rest.
        more = int((n - have) / 0.85) + 100
        log(f"{have} seeded articles, {n} wanted: seeding {more}")
        sizes = f"{BODY_BYTES[0]}-{BODY_BYTES[1]}"
        subprocess.run(
            [*python, "seed", "--articles", str(more), "--body-bytes", sizes],
            env=seed_env, check=True, stdout=sys.stderr,
        )  # fmt: skip
    slugs = asyncio.run(_prepare_rows(dsn, n))
    if len(slugs) < n:
        raise RuntimeError(f"only {len(slugs)} of {n} articles after seeding")
    random.Random(20101).shuffle(slugs)
    return slugs


def purge(server: Server) -> None:
    """Purge every namespace of ``server``'s cache.

    Raises:
        RuntimeError: the service did not answer 200.
    """
    r = httpx.post(
        server.base_url + "/admin/cache/purge", json={"namespace": "all"}, headers=AUTH, timeout=60
    )
    if r.status_code != 200:
        raise RuntimeError(f"purge of {server.name} answered {r.status_code}: {r.text}")


def sweep(bench: Bench, server: Server, script: str, name: str) -> Measurement:
    """Request every article once from ``server`` with walk ``script``; return the measurement.

    Raises:
        MeasureError: errors, or a status other than 200.
    """
    m = run_wrk(
        server, bench.files / f"{script}.lua", seconds=3600, connections=bench.args.connections
    )
    check_statuses(name, m, {"200"})
    return m


def ensure_patched(server: Server, author: str) -> None:
    """Create the articles that ``patch`` edits, when they are missing."""
    for slug in PATCHED:
        if httpx.get(server.base_url + ARTICLE_PATH + slug).status_code == 404:
            doc = {"title": slug, "slug": slug, "body": "patched " * 500, "author": author,
                   "status": "published"}  # fmt: skip
            r = httpx.post(server.base_url + ARTICLE_PATH.rstrip("/"), json=doc, headers=AUTH)
            if r.status_code not in (201, 409):
                raise RuntimeError(f"could not create {slug}: {r.status_code} {r.text}")


def write_scripts(bench: Bench, slugs: list[str], author: str) -> None:
    """Write the slugs file and every target's Lua script into ``bench.files``."""
    f = bench.files
    (f / "slugs.txt").write_text("\n".join(slugs) + "\n")
    s = str(f / "slugs.txt")
    c = bench.args.connections
    run_id = f"{int(time.time())}"
    post_doc = {"title": "Benchmark post", "body": "benchmark " * 500, "author": author,
                "status": "published"}  # fmt: skip
    scripts = {
        "walk": workloads.walk(ARTICLE_PATH, s, IDLE_PATH, c),
        "walk_gzip": workloads.walk(ARTICLE_PATH, s, IDLE_PATH, c, {"Accept-Encoding": "gzip"}),
        "constant": workloads.zipf(ANCHOR_PATH, s),
        "redis_get": workloads.zipf(ANCHOR_PATH, s),
        "asyncpg": workloads.zipf(ANCHOR_PATH, s),
        "asyncpg_uniform": workloads.uniform(ANCHOR_PATH, s),
        "hit_zipf": workloads.zipf(ARTICLE_PATH, s),
        "hit_uniform": workloads.uniform(ARTICLE_PATH, s),
        "hit_tracked": workloads.zipf(ARTICLE_PATH, s),
        "hit_untracked": workloads.zipf(ARTICLE_PATH, s),
        "hit_gzip": workloads.zipf(ARTICLE_PATH, s, {"Accept-Encoding": "gzip"}),
        "revalidate_304": workloads.revalidate(ARTICLE_PATH, str(f / "etags.txt")),
        "miss": workloads.walk(ARTICLE_PATH, s, IDLE_PATH, c),
        "post": workloads.post(ARTICLE_PATH.rstrip("/"), f"bench-post-{run_id}", post_doc, TOKEN),
        "patch": workloads.patch(ARTICLE_PATH, PATCHED, TOKEN),
    }
    for name, text in scripts.items():
        (f / f"{name}.lua").write_text(text)


def collect_etags(server: Server, slugs: list[str], path: Path) -> None:
    """Write ``slug etag`` lines for the hottest ranks, read from ``server`` (identity coding).

    Raises:
        RuntimeError: an article did not answer 200 with an ETag.
    """
    lines = []
    with httpx.Client(base_url=server.base_url, headers={"Accept-Encoding": "identity"}) as c:
        for slug in slugs[:ETAG_SAMPLE]:
            r = c.get(ARTICLE_PATH + slug)
            if r.status_code != 200 or "etag" not in r.headers:
                raise RuntimeError(f"{slug}: {r.status_code} without an ETag")
            lines.append(f"{slug} {r.headers['etag']}")
    path.write_text("\n".join(lines) + "\n")


def warm(bench: Bench, slugs: list[str]) -> None:
    """Load every article into the service's cache and check what the anchors answer."""
    service = bench.servers["service"]
    purge(service)
    started = time.monotonic()
    m = sweep(bench, service, "walk", "warm-up")
    bench.warm_rss_bytes = service.rss_bytes()
    log(f"warm-up: {m.requests} requests in {time.monotonic() - started:.1f} s "
        f"({m.caches}); worker RSS {bench.warm_rss_bytes / 2**20:.0f} MiB")  # fmt: skip
    hot = service.base_url + ARTICLE_PATH + slugs[0]
    gzip = {"Accept-Encoding": "gzip"}
    cache_state = httpx.get(hot, headers=gzip).headers.get("x-cache")
    if "hit_gzip" in bench.args.targets and cache_state not in ("HIT", None):
        log(f"a warm article answered gzip with X-Cache {cache_state}: warming gzip too")
        sweep(bench, service, "walk_gzip", "gzip warm-up")
    collect_etags(service, slugs, bench.files / "etags.txt")
    for name in ("redis_get", "asyncpg"):
        if name in bench.servers:
            r = httpx.get(bench.servers[name].base_url + ANCHOR_PATH + slugs[0])
            if r.status_code != 200:
                raise RuntimeError(f"{name} answered {r.status_code} for {slugs[0]}")


def run_target(bench: Bench, name: str, round_number: int) -> Measurement:
    """Run round ``round_number`` of target ``name`` and return its measurement.

    Raises:
        MeasureError: errors, or statuses the target must not answer.
    """
    server = bench.servers[SPECS[name].server]
    connections = SPECS[name].connections or bench.args.connections
    if name == "miss":
        purge(server)
    m = run_wrk(server, bench.files / f"{name}.lua", seconds=bench.args.seconds,
                connections=connections, script_args=(str(round_number),))  # fmt: skip
    if name == "miss":
        bench.miss_rss_bytes = server.rss_bytes()
        bench.miss_keys += m.caches.get("MISS", 0)
        if m.requests >= bench.slug_count:
            log(f"miss: the {bench.slug_count} slugs ran out before {bench.args.seconds} s")
    check_statuses(name, m, set(SPECS[name].statuses))
    return m


@contextmanager
def database_servers(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Yield ``env`` with both URLs: the given ones, or embedded servers' when both are unset.

    Embedded servers keep their data under a temporary folder, removed when they stop.
    """
    if env.get("DATABASE_URL") and env.get("REDIS_URL"):
        yield env
        return
    if env.get("DATABASE_URL") or env.get("REDIS_URL"):
        raise SystemExit("set both DATABASE_URL and REDIS_URL, or neither (embedded servers)")
    from service import embedded

    data_dir = Path(tempfile.mkdtemp(prefix="content-bench-"))
    try:
        servers = embedded.start(data_dir)
        try:
            yield {**env, "DATABASE_URL": servers.database_url, "REDIS_URL": servers.redis_url}
        finally:
            servers.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def start_servers(stack: ExitStack, env: dict[str, str], targets: list[str]) -> dict[str, Server]:
    """Start the servers that ``targets`` need; the stack stops them."""
    needed = {SPECS[t].server for t in targets}
    if needed & {"redis_get", "service_tracked", "service_untracked"}:
        needed.add("service")  # the entries they read are the service's
    factories: dict[str, tuple[str, dict[str, str], str]] = {
        "constant": ("benchmarks.anchors:constant", env, "/a/x"),
        "redis_get": ("benchmarks.anchors:redis_get", {**env, "CACHE_PREFIX": PREFIX}, "/a/x"),
        "asyncpg": ("benchmarks.anchors:asyncpg_article", env, "/a/x"),
        "service": ("service.app:create_app", service_env(env, PREFIX), IDLE_PATH),
        "service_tracked": ("service.app:create_app", service_env(env, PREFIX), IDLE_PATH),
        "service_untracked": (
            "service.app:create_app",
            {**service_env(env, PREFIX), "CACHE_HOT_KEYS_SAMPLE_RATE": "0"},
            IDLE_PATH,
        ),
        "service_miss": ("service.app:create_app", service_env(env, MISS_PREFIX), IDLE_PATH),
    }
    servers = {}
    for name, (factory, server_env, ready) in factories.items():
        if name in needed:
            servers[name] = stack.enter_context(
                serve(name, factory, server_env, cpu=0, ready_path=ready)
            )
    return servers


def measure_all(bench: Bench, on_round: Callable[[int], None]) -> dict[str, TargetResult]:
    """Run the interleaved rounds; a target that fails is reported and not run again."""
    results = {name: TargetResult(SPECS[name]) for name in bench.args.targets}
    for i in range(bench.args.rounds):
        for name, result in results.items():
            if result.failure:
                continue
            try:
                result.rounds.append(run_target(bench, name, i + 1))
            except (MeasureError, RuntimeError, httpx.HTTPError) as exc:
                result.failure = f"round {i + 1}: {exc}"
                log(f"FAILED {name}: {exc}")
            else:
                m = result.rounds[-1]
                log(
                    f"round {i + 1} {name}: {m.requests_per_second:.0f} req/s, "
                    f"p50 {m.p50_us / 1000:.2f} ms, {m.cpu_us_per_request:.0f} µs CPU/req"
                )
        on_round(i + 1)
    return results


def render(bench: Bench, results: dict[str, TargetResult], command: str) -> tuple[str, str]:
    """Return the stdout text and the Markdown page of ``results``."""
    summary = summary_rows(results)
    notes = []
    if bench.warm_rss_bytes:
        notes.append(f"service worker RSS after the {bench.slug_count}-key warm-up sweep: "
                     f"{bench.warm_rss_bytes / 2**20:.1f} MiB")  # fmt: skip
    if bench.miss_rss_bytes:
        notes.append(f"miss worker RSS after its sweeps ({bench.miss_keys} keys loaded): "
                     f"{bench.miss_rss_bytes / 2**20:.1f} MiB")  # fmt: skip
    failures = [f"{name}: {r.failure}" for name, r in results.items() if r.failure]
    ratios = headline_ratios(results)
    text = "\n".join(
        [text_table(summary), "", *ratios, "", *notes, *(f"FAILED {f}" for f in failures)]
    )
    a = bench.args
    settings = ", ".join(f"{k}={v}" for k, v in SERVICE_SETTINGS.items() if k != "API_TOKENS")
    page = [
        "# Benchmark results",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `{command}`",
        f"- machine: {os.cpu_count()} cores; servers pinned to CPU 0, wrk to CPU 1; load average "
        f"at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)",
        f"- rounds: {a.rounds} of {a.seconds} s per target, wrk -t1 -c{a.connections} "
        "(post and patch: -c1)",
        f"- data: {bench.slug_count} published articles, bodies of "
        f"{BODY_BYTES[0]} to {BODY_BYTES[1]} bytes; ETags of the {ETAG_SAMPLE} hottest for "
        "revalidate_304",
        f"- service settings: {settings}",
        "",
        "Medians over the rounds. ratio: req/s over the anchor's; CPU ratio: CPU per request "
        "over the anchor's. check: the share of answers that were HIT, MISS, 304 or gzip. "
        "On a shared machine CPU per request is the steadier figure: req/s falls whenever "
        "another process takes CPU 0 or CPU 1.",
        "",
        markdown_table(summary),
        "",
        *(f"- {r}" for r in ratios),
        "",
        *(f"- {n}" for n in notes),
        *(f"- FAILED {f}" for f in failures),
        "",
        "## Targets",
        "",
        *(f"- `{n}`: {SPECS[n].description}" for n in results),
        "",
        "## Every round",
        "",
        markdown_table(round_rows(results)),
        "",
    ]
    return text, "\n".join(page)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print and write the results; return the exit status."""
    args = options(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    command = shlex.join(["python", "-m", "benchmarks.run", *(argv or sys.argv[1:])])
    with database_servers(dict(os.environ)) as env, ExitStack() as stack:
        slugs = ensure_data(env, args.articles)
        files = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="content-bench-")))
        author = asyncio.run(first_author(asyncpg_dsn(env["DATABASE_URL"])))
        bench = Bench(args, env, files, {}, slug_count=len(slugs))
        write_scripts(bench, slugs, author)
        bench.servers = start_servers(stack, env, args.targets)
        if "service" in bench.servers:
            warm(bench, slugs)
            if "patch" in args.targets:
                ensure_patched(bench.servers["service"], author)
        results = measure_all(bench, lambda i: log(f"round {i} of {args.rounds} done"))
        for name in ("service", "service_miss"):
            if name in bench.servers:  # give the Redis memory back to its other users
                purge(bench.servers[name])
    text, page = render(bench, results, command)
    print(text)
    args.output.write_text(page)
    log(f"results written to {args.output}")
    return 1 if any(r.failure for r in results.values()) else 0


async def first_author(dsn: str) -> str:
    """Return the username of the first author by id, from the database at ``dsn``."""
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SELECT username FROM authors ORDER BY id LIMIT 1"))
    finally:
        await conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
