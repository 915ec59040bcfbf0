"""Commands per request: what one request of each kind costs Redis and PostgreSQL, counted.

One service worker (uvloop, httptools) pinned to CPU 0, on the servers of ``DATABASE_URL`` and
``REDIS_URL``, or embedded ones when both are unset. For each kind of request (declared in
:data:`KINDS`), in each of ``--rounds`` rounds, ``--requests`` requests are sent (the hit kinds
send each of their paths several times: :attr:`Kind.repeats`), and the servers' own counters
are read before and after (:mod:`benchmarks.meters`): Redis commands by name after ``CONFIG
RESETSTAT``, Redis's CPU time and bytes, the database's transactions and rows in
``pg_stat_database``, its backends' CPU time. Redis's figures and the backends' CPU time are
read :data:`PROMPT_SECONDS` after a kind's last answer, the database's counts after
``--settle-seconds`` (PostgreSQL publishes an idle backend's counts within 10 seconds); what
one idle worker does over as long (measured first, over ``--idle-seconds``: statistics
flushes, the outbox poll) is taken off.

Reads go through wrk (one thread, pinned to CPU 1): each path of the kind in a fixed
shuffled order, at ``--connections`` (the walk of :mod:`benchmarks.workloads`, whose last
requests go to ``/health/live``, which touches neither server). Articles are the first
``--requests`` of the seeded ones; list pages are distinct ``page``/``per_page``/``sort``
queries of ``/api/v1/articles``. The tables the list reads are vacuumed first (``VACUUM
(ANALYZE)``, as autovacuum does after the seeding; see :mod:`benchmarks.plans`), so that the
list's count is an index-only scan. A miss kind purges the cache first, and its hit kind then
asks for the same paths. Writes and ``/stats`` polls come from one client in turn (httpx).
Every kind runs once, unmeasured, on other paths first, so that statements are prepared and
scripts loaded. After that pass and after each round, the posted articles are deleted and the
cache purged, so that every round's lists hold the same articles.

Both servers' counters are server-wide: the Redis must serve this run alone (the run refuses
one with other clients), and the database must have no other client.

Every figure is the median over the rounds. Prints the tables and writes them into
``benchmarks/results.md`` as its section ``## Commands per request`` (replacing that section
of an earlier run).

Usage::

    .venv/bin/python -m benchmarks.commands [--requests 2000] [--rounds 3] [--connections 64]
        [--articles 100000] [--output benchmarks/results.md]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx

from benchmarks import workloads
from benchmarks.anchors import asyncpg_dsn
from benchmarks.measure import MeasureError, check_statuses, run_wrk
from benchmarks.meters import Meters, Usage, median_usage
from benchmarks.plans import vacuum
from benchmarks.report import markdown_table, text_table, write_section
from benchmarks.run import (
    ARTICLE_PATH,
    AUTH,
    IDLE_PATH,
    PATCHED,
    database_servers,
    ensure_data,
    ensure_patched,
    first_author,
    log,
    purge,
    service_env,
)
from benchmarks.servers import Server, serve
from service.repository import SORTS

SECTION = "## Commands per request"
PREFIX = "bench-commands"
LIST_PATH = "/api/v1/articles"
STATS_PATH = "/stats"
#: Requests of each kind in the unmeasured first pass.
WARM_UP = 100
#: The list queries: every combination of these, in a fixed shuffled order.
LIST_PAGES = range(1, 11)
LIST_SIZES = range(1, 101)
#: Seconds from a kind's last answer to the reading of Redis and of the backends' CPU time: one
#: statistics flush, and the outbox relay's last drain of a write kind.
PROMPT_SECONDS = 1.5
#: A command's share of a request under which it is shown only within "others".
SHOWN_CALLS = 0.005


@dataclass(frozen=True)
class Kind:
    """One kind of request.

    Attributes:
        name: its name in the tables.
        description: one line for the results page.
        load: ``articles`` or ``lists`` (GETs through wrk), or ``patch``, ``post`` or ``stats``
            (one client in turn).
        answer: the ``X-Cache`` (wrk) or the status (one client) that every answer carries.
        connections: wrk's connections; None for ``--connections``.
        purge_first: the cache is purged before the kind runs.
        repeats: how many times a round sends each path (hits are cheap: more of them keep
            what the servers do in the background small beside what they measure).
    """

    name: str
    description: str
    load: str
    answer: str
    connections: int | None = None
    purge_first: bool = False
    repeats: int = 1

    @property
    def is_walk(self) -> bool:
        """Whether wrk sends the kind's requests (else one client in turn)."""
        return self.load in ("articles", "lists")


KINDS = (
    Kind("article_miss", "GET of an article, a new slug each time, after a purge", "articles",
         "MISS", purge_first=True),
    Kind("article_hit", "the same GETs again, every entry cached, each path 5 times",
         "articles", "HIT", repeats=5),
    Kind("article_hit_c1", "article_hit from one connection: nothing to share an MGET with",
         "articles", "HIT", connections=1, repeats=5),
    Kind("list_miss", "GET of a list page (page 1-10, per_page 1-100, each sort), a new query "
         "each time, after a purge", "lists", "MISS", purge_first=True),
    Kind("list_hit", "the same list GETs again, every page cached, each path 5 times",
         "lists", "HIT", repeats=5),
    Kind("article_patch", "PATCH of an article's title (8 articles in turn), after a purge",
         "patch", "200", purge_first=True),
    Kind("article_post", "POST of a new published article (2-8 KB body)", "post", "201"),
    Kind("stats_poll", "GET /stats", "stats", "200"),
)  # fmt: skip


@dataclass
class Run:
    """What the kinds need: options, the service, the meters and the paths."""

    args: argparse.Namespace
    server: Server
    meters: Meters
    files: Path
    author: str
    dsn: str
    paths: dict[str, list[str]]
    post_prefix: str
    numbers: Iterator[int] = field(default_factory=itertools.count)


@dataclass
class Counted:
    """One kind's figures, round by round.

    Attributes:
        kind: the kind.
        requests: requests of the kind answered in each round.
        rounds: per round, the servers' usage per request, the idle worker's taken off.
        worker_cpu: per round, the service worker's CPU time per request, in µs.
    """

    kind: Kind
    requests: int = 0
    rounds: list[Usage] = field(default_factory=list)
    worker_cpu: list[float] = field(default_factory=list)

    @property
    def per_request(self) -> Usage:
        """The median over the rounds of each figure per request."""
        return median_usage(self.rounds)

    def spread(self, figure: str | None = None) -> str:
        """Return ``median (lowest-highest)`` of a figure per request over the rounds.

        Args:
            figure: a usage figure's name, or None for the worker's CPU time; ``n/a`` when a
                round lacks it.
        """
        if figure is None:
            values = self.worker_cpu
        elif all(figure in u.figures for u in self.rounds):
            values = [u.figures[figure] for u in self.rounds]
        else:
            return "n/a"
        digits = 0 if statistics.median(values) >= 100 else 1
        return (
            f"{statistics.median(values):,.{digits}f}"
            f" ({min(values):,.{digits}f}-{max(values):,.{digits}f})"
        )


def options(argv: list[str] | None) -> argparse.Namespace:
    """Return the parsed command line."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.commands", description=__doc__.splitlines()[0]
    )
    p.add_argument("--requests", type=int, default=2000, help="requests of each kind per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds (every kind in each)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections for reads")
    p.add_argument("--articles", type=int, default=100_000, help="seeded articles")
    p.add_argument("--idle-seconds", type=float, default=20.0, help="idle window's length")
    p.add_argument("--settle-seconds", type=float, default=11.0, help="pause before a reading")
    p.add_argument("--output", type=Path, default=Path(__file__).with_name("results.md"))
    args = p.parse_args(argv)
    most = len(LIST_PAGES) * len(LIST_SIZES) * len(SORTS) - WARM_UP
    if not 0 < args.requests <= min(most, args.articles - WARM_UP):
        p.error(f"--requests must be 1 to {min(most, args.articles - WARM_UP)}")
    return args


def list_queries() -> list[str]:
    """Return every list query of :data:`LIST_PAGES`, :data:`LIST_SIZES` and the sorts, shuffled."""
    queries = [
        f"?page={page}&per_page={size}&sort={sort}"
        for page, size, sort in itertools.product(LIST_PAGES, LIST_SIZES, SORTS)
    ]
    random.Random(20113).shuffle(queries)
    return queries


def walk(run: Run, kind: Kind, paths: Sequence[str]) -> int:
    """Send ``GET`` of each of ``paths`` once through wrk; return how many were answered.

    Raises:
        MeasureError: errors, a status other than 200, or an answer without ``kind.answer``.
    """
    path = ARTICLE_PATH if kind.load == "articles" else LIST_PATH
    lines = run.files / f"{kind.name}.txt"
    lines.write_text("\n".join(paths) + "\n")
    connections = kind.connections or run.args.connections
    script = run.files / f"{kind.name}.lua"
    script.write_text(workloads.walk(path, str(lines), IDLE_PATH, connections))
    m = run_wrk(run.server, script, seconds=3600, connections=connections)
    check_statuses(kind.name, m, {"200"})
    if m.caches.get(kind.answer, 0) != len(paths):
        raise MeasureError(f"{kind.name}: {len(paths)} requests, X-Cache {m.caches}")
    return len(paths)


def in_turn(run: Run, kind: Kind, count: int) -> int:
    """Send ``count`` requests of ``kind`` from one client, one at a time; return ``count``.

    Each request takes the next of ``run.numbers`` for its title and slug, so that they stay
    unique across calls.

    Raises:
        MeasureError: an answer's status was not ``kind.answer``.
    """
    body = "benchmark " * 500
    with httpx.Client(base_url=run.server.base_url, headers=AUTH, timeout=30) as client:
        for n in itertools.islice(run.numbers, count):
            if kind.load == "patch":
                slug = PATCHED[n % len(PATCHED)]
                r = client.patch(ARTICLE_PATH + slug, json={"title": f"Commands {n}"})
            elif kind.load == "post":
                doc = {"title": f"Commands {n}", "slug": f"{run.post_prefix}-{n}", "body": body,
                       "author": run.author, "status": "published"}  # fmt: skip
                r = client.post(LIST_PATH, json=doc)
            else:
                r = client.get(STATS_PATH)
            if str(r.status_code) != kind.answer:
                raise MeasureError(f"{kind.name}: answered {r.status_code}: {r.text[:300]}")
    return count


def send(run: Run, kind: Kind, *, is_warm_up: bool) -> int:
    """Send the kind's requests (or its unmeasured first pass); return how many."""
    n = run.args.requests
    if kind.is_walk:
        paths = run.paths[kind.load]
        return walk(run, kind, paths[n : n + WARM_UP] if is_warm_up else paths[:n] * kind.repeats)
    return in_turn(run, kind, WARM_UP if is_warm_up else n)


def count(run: Run, counted: Counted, background: Usage) -> None:
    """Measure one round of ``counted.kind`` and add it to ``counted``.

    The round's window holds the kind's requests and the settle pause after them.
    """
    kind = counted.kind
    if kind.purge_first:
        purge(run.server)
    start = run.meters.start()
    cpu = run.server.cpu_seconds()
    counted.requests = send(run, kind, is_warm_up=False)
    counted.worker_cpu.append((run.server.cpu_seconds() - cpu) * 1e6 / counted.requests)
    time.sleep(PROMPT_SECONDS)
    prompt = run.meters.prompt(start).minus_background(background)
    time.sleep(max(0.0, run.args.settle_seconds - PROMPT_SECONDS))
    settled = run.meters.settled(start).minus_background(background)
    counted.rounds.append(prompt.merged(settled).divided(counted.requests))


def _figure(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def summary_rows(counted: Sequence[Counted], connections: int) -> list[list[str]]:
    """Return the per-request table: a header row, then one row per kind."""
    rows = [[
        "kind", "requests", "connections", "Redis commands", "EVALSHA", "MGET",
        "hits per read command", "Redis CPU µs", "Redis bytes in / out", "PG transactions",
        "PG rows fetched", "PG rows written", "PG CPU µs", "worker CPU µs",
    ]]  # fmt: skip
    for c in counted:
        f = c.per_request.figures
        calls = c.per_request.calls()
        reads = calls.get("mget", 0.0) + calls.get("get", 0.0)
        is_batch = c.kind.answer == "HIT" and reads >= SHOWN_CALLS
        written = sum(f.get(f"pg_rows_{n}", 0.0) for n in ("inserted", "updated", "deleted"))
        conns = str(c.kind.connections or connections) if c.kind.is_walk else "1 (in turn)"
        rows.append([
            c.kind.name, str(c.requests), conns, _figure(c.per_request.total_calls()),
            _figure(calls.get("evalsha", 0.0)), _figure(calls.get("mget", 0.0)),
            _figure(1 / reads if is_batch else None, 1),
            c.spread("redis_cpu_us"),
            f"{f['redis_in_bytes']:,.0f} / {f['redis_out_bytes']:,.0f}",
            _figure(f["pg_transactions"]), _figure(f["pg_rows_fetched"], 1),
            _figure(written, 1), c.spread("pg_cpu_us"), c.spread(),
        ])  # fmt: skip
    return rows


def by_command(usage: Usage) -> str:
    """Return ``usage``'s Redis commands as ``name n.nn`` items, the smallest as ``others``."""
    calls = usage.calls()
    shown = [f"{name.upper()} {v:.2f}" for name, v in calls.items() if v >= SHOWN_CALLS]
    others = sum(v for v in calls.values() if v < SHOWN_CALLS)
    return ", ".join(shown + ([f"others {others:.3f}"] if others else [])) or "none"


def command_rows(counted: Sequence[Counted]) -> list[list[str]]:
    """Return the table of Redis commands per request by name, one row per kind."""
    return [["kind", "Redis commands per request, by name"]] + [
        [c.kind.name, by_command(c.per_request)] for c in counted
    ]


def background_line(rates: Usage) -> str:
    """Return one line on what one idle worker costs the servers per second."""
    f = rates.figures
    return (
        f"one idle worker, per second (over {rates.seconds:.0f} s, taken off every window):"
        f" {rates.total_calls():.2f} Redis commands ({by_command(rates)}),"
        f" {f['redis_cpu_us']:.0f} µs Redis CPU, {f['pg_transactions']:.2f} PostgreSQL"
        f" transactions, {_figure(f.get('pg_cpu_us'), 0)} µs PostgreSQL CPU"
    )


def section(
    counted: Sequence[Counted], rates: Usage, args: argparse.Namespace, command: str
) -> str:
    """Return the results page's ``## Commands per request`` section."""
    repeated = ", ".join(f"{k.name}: each path {k.repeats} times" for k in KINDS if k.repeats > 1)
    return "\n".join([
        SECTION,
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `{command}`",
        f"- machine: {os.cpu_count()} cores; one service worker pinned to CPU 0, wrk to CPU 1;"
        f" a Redis and a database of the run's own; load average at the end"
        f" {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)",
        f"- data: {args.articles} published articles, bodies of 2 to 8 KB, tables vacuumed;"
        f" {args.rounds} rounds of {args.requests} requests of each kind ({repeated}); reads"
        f" from wrk -t1 -c{args.connections} unless stated; writes and polls from one client"
        " in turn",
        "",
        "Medians over the rounds, per request, from the servers' own counters (`INFO"
        " commandstats`, `INFO cpu`, `INFO stats` after `CONFIG RESETSTAT`; `pg_stat_database`;"
        f" the backends' `/proc/{{pid}}/schedstat`), read {PROMPT_SECONDS} s after a kind's last"
        f" answer (the database's counts {args.settle_seconds:.0f} s after), what an idle worker"
        " does over as long taken off. Redis commands: every command Redis ran, those run by a"
        " script (`EVALSHA`, `EVAL`) included under their own names. hits per read command:"
        " the hits answered per `MGET` or lone `GET` (the auto-pipeline sends a batch of one"
        " read as `GET`), that is per read round trip. PG transactions: a cache miss's"
        " statement runs on its own (autocommit), so it is one transaction, plus one for each"
        " parallel worker its plan starts (PostgreSQL 15 counts theirs); a write is one"
        " transaction of several statements. PG rows fetched: rows read through indexes;"
        " written: inserted, updated and deleted. CPU µs: Redis's, the database's client"
        " backends' (parallel workers not included) and the service worker's CPU time per"
        " request, the median and, in brackets, the lowest and highest round: on a shared"
        " machine they move with what else runs.",
        "",
        markdown_table(summary_rows(counted, args.connections)),
        "",
        markdown_table(command_rows(counted)),
        "",
        f"- {background_line(rates)}",
        *(f"- `{c.kind.name}`: {c.kind.description}" for c in counted),
        "",
    ])  # fmt: skip


def check_private(meters: Meters) -> None:
    """Refuse a Redis or a database that others use: their counters are server-wide.

    Raises:
        SystemExit: another client is connected.
    """
    deadline = time.monotonic() + 5  # the seeding's backends may still be ending
    while True:
        clients, backends = meters.redis_clients(), meters.database_backends()
        if (clients <= 1 and not backends) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if clients > 1 or backends:
        raise SystemExit(
            f"Redis has {clients - 1} other clients and the database {backends}: the counters"
            " are server-wide, so this run needs a Redis and a database of its own"
        )


def measure(run: Run, on_kind: Callable[[int, Counted], None]) -> tuple[list[Counted], Usage]:
    """Warm every kind up, measure the idle worker, then the rounds; return the figures.

    Each round measures every kind in turn; ``on_kind`` is called with the round's number
    and the kind's figures after each.
    """
    for kind in KINDS:
        if kind.purge_first:
            purge(run.server)
        send(run, kind, is_warm_up=True)
    clean_up(run)
    log(f"idle worker: {run.args.idle_seconds:.0f} s")
    start = run.meters.start()
    time.sleep(run.args.idle_seconds)
    prompt = run.meters.prompt(start)
    settled = run.meters.settled(start)
    rates = prompt.divided(prompt.seconds).merged(settled.divided(settled.seconds))
    counted = [Counted(kind) for kind in KINDS]
    for i in range(run.args.rounds):
        for c in counted:
            count(run, c, rates)
            on_kind(i + 1, c)
        clean_up(run)
    return counted, rates


def clean_up(run: Run) -> None:
    """Delete the articles posted so far and purge, so that every round sees the same lists.

    Then wait ``--settle-seconds``: the outbox relay drains the deletions' rows, and the
    counts are published, before the next reading.
    """
    deleted = asyncio.run(delete_posts(run.dsn, run.post_prefix))
    purge(run.server)  # and give the Redis memory back
    log(f"{deleted} posted articles deleted, cache purged")
    time.sleep(run.args.settle_seconds)


async def delete_posts(dsn: str, prefix: str) -> int:
    """Delete the articles whose slug starts with ``{prefix}-``; return how many."""
    conn = await asyncpg.connect(dsn)
    try:
        status = await conn.execute("DELETE FROM articles WHERE slug LIKE $1", f"{prefix}-%")
        return int(status.split()[-1])
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    """Count, print and write the figures; return the exit status."""
    args = options(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    command = shlex.join(["python", "-m", "benchmarks.commands", *(argv or sys.argv[1:])])
    with database_servers(dict(os.environ)) as env:
        slugs = ensure_data(env, args.articles)
        dsn = asyncpg_dsn(env["DATABASE_URL"])
        asyncio.run(vacuum(dsn))
        meters = Meters(env["REDIS_URL"], dsn, urlsplit(dsn).path.lstrip("/"))
        try:
            check_private(meters)
            with (
                tempfile.TemporaryDirectory(prefix="content-commands-") as files,
                serve("service", "service.app:create_app", service_env(env, PREFIX), cpu=0,
                      ready_path=IDLE_PATH) as server,
            ):  # fmt: skip
                author = asyncio.run(first_author(dsn))
                ensure_patched(server, author)
                paths = {"articles": slugs, "lists": list_queries()}
                prefix = f"bench-post-commands-{int(time.time())}"
                run = Run(args, server, meters, Path(files), author, dsn, paths, prefix)

                def report(i: int, c: Counted) -> None:
                    u = c.rounds[-1]
                    f = u.figures
                    log(f"round {i} {c.kind.name}: {u.total_calls():.2f} Redis commands,"
                        f" {f['redis_cpu_us']:.1f} µs Redis CPU, {f['pg_transactions']:.2f}"
                        " PG transactions per request")  # fmt: skip

                counted, rates = measure(run, report)
        finally:
            meters.close()
    print(text_table(summary_rows(counted, args.connections)))
    print()
    print(text_table(command_rows(counted)))
    print()
    print(background_line(rates))
    write_section(args.output, SECTION, section(counted, rates, args, command))
    log(f"section {SECTION!r} written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
