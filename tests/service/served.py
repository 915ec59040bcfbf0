"""``content-service serve`` as a subprocess, as in production, for tests of what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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
