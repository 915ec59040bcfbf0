"""Deep pages: an offset page costs more the deeper it is, a keyset (cursor) page does not.

Four pages of the article list (newest first, ``--per-page`` a page) are measured side by
side: page 1 and the last page asked by offset (``page=N``), and page 2 and the last page
asked by keyset (``cursor=``, the ``next_cursor`` of the page before). Each is measured twice:

1. the statement (see :mod:`benchmarks.plans`): the service's own compiled statement under
   ``EXPLAIN (ANALYZE, BUFFERS)``: execution time, the part of it spent in the header's
   subqueries (the total's count and the next publication, paid at any depth) and in JIT
   compilation, shared buffers hit and read, temporary blocks;
2. a miss end to end: one service worker (uvloop, httptools, pinned to CPU 0; its
   ``MAX_PAGE_DEPTH`` raised to reach the last page by offset) is asked for the page right
   after a purge of the article list namespace, so that each answer is a ``MISS``: the
   client's latency and the ``db;dur`` of ``Server-Timing``.

Figures are medians over ``--repeats`` rounds, each round asking for every page once: the
statements' rounds first; then the misses' rounds of the shallow pages (page 1 by offset, page
2 by cursor), then of the deep ones, so that the worker's offset statement has run no deep
page when page 1 is measured. The cursors come from the service's own answers (the
``next_cursor`` of page 1 and of the page before the last); the last pages asked both ways must
hold the same articles.

A fifth row, ``offset, generic plan``, is page 1 by offset once more: EXPLAINed under
``plan_cache_mode = force_generic_plan``, and asked of the worker after the deep pages. Its
pooled connection prepares the offset statement once for every offset, and PostgreSQL plans a
prepared statement generically once its custom plans cost more on average, as they do once deep
pages are among them; the generic plan cannot use the partial indexes (``status`` is a bound
parameter), so page 1 then costs a sort of the whole list too.

Then the whole list is walked by ``Link: rel="next"`` at ``--walk-per-page`` rows a page after
one purge (every page a miss): pages per second, and the median latency of the walk's first and
last tenth of pages.

Data: ``--articles`` published articles, seeded with ``content-service seed`` when the database
holds fewer (as :mod:`benchmarks.run` does), then ``VACUUM (ANALYZE)`` of the tables the list
reads, as autovacuum does after a bulk insert, so that the figures do not depend on whether it
has come by yet (index-only scans need the visibility map). Servers come from ``DATABASE_URL``
and ``REDIS_URL``, or embedded ones when both are unset.

Usage::

    .venv/bin/python -m benchmarks.pages [--articles 100000] [--per-page 20] [--repeats 7]
        [--walk-per-page 100]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import shlex
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import httpx

from benchmarks.plans import (
    CURSOR,
    FIRST,
    GENERIC,
    LAST,
    OFFSET,
    SHAPES,
    PlanFigures,
    Shape,
    statement_costs,
)
from benchmarks.report import text_table
from benchmarks.run import (
    ARTICLE_PATH,
    AUTH,
    IDLE_PATH,
    database_servers,
    ensure_data,
    log,
    purge,
    service_env,
)
from benchmarks.servers import serve
from service.keyspaces import ARTICLES

PREFIX = "bench-pages"
LIST_PATH = ARTICLE_PATH.rstrip("/")
PURGE_PATH = "/admin/cache/purge"
_DB_DURATION = re.compile(r"\bdb;dur=([0-9.]+)")


def options(argv: list[str] | None) -> argparse.Namespace:
    """Return the parsed command line."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.pages", description=__doc__.splitlines()[0]
    )
    p.add_argument("--articles", type=int, default=100_000, help="seeded articles (N)")
    p.add_argument("--per-page", type=int, default=20, help="page size measured (1-100)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds (medians)")
    p.add_argument("--walk-per-page", type=int, default=100, help="page size of the walk")
    args = p.parse_args(argv)
    for name in ("per_page", "walk_per_page"):
        if not 1 <= getattr(args, name) <= 100:
            p.error(f"--{name.replace('_', '-')} must be 1 to 100")
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


# The misses over HTTP --------------------------------------------------------------------------


@dataclass(frozen=True)
class Miss:
    """One answer loaded from PostgreSQL.

    Attributes:
        latency_ms: from sending the request to reading the whole answer, in milliseconds.
        db_ms: the ``db;dur`` of its ``Server-Timing``, in milliseconds.
        ids: the ids of the page's articles, in order.
        next_cursor: the answer's ``next_cursor``.
        next_link: the target of its ``Link`` header's ``rel="next"`` (a path and query).
        pages: the answer's ``pages``.
    """

    latency_ms: float
    db_ms: float
    ids: tuple[int, ...]
    next_cursor: str | None
    next_link: str | None
    pages: int


def purge_lists(client: httpx.Client) -> None:
    """Purge the article list namespace of the service's cache.

    Raises:
        RuntimeError: the service did not answer 200.
    """
    r = client.post(PURGE_PATH, json={"namespace": ARTICLES}, headers=AUTH)
    if r.status_code != 200:
        raise RuntimeError(f"purge of {ARTICLES} answered {r.status_code}: {r.text}")


def timed_get(client: httpx.Client, url: str, params: dict[str, Any] | None = None) -> Miss:
    """GET a page of the article list and return it as a :class:`Miss`.

    Raises:
        RuntimeError: the answer was not a 200 ``MISS`` with a ``Link`` header and a
            ``db;dur``, or its ``rel="next"`` and ``next_cursor`` disagree.
    """
    started = perf_counter()
    r = client.get(url, params=params)
    latency_ms = (perf_counter() - started) * 1000
    timing = _DB_DURATION.search(r.headers.get("server-timing", ""))
    if r.status_code != 200 or r.headers.get("x-cache") != "MISS" or "link" not in r.headers:
        raise RuntimeError(
            f"{r.url}: {r.status_code}, X-Cache {r.headers.get('x-cache')}, "
            f"Link {r.headers.get('link')}: {r.text[:300]}"
        )
    if timing is None:
        raise RuntimeError(f"{r.url}: no db;dur in Server-Timing {r.headers.get('server-timing')}")
    body = r.json()
    next_link = r.links.get("next", {}).get("url")
    if (next_link is None) != (body["next_cursor"] is None):
        raise RuntimeError(f"{r.url}: rel=next {next_link} but next_cursor {body['next_cursor']}")
    return Miss(
        latency_ms,
        float(timing.group(1)),
        tuple(item["id"] for item in body["items"]),
        body["next_cursor"],
        next_link,
        body["pages"],
    )


def miss(client: httpx.Client, params: dict[str, Any]) -> Miss:
    """Purge the article lists, then GET the page of ``params`` (a miss)."""
    purge_lists(client)
    return timed_get(client, LIST_PATH, params)


@dataclass(frozen=True)
class HttpMisses:
    """The misses' side of the run.

    Attributes:
        pages: the last page's number.
        rounds: every round's miss, by shape; under :data:`benchmarks.plans.GENERIC`, page 1
            by offset again, once the worker has served the deep pages.
    """

    pages: int
    rounds: dict[Shape, list[Miss]]


def _rounds(
    client: httpx.Client,
    params: dict[Shape, dict[str, Any]],
    repeats: int,
    rounds: dict[Shape, list[Miss]],
) -> None:
    """Ask for each page of ``params`` once per round, ``repeats`` rounds, into ``rounds``."""
    for _ in range(repeats):
        for shape, query in params.items():
            rounds[shape].append(miss(client, query))


def http_misses(client: httpx.Client, per_page: int, repeats: int) -> HttpMisses:
    """Measure the four pages as misses, ``repeats`` rounds of each.

    The shallow pages (page 1 by offset, page 2 by cursor) are measured before the worker
    serves any deep offset page, then the last pages both ways, then page 1 by offset again
    (under :data:`benchmarks.plans.GENERIC`): both offset pages are one prepared statement on
    the worker's pooled connection, which PostgreSQL may switch to its generic plan once deep
    pages are among its executions.

    Raises:
        RuntimeError: an answer was not a 200 miss, or the last page asked by cursor does not
            hold the articles of the last page asked by offset.
    """
    first = miss(client, {"per_page": per_page})
    pages = first.pages
    shallow: dict[Shape, dict[str, Any]] = {
        (OFFSET, FIRST): {"page": 1, "per_page": per_page},
        (CURSOR, FIRST): {"cursor": first.next_cursor, "per_page": per_page},
    }
    rounds: dict[Shape, list[Miss]] = {shape: [] for shape in SHAPES}
    _rounds(client, shallow, repeats, rounds)
    log(f"shallow pages: {repeats} rounds done")
    before_last = miss(client, {"page": pages - 1, "per_page": per_page})
    deep: dict[Shape, dict[str, Any]] = {
        (OFFSET, LAST): {"page": pages, "per_page": per_page},
        (CURSOR, LAST): {"cursor": before_last.next_cursor, "per_page": per_page},
    }
    _rounds(client, deep, repeats, rounds)
    log(f"deep pages: {repeats} rounds done")
    rounds[GENERIC] = [miss(client, shallow[OFFSET, FIRST]) for _ in range(repeats)]
    by_offset, by_cursor = rounds[OFFSET, LAST][0].ids, rounds[CURSOR, LAST][0].ids
    if by_offset != by_cursor:
        raise RuntimeError(f"last page by cursor {by_cursor} is not by offset {by_offset}")
    return HttpMisses(pages, rounds)


@dataclass(frozen=True)
class Walk:
    """A walk of the whole list by ``Link: rel="next"``, every page a miss.

    Attributes:
        latencies_ms: each page's latency, in order, in milliseconds.
        db_ms: each page's ``db;dur``, in order, in milliseconds.
        rows: articles seen.
        seconds: the whole walk, in seconds.
    """

    latencies_ms: list[float]
    db_ms: list[float]
    rows: int
    seconds: float

    @property
    def pages_per_second(self) -> float:
        """Pages walked per second."""
        return len(self.latencies_ms) / self.seconds

    def tenths(self, figures: Sequence[float]) -> tuple[float, float]:
        """Return the medians of ``figures`` over the walk's first and last tenth of pages."""
        n = max(1, len(figures) // 10)
        return statistics.median(figures[:n]), statistics.median(figures[-n:])


def walk(client: httpx.Client, per_page: int) -> Walk:
    """Purge the article lists, then follow ``rel="next"`` from page 1 to the end.

    Raises:
        RuntimeError: an answer was not a 200 miss (see :func:`timed_get`).
    """
    purge_lists(client)
    url: str | None = f"{LIST_PATH}?per_page={per_page}"
    latencies: list[float] = []
    db: list[float] = []
    rows = 0
    started = perf_counter()
    while url is not None:
        page = timed_get(client, url)
        latencies.append(page.latency_ms)
        db.append(page.db_ms)
        rows += len(page.ids)
        url = page.next_link
    return Walk(latencies, db, rows, perf_counter() - started)


# The report ------------------------------------------------------------------------------------


def _med(items: Sequence[object], figure: str) -> float:
    """The median of attribute ``figure`` over ``items``."""
    return statistics.median(float(getattr(x, figure)) for x in items)


def result_rows(
    pages: int, plans: dict[Shape, list[PlanFigures]], misses: dict[Shape, list[Miss]]
) -> list[list[str]]:
    """Return the table's rows (header first): one per page measured, medians of each figure."""
    rows = [[
        "page", "EXPLAIN ms", "count ms", "JIT ms", "shared hit", "shared read", "temp blocks",
        "HTTP miss ms", "db;dur ms",
    ]]  # fmt: skip
    for shape in (*SHAPES, GENERIC):
        method, depth = shape
        number = pages if depth == LAST else (2 if method == CURSOR else 1)
        label = (
            f"offset page {number}, generic plan" if shape == GENERIC else f"{method} page {number}"
        )
        p, m = plans[shape], misses[shape]
        rows.append([
            label, f"{_med(p, 'execution_ms'):.2f}", f"{_med(p, 'header_ms'):.2f}",
            f"{_med(p, 'jit_ms'):.1f}", f"{_med(p, 'shared_hit'):.0f}",
            f"{_med(p, 'shared_read'):.0f}", f"{_med(p, 'temp_blocks'):.0f}",
            f"{_med(m, 'latency_ms'):.2f}", f"{_med(m, 'db_ms'):.2f}",
        ])  # fmt: skip
    return rows


def ratio_lines(
    pages: int, plans: dict[Shape, list[PlanFigures]], misses: dict[Shape, list[Miss]]
) -> list[str]:
    """Return one line per method: its last page's medians over its first page's."""
    lines = []
    for method, first in ((OFFSET, 1), (CURSOR, 2)):
        explain, miss_ratio, db = (
            _med(figures[method, LAST], name) / _med(figures[method, FIRST], name)
            for figures, name in (
                (plans, "execution_ms"), (misses, "latency_ms"), (misses, "db_ms")
            )
        )  # fmt: skip
        lines.append(
            f"{method}: page {pages} / page {first} = {explain:.2f}x EXPLAIN, "
            f"{miss_ratio:.2f}x HTTP miss, {db:.2f}x db;dur"
        )
    return lines


def walk_line(w: Walk, per_page: int) -> str:
    """Return the walk's summary."""
    n = max(1, len(w.latencies_ms) // 10)
    first, last = w.tenths(w.latencies_ms)
    db_first, db_last = w.tenths(w.db_ms)
    return (
        f'walk by rel="next": {len(w.latencies_ms):,} pages of {per_page} ({w.rows:,} articles, '
        f"every page a miss) in {w.seconds:.1f} s, {w.pages_per_second:.1f} pages/s; median "
        f"latency {first:.2f} ms over the first {n} pages, {last:.2f} ms over the last {n} "
        f"(db;dur {db_first:.2f} ms, {db_last:.2f} ms)"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures; return the exit status."""
    args = options(argv)
    command = shlex.join(["python", "-m", "benchmarks.pages", *(argv or sys.argv[1:])])
    with database_servers(dict(os.environ)) as env:
        ensure_data(env, args.articles)
        log(f"vacuum, then EXPLAIN x {args.repeats} rounds")
        costs = asyncio.run(statement_costs(env, args.per_page, args.repeats))
        pages = math.ceil(costs.total / args.per_page)
        server_env = {**service_env(env, PREFIX), "MAX_PAGE_DEPTH": str(pages * args.per_page)}
        factory = "service.app:create_app"
        with (
            serve("service", factory, server_env, cpu=0, ready_path=IDLE_PATH) as server,
            httpx.Client(
                base_url=server.base_url, headers={"Accept-Encoding": "identity"}, timeout=120
            ) as client,
        ):
            misses = http_misses(client, args.per_page, args.repeats)
            log(f"walking the list, {args.walk_per_page} a page")
            walked = walk(client, args.walk_per_page)
            purge(server)  # give the Redis memory back to its other users
    if misses.pages != pages or walked.rows != costs.total:
        log(f"the list changed during the run: {costs.total} articles in {pages} pages, then "
            f"{misses.pages} pages, and {walked.rows} articles walked")  # fmt: skip
    print(f"command: {command}")
    print(
        f"GET {LIST_PATH}, newest first: {costs.total:,} visible articles, {args.per_page} a "
        f"page, {pages:,} pages; PostgreSQL {costs.server_version}; medians of "
        f"{args.repeats} rounds"
    )
    print()
    print(text_table(result_rows(pages, costs.plans, misses.rounds)))
    print()
    print("\n".join(ratio_lines(pages, costs.plans, misses.rounds)))
    print(walk_line(walked, args.walk_per_page))
    print(
        "count ms: the header's subqueries (the total's count, the next publication), paid "
        "by every page; JIT ms: JIT compilation, part of EXPLAIN ms. offset, generic plan: "
        "EXPLAIN of page 1 under plan_cache_mode = force_generic_plan; its misses are page 1 "
        "asked again after the deep pages (the worker's prepared statement then runs its "
        "generic plan)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
