"""Warming: how fast a job fills the cache, and what it costs the hits served meanwhile.

One service worker (uvloop, httptools) pinned to CPU 0; wrk on CPU 1. The articles are split:
the hot set (every slug but the last ``--keys``) is loaded first and read with Zipfian hits;
the warm set (the last ``--keys`` slugs) is what the jobs load, through
``POST /admin/cache/warm`` with source ``keys``, in the worker that serves the hits.

Each round measures, in this order:

1. ``warm alone``: the warm set's entries are deleted, one job loads them; its keys/s and
   seconds (from the job's own ``started_at`` and ``finished_at``);
2. ``hits``: Zipfian hits over the hot set for ``--seconds``;
3. ``hits during warm``: the same, while jobs run back to back (delete the warm set, warm it,
   again) until wrk ends.

Usage::

    .venv/bin/python -m benchmarks.warming [--rounds 3] [--seconds 10] [--keys 10000]
        [--articles 100000] [--connections 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import httpx
import redis

from benchmarks import workloads
from benchmarks.measure import Measurement, check_statuses, run_wrk
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
from benchmarks.servers import Server, serve
from cache import KeyScheme

PREFIX = "bench-warm"


def options(argv: list[str] | None) -> argparse.Namespace:
    """Return the parsed command line."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.warming", description=__doc__.splitlines()[0]
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=10, help="seconds of hits per measurement")
    p.add_argument("--keys", type=int, default=10_000, help="article keys per warming job")
    p.add_argument("--articles", type=int, default=100_000)
    p.add_argument("--connections", type=int, default=64)
    return p.parse_args(argv)


def _seconds_between(start: str, end: str) -> float:
    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return (parse(end) - parse(start)).total_seconds()


class Warmer:
    """Runs warming jobs of one key set on ``server`` and keeps what each job reported."""

    def __init__(self, server: Server, redis_url: str, slugs: list[str]) -> None:
        self.client = httpx.Client(base_url=server.base_url, headers=AUTH, timeout=60)
        self.redis = redis.Redis.from_url(redis_url)
        namespace = KeyScheme(PREFIX).namespace("article")
        self.entry_keys = [namespace.key(s).redis_key for s in slugs]
        self.body = {"source": "keys", "namespace": "article", "keys": slugs}
        self.jobs: list[dict[str, object]] = []

    def once(self) -> dict[str, object]:
        """Delete the set's entries, warm them with one job, return the finished job.

        Raises:
            RuntimeError: the job did not start, or did not end as done.
        """
        for i in range(0, len(self.entry_keys), 1000):
            self.redis.unlink(*self.entry_keys[i : i + 1000])
        r = self.client.post("/admin/cache/warm", json=self.body)
        if r.status_code != 202:
            raise RuntimeError(f"warm answered {r.status_code}: {r.text}")
        location = r.headers["location"]
        while True:
            time.sleep(0.1)
            job = self.client.get(location).json()
            if job["state"] not in ("queued", "running"):
                break
        if job["state"] != "done" or job["errors"]:
            raise RuntimeError(f"warming job ended {job['state']}: {job}")
        job["seconds"] = _seconds_between(job["started_at"], job["finished_at"])
        self.jobs.append(job)
        return job

    def until(self, stop: threading.Event) -> None:
        """Run jobs back to back until ``stop`` is set."""
        while not stop.is_set():
            self.once()


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the figures; return the exit status."""
    args = options(argv)
    with database_servers(dict(os.environ)) as env, ExitStack() as stack:
        slugs = ensure_data(env, args.articles)
        hot, warm_set = slugs[: -args.keys], slugs[-args.keys :]
        files = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="content-warm-")))
        (files / "hot.txt").write_text("\n".join(hot) + "\n")
        (files / "zipf.lua").write_text(workloads.zipf(ARTICLE_PATH, str(files / "hot.txt")))
        walk = workloads.walk(ARTICLE_PATH, str(files / "hot.txt"), IDLE_PATH, args.connections)
        (files / "walk.lua").write_text(walk)
        server = stack.enter_context(
            serve("service", "service.app:create_app", service_env(env, PREFIX), cpu=0,
                  ready_path=IDLE_PATH)
        )  # fmt: skip
        purge(server)
        log(f"loading the {len(hot)} hot articles")
        run_wrk(server, files / "walk.lua", seconds=3600, connections=args.connections)
        warmer = Warmer(server, env["REDIS_URL"], warm_set)
        alone: list[dict[str, object]] = []
        hits: list[Measurement] = []
        during: list[Measurement] = []
        for i in range(args.rounds):
            alone.append(warmer.once())
            log(f"round {i + 1} warm alone: {alone[-1]['seconds']:.2f} s")
            hits.append(run_wrk(server, files / "zipf.lua", seconds=args.seconds,
                                connections=args.connections))  # fmt: skip
            check_statuses("hits", hits[-1], {"200"})
            stop = threading.Event()
            before = len(warmer.jobs)
            thread = threading.Thread(target=warmer.until, args=(stop,))
            thread.start()
            during.append(run_wrk(server, files / "zipf.lua", seconds=args.seconds,
                                  connections=args.connections))  # fmt: skip
            stop.set()
            thread.join()
            check_statuses("hits during warm", during[-1], {"200"})
            jobs = len(warmer.jobs) - before
            log(f"round {i + 1}: p99 {hits[-1].p99_us / 1000:.2f} ms alone, "
                f"{during[-1].p99_us / 1000:.2f} ms during {jobs} jobs")  # fmt: skip
        purge(server)
    seconds = statistics.median(float(j["seconds"]) for j in alone)  # type: ignore[arg-type]
    loaded = statistics.median(int(j["done"]) for j in alone)  # type: ignore[call-overload]
    p99_alone = statistics.median(m.p99_us for m in hits) / 1000
    p99_during = statistics.median(m.p99_us for m in during) / 1000
    rps_alone = statistics.median(m.requests_per_second for m in hits)
    rps_during = statistics.median(m.requests_per_second for m in during)
    print(f"warming {loaded} article keys alone: {seconds:.2f} s ({loaded / seconds:,.0f} keys/s)"
          f" [goal < 10 s]")  # fmt: skip
    print(f"hits p99: {p99_alone:.2f} ms alone, {p99_during:.2f} ms during warming jobs: "
          f"{p99_during / p99_alone:.2f} x [goal <= 1.5]")  # fmt: skip
    print(f"hits p50: {statistics.median(m.p50_us for m in hits) / 1000:.2f} ms alone, "
          f"{statistics.median(m.p50_us for m in during) / 1000:.2f} ms during")  # fmt: skip
    print(f"hits req/s: {rps_alone:,.0f} alone, {rps_during:,.0f} during")
    print(
        f"rounds: {args.rounds} x {args.seconds} s, wrk -t1 -c{args.connections}; "
        f"medians over rounds"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
