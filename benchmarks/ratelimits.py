"""Rate limits: what one client address gets past the read limit, and what the limiter costs.

Three services of two workers each (``uvicorn --workers 2``, uvloop, httptools), each service's
workers pinned to CPU 0, on the servers of ``DATABASE_URL`` and ``REDIS_URL``, or embedded ones
when both are unset; they differ only in ``RATE_LIMIT_READS``. wrk (one thread, pinned to CPU 1)
sends ``GET`` of one cached article from 127.0.0.1, one client address, for ``--seconds``:

- ``limited``: ``RATE_LIMIT_READS`` is ``--limit``, far below what the workers answer, with
  ``--connections`` keep-alive clients: answers accepted (200) and refused (429) per second;
  any other status fails the run. The counter is in Redis, so both workers count against one
  limit and the accepted rate stays near it (a counter per worker would accept about twice as
  many). Each worker's share of the service's CPU time over the run shows that both answered;
  ``/stats`` must list both (``db_pool.workers``) before and after the rounds.
- ``off``: no limit, the same load.
- ``unreached``: ``RATE_LIMIT_READS=1000000/second``, the same load: the limiter's work (two
  Redis round trips) on every request, none refused; against ``off``, its cost on accepted
  requests: requests per second, latency and CPU per request.
- ``off_c1`` and ``unreached_c1``: the same two services with one connection for half of
  ``--seconds``: the latency the limiter adds to a request that waits for nothing else.

The targets run in interleaved rounds (round 1: every target; round 2: ...), each service after
a 2-second warm-up; the figures are medians over the rounds. Prints a table and writes it as the
``## Rate limits`` section of ``benchmarks/results.md`` (replacing the section of an earlier
run; the rest of the page is left as it is).

Usage::

    .venv/bin/python -m benchmarks.ratelimits [--seconds 10] [--limit 500/second]
        [--connections 32] [--rounds 3] [--output benchmarks/results.md]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from limits import parse_many

from benchmarks import workloads
from benchmarks.measure import Measurement, check_statuses, run_wrk
from benchmarks.report import markdown_table, text_table, write_section
from benchmarks.run import ARTICLE_PATH, IDLE_PATH, database_servers, ensure_data, log, purge
from benchmarks.run import service_env as cached_service_env
from benchmarks.servers import Server, serve

WORKERS = 2
#: A read limit no load of this machine reaches: the limiter counts, never refuses.
UNREACHED_LIMIT = "1000000/second"
ARTICLES = 20
WARM_UP_SECONDS = 2
SECTION = "## Rate limits"
ACCEPTED = frozenset({"200"})


@dataclass(frozen=True)
class Target:
    """One load on one service.

    Attributes:
        name: its name in the tables.
        service: the service it loads: ``limited``, ``off`` or ``unreached``.
        description: one line for the results page.
        statuses: the statuses it may answer; any other fails the run.
        connections: wrk's connections for runs of half of ``--seconds``; None for
            ``--connections`` and the whole of ``--seconds``.
    """

    name: str
    service: str
    description: str
    statuses: frozenset[str] = ACCEPTED
    connections: int | None = None


TARGETS = (
    Target("limited", "limited", "one address far past the limit", frozenset({"200", "429"})),
    Target("off", "off", "no read limit"),
    Target("unreached", "unreached", "every read counted, none refused"),
    Target("off_c1", "off", "no read limit, one connection", connections=1),
    Target("unreached_c1", "unreached", "every read counted, one connection", connections=1),
)


@dataclass
class Result:
    """Every round of one target.

    Attributes:
        target: what was measured.
        reads: the ``RATE_LIMIT_READS`` of its service (empty: off).
        server: the service it loads.
        rounds: one measurement per round, in order.
        worker_cpu: per round, each worker's CPU seconds over the run, by process id.
    """

    target: Target
    reads: str
    server: Server
    rounds: list[Measurement] = field(default_factory=list)
    worker_cpu: list[dict[int, float]] = field(default_factory=list)

    def median(self, figure: Callable[[Measurement], float]) -> float:
        """Return the median of ``figure`` over the rounds."""
        return statistics.median(figure(m) for m in self.rounds)

    def per_second(self, status: str) -> float:
        """Return the median over the rounds of answers with ``status`` per second."""
        return self.median(lambda m: m.statuses.get(status, 0) / m.seconds)

    def worker_shares(self) -> list[float]:
        """Return each worker's median share of the workers' CPU time, largest first."""
        shares: list[list[float]] = []
        for cpu in self.worker_cpu:
            total = sum(cpu.values()) or 1.0
            shares.append(sorted((s / total for s in cpu.values()), reverse=True))
        return [statistics.median(column) for column in zip(*shares, strict=True)]


def options(argv: list[str] | None) -> argparse.Namespace:
    """Return the parsed command line."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.ratelimits", description=__doc__.splitlines()[0]
    )
    p.add_argument("--seconds", type=int, default=10, help="seconds per target per round")
    p.add_argument("--limit", default="500/second", help="RATE_LIMIT_READS of limited (one limit)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (-c)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--output", type=Path, default=Path(__file__).with_name("results.md"))
    args = p.parse_args(argv)
    try:
        items = parse_many(args.limit)
    except ValueError as exc:
        p.error(f"--limit: {exc}")
    if len(items) != 1:
        p.error(f"--limit takes one limit, got {args.limit!r}")
    args.limit_per_second = items[0].amount / items[0].get_expiry()
    return args


def service_env(env: dict[str, str], name: str, reads: str) -> dict[str, str]:
    """Return the environment of service ``name``: its own keys, ``RATE_LIMIT_READS=reads``."""
    return {
        **cached_service_env(env, f"bench-limits-{name}"),
        "RATE_LIMIT_READS": reads,
        "LOG_LEVEL": "warning",
    }


def wait_for_workers(server: Server) -> None:
    """Wait until ``/stats`` lists exactly the server's worker processes (``db_pool.workers``).

    Raises:
        RuntimeError: it did not within 30 seconds.
    """
    expected = set(server.worker_pids())
    deadline = time.monotonic() + 30
    listed: set[int] = set()
    while time.monotonic() < deadline:
        stats = httpx.get(server.base_url + "/stats").json()
        listed = {int(w["pid"]) for w in stats["db_pool"]["workers"]}
        if listed == expected:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{server.name}: /stats lists workers {listed}, expected {expected}")


def check_headers(server: Server, path: str, is_limited: bool) -> None:
    """Check that ``path`` answers 200, with ``RateLimit-Policy`` exactly when ``is_limited``.

    Raises:
        RuntimeError: another status, or the header present when it must not be (or absent).
    """
    r = httpx.get(server.base_url + path)
    policy = r.headers.get("ratelimit-policy")
    if r.status_code != 200 or (policy is not None) != is_limited:
        raise RuntimeError(f"{server.name}: {path} answered {r.status_code}, policy {policy!r}")
    log(f"{server.name}: 200, RateLimit-Policy {policy}, X-Cache {r.headers.get('x-cache')}")


def measure(result: Result, script: Path, args: argparse.Namespace) -> Measurement:
    """Run one round of ``result``'s target; keep its measurement and its workers' CPU time.

    Raises:
        MeasureError: socket errors, or a status the target must not answer.
    """
    server, connections = result.server, result.target.connections
    seconds = args.seconds if connections is None else max(1, args.seconds // 2)
    before = server.worker_cpu_seconds()
    m = run_wrk(server, script, seconds=seconds, connections=connections or args.connections)
    after = server.worker_cpu_seconds()
    check_statuses(result.target.name, m, set(result.target.statuses))
    result.rounds.append(m)
    result.worker_cpu.append({pid: cpu - before.get(pid, 0.0) for pid, cpu in after.items()})
    return m


def summary_rows(results: list[Result], connections: int) -> list[list[str]]:
    """Return the table's rows, one per target, with a header row first.

    ``connections`` is ``--connections``, shown for the targets that use it.
    """
    rows = [[
        "target", "RATE_LIMIT_READS", "connections", "req/s", "200/s", "429/s", "other",
        "p50 ms", "p99 ms", "CPU µs/req", "workers' CPU shares",
    ]]  # fmt: skip
    for r in results:
        other = sum(n for m in r.rounds for s, n in m.statuses.items() if s not in ("200", "429"))
        rows.append([
            r.target.name, r.reads or "(off)", str(r.target.connections or connections),
            f"{r.median(lambda m: m.requests_per_second):.0f}",
            f"{r.per_second('200'):.0f}", f"{r.per_second('429'):.0f}", str(other),
            f"{r.median(lambda m: m.p50_us) / 1000:.2f}",
            f"{r.median(lambda m: m.p99_us) / 1000:.2f}",
            f"{r.median(lambda m: m.cpu_us_per_request):.0f}",
            " / ".join(f"{s:.0%}" for s in r.worker_shares()),
        ])  # fmt: skip
    return rows


def findings(results: dict[str, Result], limit_per_second: float) -> list[str]:
    """Return the lines that compare the targets (``limit_per_second``: the limit's rate)."""
    limited, off, unreached = results["limited"], results["off"], results["unreached"]
    off_c1, unreached_c1 = results["off_c1"], results["unreached_c1"]
    accepted = limited.per_second("200")

    def rps(m: Measurement) -> float:
        return m.requests_per_second

    def ratios(r: Result, base: Result) -> str:
        figures = {"req/s": rps, "p50": lambda m: m.p50_us, "p99": lambda m: m.p99_us,
                   "CPU per request": lambda m: m.cpu_us_per_request}  # fmt: skip
        return ", ".join(f"{r.median(f) / base.median(f):.2f} {n}" for n, f in figures.items())

    def added_ms(figure: Callable[[Measurement], float]) -> str:
        return f"{(unreached_c1.median(figure) - off_c1.median(figure)) / 1000:+.2f} ms"

    shares = " / ".join(f"{s:.0%}" for s in limited.worker_shares())
    return [
        f"limited: {accepted:.0f} accepted/s = {accepted / limit_per_second:.2f} x the limit"
        f" ({limit_per_second:g}/s) over {WORKERS} workers that both answered (CPU shares"
        f" {shares}); a counter per worker would accept {WORKERS} x",
        f"limited: {limited.per_second('429'):.0f} refused/s (429); all its answers"
        f" {limited.median(rps) / off.median(rps):.2f} x the req/s of off",
        f"unreached / off: {ratios(unreached, off)}: the limiter's cost on accepted requests"
        " at the same load",
        f"unreached_c1 - off_c1: {added_ms(lambda m: m.p50_us)} p50,"
        f" {added_ms(lambda m: m.p99_us)} p99: the latency the limiter adds to one request",
    ]


def section(results: dict[str, Result], args: argparse.Namespace, command: str) -> str:
    """Return the results page's ``## Rate limits`` section."""
    rows = summary_rows(list(results.values()), args.connections)
    return "\n".join([
        SECTION,
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `{command}`",
        f"- machine: {os.cpu_count()} cores; each service's {WORKERS} workers pinned to CPU 0,"
        " wrk to CPU 1; load average at the end"
        f" {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)",
        f"- rounds: {args.rounds} of {args.seconds} s per target (one connection:"
        f" {max(1, args.seconds // 2)} s), wrk -t1, GET of one cached article, every request"
        " from 127.0.0.1",
        "",
        "Medians over the rounds. 200/s and 429/s: answers accepted and refused per second;"
        " other: answers of any other status over every round (the run fails on one)."
        " CPU µs/req: the workers' CPU time over all answers. workers' CPU shares: each"
        " worker's share of the service's CPU time over the run.",
        "",
        markdown_table(rows),
        "",
        *(f"- {line}" for line in findings(results, args.limit_per_second)),
        "",
        *(f"- `{r.target.name}`: RATE_LIMIT_READS={r.reads or '(empty)'}: {r.target.description}"
          for r in results.values()),
        "",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the rounds, print and write the figures; return the exit status."""
    args = options(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    command = shlex.join(["python", "-m", "benchmarks.ratelimits", *(argv or sys.argv[1:])])
    limits = {"limited": args.limit, "off": "", "unreached": UNREACHED_LIMIT}
    with database_servers(dict(os.environ)) as env, ExitStack() as stack:
        slug = ensure_data(env, ARTICLES)[0]
        path = ARTICLE_PATH + slug
        files = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rate-limits-")))
        script = files / "article.lua"
        script.write_text(workloads.fixed(path))
        servers: dict[str, Server] = {}
        for name, reads in limits.items():
            server = stack.enter_context(
                serve(name, "service.app:create_app", service_env(env, name, reads), cpu=0,
                      ready_path=IDLE_PATH, workers=WORKERS)
            )  # fmt: skip
            servers[name] = server
            wait_for_workers(server)
            purge(server)
            check_headers(server, path, is_limited=bool(reads))  # loads the entry
            run_wrk(server, script, seconds=WARM_UP_SECONDS, connections=args.connections)
        results = {t.name: Result(t, limits[t.service], servers[t.service]) for t in TARGETS}
        for i in range(args.rounds):
            for name, result in results.items():
                m = measure(result, script, args)
                log(f"round {i + 1} {name}: {m.requests_per_second:.0f} req/s, statuses "
                    f"{m.statuses}, X-Cache {m.caches}, p50 {m.p50_us / 1000:.2f} ms, "
                    f"p99 {m.p99_us / 1000:.2f} ms")  # fmt: skip
        for server in servers.values():
            wait_for_workers(server)  # both still live, both still reporting
            purge(server)  # give the Redis memory back to its other users
    print(text_table(summary_rows(list(results.values()), args.connections)))
    print()
    print("\n".join(findings(results, args.limit_per_second)))
    write_section(args.output, SECTION, section(results, args, command))
    log(f"section {SECTION!r} written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
