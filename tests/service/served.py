"""``content-service serve`` as a subprocess, as in production, for tests of what it prints."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.multiprocess import MultiProcessCollector

from tests.faults.servers import free_port, stop_process, wait_for_port


@dataclass(frozen=True)
class Served:
    port: int
    log: Path  # standard output and error of the server
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serving(
    database_url: str, redis_url: str, log: Path, *args: str, **env: str
) -> Iterator[Served]:
    """Run ``serve --port P *args`` on the given servers with ``env`` added; stop it after.

    ``PROMETHEUS_MULTIPROC_DIR`` is not inherited: ``serve`` makes a folder unless ``env``
    names one.
    """
    port = free_port()
    inherited = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    environment = {
        **inherited,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CACHE_PREFIX": f"served-{port}",
        "STATS_FLUSH_INTERVAL_SECONDS": "0.2",
        **env,
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--port", str(port), *args],
            env=environment,
            stdout=output,
            stderr=output,
        )
        try:
            wait_for_port(port, 30)
            yield Served(port, log, process)
        finally:
            if process.poll() is None:
                stop_process(process)


def descendants(pid: int) -> list[int]:
    """Return the process ids of every descendant of ``pid`` (from ``/proc``), parents first."""
    children: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:  # it exited meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(text.split(" ", 1)[0]))
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def kill_instance(served: Served) -> list[int]:
    """SIGKILL ``serve`` and every process under it (its workers), as a crashed host would.

    The supervisor goes first, so that it restarts no worker. Returns the ids of the processes
    killed.
    """
    processes = [served.process.pid, *descendants(served.process.pid)]
    for pid in processes:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    served.process.wait()
    return processes


def requests_by_pid(
    multiproc_dir: Path, route_prefix: str = "", method: str | None = None
) -> dict[int, float]:
    """Return each worker's ``http_requests_total`` from its own sample file.

    Args:
        multiproc_dir: the instance's ``PROMETHEUS_MULTIPROC_DIR``.
        route_prefix: count only the routes (templates) that start with it; all by default.
        method: count only this method's requests; all by default.

    Returns:
        The answers of each worker (by process id) that has published some, killed ones too.
    """
    counts: dict[int, float] = {}
    for path in glob.glob(str(multiproc_dir / "counter_*.db")):
        pid = int(Path(path).stem.rsplit("_", 1)[1])
        counts[pid] = sum(
            s.value
            for family in MultiProcessCollector.merge([path])  # type: ignore[no-untyped-call]
            for s in family.samples
            if s.name == "http_requests_total"
            and s.labels["route"].startswith(route_prefix)
            and method in (None, s.labels["method"])
        )
    return counts
