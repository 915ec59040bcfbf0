"""One wrk run against one server, and what it measured.

wrk runs pinned to CPU 1 with one thread by default; its Lua script (see
:mod:`benchmarks.workloads`) prints ``@ name value`` lines, parsed here. The server's CPU time
is read before and after the run, so CPU per request counts everything the worker did during
it (background tasks included).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.servers import Server, pinned


class MeasureError(RuntimeError):
    """wrk failed, or the target answered what it must not."""


@dataclass(frozen=True)
class Measurement:
    """The figures of one wrk run.

    Attributes:
        requests: completed requests.
        seconds: the run's duration, in seconds.
        p50_us, p99_us, p999_us: latency percentiles (50, 99, 99.9), in microseconds.
        cpu_us_per_request: the server's CPU time (user + system) over the run divided by
            ``requests``, in microseconds.
        socket_errors: connect, read, write and timeout errors.
        statuses: count by HTTP status code (as text).
        caches: count by ``X-Cache`` value (``-`` when absent).
        encodings: count by ``Content-Encoding`` value (``identity`` when absent).
        details: count by the ``detail`` parameter of ``Cache-Status`` (``l1``: an answer
            from the in-process tier; ``-`` when absent).
    """

    requests: int
    seconds: float
    p50_us: int
    p99_us: int
    p999_us: int
    cpu_us_per_request: float
    socket_errors: int
    statuses: dict[str, int] = field(default_factory=dict)
    caches: dict[str, int] = field(default_factory=dict)
    encodings: dict[str, int] = field(default_factory=dict)
    details: dict[str, int] = field(default_factory=dict)

    @property
    def requests_per_second(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    def share(self, counts: dict[str, int], value: str) -> float:
        """Return the fraction of the counted responses in ``counts`` that are ``value``."""
        total = sum(counts.values())
        return counts.get(value, 0) / total if total else 0.0


def parse(output: str, cpu_seconds: float) -> Measurement:
    """Return the measurement printed by a workload script's ``done()``.

    Raises:
        MeasureError: a figure is missing.
    """
    values: dict[str, str] = {}
    counts: dict[str, dict[str, int]] = {
        "statuses": {}, "caches": {}, "encodings": {}, "details": {}
    }  # fmt: skip
    for line in output.splitlines():
        if not line.startswith("@ "):
            continue
        name, value = line[2:].rsplit(" ", 1)
        group, sep, key = name.partition(":")
        if sep and group in counts:
            counts[group][key] = int(value)
        else:
            values[name] = value
    try:
        requests = int(values["requests"])
        return Measurement(
            requests=requests,
            seconds=int(values["duration_us"]) / 1e6,
            p50_us=int(values["p50"]),
            p99_us=int(values["p99"]),
            p999_us=int(values["p99.9"]),
            cpu_us_per_request=cpu_seconds * 1e6 / requests if requests else 0.0,
            socket_errors=int(values["errors"]),
            **counts,
        )
    except KeyError as exc:
        raise MeasureError(f"wrk printed no {exc}:\n{output}") from None


def run_wrk(
    server: Server,
    script: Path,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    cpu: int = 1,
    script_args: tuple[str, ...] = (),
) -> Measurement:
    """Run wrk with ``script`` (and ``script_args`` for its ``init``) against ``server``.

    Returns:
        What the run measured.

    Raises:
        MeasureError: wrk exited with an error or printed no figures.
    """
    command = pinned(cpu, [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(script), server.base_url, "--", *script_args,
    ])  # fmt: skip
    before = server.cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True)
    used = server.cpu_seconds() - before
    if done.returncode != 0:
        raise MeasureError(f"wrk exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return parse(done.stdout, used)


def check_statuses(name: str, m: Measurement, expected: set[str]) -> None:
    """Raise when the run saw socket errors or any status outside ``expected``.

    Raises:
        MeasureError: with the counts, naming the target.
    """
    unexpected = {s: n for s, n in m.statuses.items() if s not in expected}
    if unexpected or m.socket_errors or not m.requests:
        raise MeasureError(
            f"{name}: expected only {sorted(expected)}, got statuses {m.statuses}, "
            f"{m.socket_errors} socket errors, {m.requests} requests"
        )
