"""Zipfian hits on a Redis Cluster side by side with the same hits on one Redis.

Two service workers (one uvicorn worker each, pinned to CPU 0, as in :mod:`benchmarks.run`)
read the same articles: one on a private standalone ``redis-server``, one on a private Redis
Cluster of 3 masters and 3 replicas (``REDIS_MODE=cluster``), both started here on free ports
from the machine's ``redis-server`` and ``redis-cli`` and killed at the end. Each service's
cache is filled with every article first (a walk), then both are loaded with the Zipfian
script of ``hit_zipf`` in interleaved rounds (wrk from CPU 1), so that the noise of a shared
machine falls on both alike: compare the ratio of one run.

PostgreSQL comes from ``DATABASE_URL`` (with ``REDIS_URL``, which only the seeding uses), or
embedded servers when both are unset.

Usage::

    .venv/bin/python -m benchmarks.cluster [--rounds 3] [--seconds 10] [--articles 5000]
        [--connections 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from benchmarks import workloads
from benchmarks.measure import Measurement, check_statuses, run_wrk
from benchmarks.report import text_table
from benchmarks.run import (
    ARTICLE_PATH,
    IDLE_PATH,
    database_servers,
    ensure_data,
    log,
    purge,
    service_env,
)
from benchmarks.servers import serve
from tests.faults.servers import PrivateRedis, PrivateRedisCluster

PREFIX = "bench-cluster"


def options(argv: list[str] | None) -> argparse.Namespace:
    """Return the parsed command line."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster", description=__doc__.splitlines()[0]
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--seconds", type=int, default=10, help="seconds per mode per round")
    p.add_argument("--articles", type=int, default=5_000, help="seeded articles (N)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (-c)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print hits per second, p50 and p99 of each mode."""
    args = options(argv)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_MODE"}
    with ExitStack() as stack, database_servers(env) as base:
        files = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-cluster-")))
        slugs = ensure_data(base, args.articles)
        (files / "slugs.txt").write_text("\n".join(slugs) + "\n")
        (files / "zipf.lua").write_text(workloads.zipf(ARTICLE_PATH, str(files / "slugs.txt")))
        (files / "walk.lua").write_text(
            workloads.walk(ARTICLE_PATH, str(files / "slugs.txt"), IDLE_PATH, args.connections)
        )
        standalone = PrivateRedis()
        standalone.start()
        stack.callback(standalone.kill)
        cluster = PrivateRedisCluster()
        stack.callback(cluster.stop)
        cluster.start()
        log(f"standalone Redis on {standalone.port}; cluster seeds {cluster.url}")
        modes = {
            "standalone": {**service_env(base, PREFIX), "REDIS_URL": standalone.url},
            "cluster": {
                **service_env(base, PREFIX),
                "REDIS_URL": cluster.url,
                "REDIS_MODE": "cluster",
            },
        }
        servers = {
            name: stack.enter_context(
                serve(name, "service.app:create_app", mode_env, cpu=0, ready_path=IDLE_PATH)
            )
            for name, mode_env in modes.items()
        }
        for name, server in servers.items():
            purge(server)
            m = run_wrk(server, files / "walk.lua", seconds=3600, connections=args.connections)
            check_statuses(f"{name} warm-up", m, {"200"})
            log(f"{name}: warmed {m.requests} articles ({m.caches})")
        rounds: dict[str, list[Measurement]] = {name: [] for name in servers}
        for i in range(args.rounds):
            for name, server in servers.items():
                m = run_wrk(
                    server, files / "zipf.lua", seconds=args.seconds, connections=args.connections
                )
                check_statuses(name, m, {"200"})
                rounds[name].append(m)
                log(
                    f"round {i + 1} {name}: {m.requests_per_second:.0f} req/s, "
                    f"p50 {m.p50_us / 1000:.2f} ms, p99 {m.p99_us / 1000:.2f} ms, "
                    f"HIT {m.share(m.caches, 'HIT'):.3f}"
                )
    print(text_table(result_rows(rounds)))
    base_rate = statistics.median(m.requests_per_second for m in rounds["standalone"])
    rate = statistics.median(m.requests_per_second for m in rounds["cluster"])
    print(f"\ncluster hits/s over standalone: {rate / base_rate:.2f}")
    return 0


def result_rows(rounds: dict[str, list[Measurement]]) -> list[list[str]]:
    """Return the table: mode, median hits/s, p50, p99 (ms), CPU per request, hit share."""
    rows = [["mode", "hits/s", "p50 ms", "p99 ms", "CPU µs/req", "HIT share"]]
    for name, ms in rounds.items():
        rows.append(
            [
                name,
                f"{statistics.median(m.requests_per_second for m in ms):.0f}",
                f"{statistics.median(m.p50_us for m in ms) / 1000:.2f}",
                f"{statistics.median(m.p99_us for m in ms) / 1000:.2f}",
                f"{statistics.median(m.cpu_us_per_request for m in ms):.0f}",
                f"{statistics.median(m.share(m.caches, 'HIT') for m in ms):.3f}",
            ]
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
