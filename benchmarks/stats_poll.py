"""Dashboards polling ``/stats``: polls per second and latency of one service worker.

One service worker (uvloop, httptools) pinned to CPU 0, on the servers of ``DATABASE_URL`` and
``REDIS_URL``, or embedded ones when both are unset; ``wrk`` (one thread, pinned to CPU 1)
polls ``GET /stats`` with ``--connections`` keep-alive clients for ``--seconds``, after a
2-second warm-up. Prints polls per second, p50 and p99, and the worker's CPU per poll.

Usage::

    .venv/bin/python -m benchmarks.stats_poll [--seconds 10] [--connections 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks import workloads
from benchmarks.measure import check_statuses, run_wrk
from benchmarks.run import database_servers
from benchmarks.servers import free_port, serve

STATS_PATH = "/stats"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=10, help="length of the measured run")
    p.add_argument("--connections", type=int, default=8, help="concurrent polling clients")
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    with (
        database_servers(dict(os.environ)) as env,
        tempfile.TemporaryDirectory(prefix="stats-poll-") as files,
    ):
        script = Path(files) / "stats.lua"
        script.write_text(workloads.fixed(STATS_PATH))
        server_env = {**env, "CACHE_PREFIX": f"bench-stats-{free_port()}"}
        factory = "service.app:create_app"
        with serve("service", factory, server_env, cpu=0, ready_path=STATS_PATH) as server:
            run_wrk(server, script, seconds=2, connections=args.connections)  # warm-up
            m = run_wrk(server, script, seconds=args.seconds, connections=args.connections)
    check_statuses("stats", m, {"200"})
    print(
        f"GET /stats, 1 worker, {args.connections} keep-alive clients (wrk), {args.seconds} s:"
        f" {m.requests_per_second:,.0f} polls/s, p50 {m.p50_us / 1000:.2f} ms,"
        f" p99 {m.p99_us / 1000:.2f} ms, {m.cpu_us_per_request:.0f} µs CPU per poll"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
