"""``content-service serve`` instances sharing one database and one Redis, and what they report.

Each instance runs as a subprocess (:func:`tests.service.served.serving`) with its own
``INSTANCE_NAME`` and the ``CACHE_PREFIX`` of its group: instances of one group share every
cache key, lease and invalidation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx

from tests.service.served import Served, serving

#: Settings of every instance: writes by the editor token; TTLs long enough that the near cache
#: (L1) holds the hot entries between writes, short stale periods so that entries still expire,
#: are served stale and refreshed during a run; small pools (four workers share the database).
NEAR_SETTINGS: dict[str, str] = {
    "API_TOKENS": "editor-token:editor",
    "CACHE_TTLS": "article=1,articles=1",
    "CACHE_JITTER_RATIO": "0.3",
    "CACHE_STALE_WHILE_REVALIDATE_SECONDS": "0.5",
    "CACHE_EARLY_REFRESH_BETA": "1.0",
    "CACHE_L1_LEASE_MS": "500",
    "DB_POOL_SIZE": "4",
    "DB_MAX_OVERFLOW": "4",
}
#: every holder's lease, milliseconds (CACHE_L1_LEASE_MS above)
LEASE_MS = int(NEAR_SETTINGS["CACHE_L1_LEASE_MS"])
#: The longest a write may wait for a holder that does not answer: the lease, and a margin for a
#: loaded two-core machine (a bound on the wait, not a measure of it), seconds.
WRITE_WAIT_BOUND_SECONDS = LEASE_MS / 1000 + 1.0
#: Attempts at starting an instance whose worker exits while starting (see running_instance).
STARTS = 2


@dataclass(frozen=True)
class Instance:
    """A running ``serve`` subprocess of ``workers`` workers."""

    name: str
    served: Served
    workers: int
    pids: tuple[int, ...]  # of its workers, as /stats listed them once all had started

    @property
    def url(self) -> str:
        return self.served.url


@contextmanager
def running_instance(
    database_url: str,
    redis_url: str,
    folder: Path,
    name: str,
    *,
    prefix: str,
    workers: int,
    **env: str,
) -> Iterator[Instance]:
    """Run an instance; stop it (SIGTERM, workers and all) after.

    It is yielded once every worker is listed in ``/stats`` (each has its app and its Redis
    connections).

    Args:
        database_url, redis_url: the servers (``redis_url`` may go through a proxy).
        folder: where its log goes (``<name>.log``).
        name: its ``INSTANCE_NAME``.
        prefix: the ``CACHE_PREFIX`` of its group.
        workers: ``serve --workers``.
        env: settings on top of :data:`NEAR_SETTINGS`.

    Raises:
        RuntimeError: it exited while starting, :data:`STARTS` times.
        TimeoutError: its workers were not all listed within 30 s.
    """
    settings = {**NEAR_SETTINGS, "CACHE_PREFIX": prefix, "INSTANCE_NAME": name, **env}
    for attempt in range(1, STARTS + 1):
        log = folder / (f"{name}.log" if attempt == 1 else f"{name}-{attempt}.log")
        with serving(database_url, redis_url, log, "--workers", str(workers), **settings) as served:
            try:
                pids = wait_for_workers(served, name, workers, 30)
            except RuntimeError:
                if attempt == STARTS:
                    raise
                # A worker may fail its startup when another creates its metrics file at the
                # same moment (see the log); the instance is started again.
                print(f"\ninstance {name} exited while starting (see {log}); starting it again")
                continue
            yield Instance(name, served, workers, tuple(pids))
            return


def get_stats(url: str) -> dict[str, Any]:
    """Return ``url``'s ``/stats`` JSON object (expects 200)."""
    r = httpx.get(f"{url}/stats", timeout=5)
    assert r.status_code == 200, (r.status_code, r.text)
    return cast(dict[str, Any], r.json())


def listed_pids(stats: dict[str, Any], instance: str) -> list[int]:
    """Return the pids of ``instance``'s workers listed in ``stats``'s ``db_pool.workers``."""
    return sorted(
        int(row["pid"]) for row in stats["db_pool"]["workers"] if row["instance"] == instance
    )


def wait_for_workers(served: Served, name: str, workers: int, timeout_seconds: float) -> list[int]:
    """Wait until ``/stats`` lists ``workers`` workers of instance ``name``; return their pids.

    Raises:
        RuntimeError: the instance exited.
        TimeoutError: they were not all listed within ``timeout_seconds``.
    """
    deadline = time.monotonic() + timeout_seconds
    pids: list[int] = []
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"instance {name} exited: see {served.log}")
        try:
            ready = httpx.get(f"{served.url}/health/ready", timeout=2)
            if ready.status_code == 200:
                pids = listed_pids(get_stats(served.url), name)
                if len(pids) == workers:
                    return pids
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"instance {name}: workers listed {pids} after {timeout_seconds} s")


def l1_workers(stats: dict[str, Any], instance: str) -> dict[int, dict[str, Any]]:
    """Return the ``l1.workers`` rows of ``instance`` in ``stats``, by pid."""
    return {
        int(row["pid"]): dict(row) for row in stats["l1"]["workers"] if row["instance"] == instance
    }
