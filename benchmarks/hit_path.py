"""Hit-path throughput, side by side: constant bytes, one bare Redis GET, a service hit.

Each target runs in its own uvicorn process (one worker, uvloop, httptools, no access log)
pinned to CPU 0 when ``taskset`` exists; ``wrk`` (Debian package ``wrk``) loads it from CPU 1.
The targets are measured in turn, ``--rounds`` times, and the medians and their ratios are
printed: this machine is noisy, so compare ratios from one run, not figures across runs.

Usage (servers from ``DATABASE_URL``/``REDIS_URL``, or embedded ones when both are unset)::

    .venv/bin/python -m benchmarks.hit_path [--rounds 5] [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

TOKEN = "bench-editor-token"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(factory: str, env: dict[str, str]) -> Iterator[str]:
    """Run ``uvicorn --factory factory`` and yield its base URL."""
    port = free_port()
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    cmd = [
        *pin, sys.executable, "-m", "uvicorn", "--factory", factory, "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/health/live" if "service" in factory else base + "/")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{factory} did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def wrk(url: str, seconds: int, connections: int) -> float:
    """Return wrk's requests per second against ``url``."""
    pin = ["taskset", "-c", "1"] if shutil.which("taskset") else []
    out = subprocess.run(
        [*pin, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None or "Non-2xx" in out:
        raise RuntimeError(f"wrk failed or saw errors:\n{out}")
    return float(match.group(1))


def prepare_article(base: str) -> str:
    """Create one published article through the API, warm it, and return its URL."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    httpx.post(
        f"{base}/api/v1/authors", json={"username": "bench", "display_name": "Bench"}, headers=auth
    )
    httpx.post(
        f"{base}/api/v1/articles",
        json={"title": "Benchmark article", "slug": "benchmark-article", "body": "x" * 2000,
              "author": "bench", "status": "published"},
        headers=auth,
    )  # fmt: skip
    url = f"{base}/api/v1/articles/benchmark-article"
    for _ in range(2):
        r = httpx.get(url)
    if r.status_code != 200 or r.headers.get("x-cache") != "HIT":
        raise RuntimeError(f"the article is not served from the cache: {r.status_code} {r.headers}")
    return url


def main() -> int:
    """Run the benchmark and print the medians and ratios; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    env = dict(os.environ, API_TOKENS=f"{TOKEN}:editor", CACHE_PREFIX="bench")
    embedded_servers = None
    if not env.get("DATABASE_URL") and not env.get("REDIS_URL"):
        from service import embedded

        embedded_servers = embedded.start(Path(tempfile.mkdtemp(prefix="content-bench-")))
        env["DATABASE_URL"], env["REDIS_URL"] = (
            embedded_servers.database_url,
            embedded_servers.redis_url,
        )
    try:
        subprocess.run([sys.executable, "-m", "service", "migrate"], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        results: dict[str, list[float]] = {"constant": [], "redis_get": [], "service_hit": []}
        with (
            server("benchmarks.baselines:constant", env) as constant,
            server("benchmarks.baselines:redis_get", env) as bare,
            server("service.app:create_app", env) as service,
        ):
            targets = {"constant": constant + "/", "redis_get": bare + "/",
                       "service_hit": prepare_article(service)}  # fmt: skip
            for _ in range(args.rounds):
                for name, url in targets.items():
                    results[name].append(wrk(url, args.seconds, args.connections))
    finally:
        if embedded_servers is not None:
            embedded_servers.stop()
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"{'target':<12} {'median req/s':>12}   runs")
    for name, values in results.items():
        print(f"{name:<12} {medians[name]:>12.0f}   {', '.join(f'{v:.0f}' for v in values)}")
    print(f"service_hit / redis_get = {medians['service_hit'] / medians['redis_get']:.2f}")
    print(f"redis_get / constant    = {medians['redis_get'] / medians['constant']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
