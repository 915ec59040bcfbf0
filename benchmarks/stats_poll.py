"""Dashboards polling ``/stats``: polls per second and latency of one service worker.

Starts ``content-service serve --workers 1`` (pinned to CPU 0 when ``taskset`` exists) on the
servers of ``DATABASE_URL`` and ``REDIS_URL``, or on embedded ones when both are unset, then
polls ``GET /stats`` with ``--connections`` concurrent keep-alive clients for ``--seconds``:
with ``wrk`` (Debian package ``wrk``, one thread, pinned to CPU 1) when installed, else with
httpx clients in this process. Prints polls per second and the p50 and p99 latencies.

Usage::

    .venv/bin/python -m benchmarks.stats_poll [--seconds 10] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from benchmarks.servers import free_port, pinned

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wait_until_ready(base_url: str, timeout_seconds: float) -> None:
    """Wait until ``/stats`` answers 200.

    Raises:
        TimeoutError: it did not within ``timeout_seconds``.
    """
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/stats", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{base_url}/stats did not answer within {timeout_seconds} s")


def poll_with_wrk(url: str, seconds: int, connections: int) -> tuple[float, float, float]:
    """Return (polls per second, p50 ms, p99 ms) measured by wrk.

    Raises:
        RuntimeError: wrk failed, or some answers were not 2xx.
    """
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    done = subprocess.run(pinned(1, command), capture_output=True, text=True, check=False)
    out = done.stdout
    if done.returncode or "Non-2xx" in out:
        raise RuntimeError(f"wrk failed or got errors:\n{out}{done.stderr}")

    def latency_ms(percentile: str) -> float:
        match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if match is None:
            raise RuntimeError(f"no {percentile}% latency in:\n{out}")
        return float(match[1]) * _UNITS[match[2]]

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None:
        raise RuntimeError(f"no Requests/sec in:\n{out}")
    return float(rate[1]), latency_ms("50"), latency_ms("99")


async def poll_with_httpx(url: str, seconds: int, connections: int) -> tuple[float, float, float]:
    """Return (polls per second, p50 ms, p99 ms) measured by httpx clients in this process."""
    durations: list[float] = []
    stop = time.monotonic() + seconds

    async def client() -> None:
        async with httpx.AsyncClient(timeout=10) as c:
            while time.monotonic() < stop:
                started = time.perf_counter()
                r = await c.get(url)
                r.raise_for_status()
                durations.append((time.perf_counter() - started) * 1000)

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = time.monotonic() - started
    cuts = statistics.quantiles(durations, n=100)
    return len(durations) / elapsed, cuts[49], cuts[98]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=10, help="length of the measured run")
    p.add_argument("--connections", type=int, default=8, help="concurrent polling clients")
    args = p.parse_args(argv)

    port = free_port()
    env = {**os.environ, "CACHE_PREFIX": f"bench-stats-{port}"}
    data_dir = None
    if not (env.get("DATABASE_URL") and env.get("REDIS_URL")):
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        data_dir = tempfile.mkdtemp(prefix="stats-poll-")
        env["DATA_DIR"] = data_dir
    command = [sys.executable, "-m", "service", "serve", "--workers", "1", "--port", str(port),
               "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(pinned(0, command), env=env)
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_ready(base_url, 60)
        url = f"{base_url}/stats"
        if shutil.which("wrk"):
            poll_with_wrk(url, 2, args.connections)  # warm-up
            tool = "wrk"
            rate, p50, p99 = poll_with_wrk(url, args.seconds, args.connections)
        else:
            tool = "httpx"
            rate, p50, p99 = asyncio.run(poll_with_httpx(url, args.seconds, args.connections))
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(
        f"GET /stats, 1 worker, {args.connections} keep-alive clients ({tool}), {args.seconds} s:"
        f" {rate:,.0f} polls/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
