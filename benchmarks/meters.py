"""Server-wide counters of a Redis and of one PostgreSQL database, read before and after a load.

What a load cost the servers, from what they count themselves:

- Redis: ``INFO commandstats`` (calls by command, after ``CONFIG RESETSTAT``), ``INFO cpu``
  (``used_cpu_user`` plus ``used_cpu_sys``: every thread of the server) and ``INFO stats``
  (``total_net_input_bytes``, ``total_net_output_bytes``). Redis counts the commands that a
  script runs (``redis.call``) under their own names as well as the script's ``EVALSHA``, and
  its counters are server-wide: the Redis must serve this load alone.
- PostgreSQL: ``pg_stat_database`` of the load's database (transactions committed and rolled
  back, rows returned, fetched, inserted, updated, deleted), read on a connection to the
  ``postgres`` database so that reading adds nothing to them; and the CPU time of the
  database's client backends, read from ``/proc/{pid}/schedstat`` (nanoseconds) when the
  server runs on this host (absent otherwise). Parallel workers are not among them: they
  end with their query, taking their CPU time with them (their transactions are counted). A
  backend publishes its counts at most once a second and, once idle, within 10 seconds
  (PostgreSQL 15): read them after a pause that long.

Counters are kept as one flat mapping of figure name to value, so that a :class:`Usage`
subtracts and divides them alike: ``redis_calls:{command}`` (lowercase, subcommands as
``config|resetstat``), ``redis_cpu_us``, ``redis_in_bytes``, ``redis_out_bytes``,
``pg_transactions``, ``pg_rows_returned``, ``pg_rows_fetched``, ``pg_rows_inserted``,
``pg_rows_updated``, ``pg_rows_deleted`` and ``pg_cpu_us``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import redis

#: Prefix of the figures that count Redis commands, by lowercase command name.
CALLS = "redis_calls:"
#: The meter's own commands, which a reading adds to the next one: they are taken off.
OWN_COMMANDS = {"info": 1}
#: Not counted at all: the reset that starts each reading's window.
IGNORED_COMMANDS = frozenset({"config|resetstat"})

_DATABASE = """
SELECT xact_commit + xact_rollback, tup_returned, tup_fetched, tup_inserted, tup_updated,
       tup_deleted
FROM pg_stat_database WHERE datname = $1
"""
_COUNTS = (
    "transactions",
    "rows_returned",
    "rows_fetched",
    "rows_inserted",
    "rows_updated",
    "rows_deleted",
)
_BACKENDS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'"
)


@dataclass(frozen=True)
class Usage:
    """What the servers did over a window.

    Attributes:
        seconds: the window's length, in seconds.
        figures: figure name to amount (names in the module's docstring); ``pg_cpu_us`` is
            absent when the backends' CPU time cannot be read.
    """

    seconds: float
    figures: Mapping[str, float]

    def minus_background(self, rates: Usage) -> Usage:
        """Return this usage less ``rates`` (a usage per second) over this window's length.

        Only this usage's figures are kept, and none goes below 0: the background's rate is
        an estimate. (A command the window did not see is one the background did not run in
        it.)
        """
        return Usage(
            self.seconds,
            {
                n: max(0.0, v - rates.figures.get(n, 0.0) * self.seconds)
                for n, v in self.figures.items()
            },
        )

    def merged(self, other: Usage) -> Usage:
        """Return this usage's figures and ``other``'s together (``other``'s win a clash).

        The longer of the two windows is kept as the length.
        """
        return Usage(max(self.seconds, other.seconds), {**self.figures, **other.figures})

    def divided(self, count: float) -> Usage:
        """Return every figure divided by ``count`` (per request, or per second)."""
        return Usage(self.seconds, {n: v / count for n, v in self.figures.items()})

    def calls(self) -> dict[str, float]:
        """Return the Redis commands by lowercase name, most first."""
        found = {n.removeprefix(CALLS): v for n, v in self.figures.items() if n.startswith(CALLS)}
        return dict(sorted(found.items(), key=lambda item: (-item[1], item[0])))

    def total_calls(self) -> float:
        """Return the Redis commands of every name, scripts' commands included."""
        return sum(self.calls().values())


def median_usage(usages: Sequence[Usage]) -> Usage:
    """Return the median of each figure over ``usages`` (one absent from any is left out).

    Raises:
        statistics.StatisticsError: ``usages`` is empty.
    """
    names = set().union(*(u.figures.keys() for u in usages))
    figures = {
        n: statistics.median(u.figures.get(n, 0.0) for u in usages)
        for n in names
        if n.startswith(CALLS) or all(n in u.figures for u in usages)
    }
    return Usage(statistics.median(u.seconds for u in usages), figures)


def _cpu_us(pids: set[int]) -> dict[int, float] | None:
    """Return each PostgreSQL process's CPU time so far, in µs, or None when one is not here."""
    found = {}
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
                return None  # a process of this host with the id of a remote backend
            found[pid] = int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e3
        except OSError:  # not on this host, or it ended while being read
            return None
    return found


@dataclass(frozen=True)
class Reading:
    """The counters at one moment.

    Attributes:
        at: when they were read (``time.monotonic()``), in seconds.
        figures: figure name to the counter's value (see the module's docstring).
        backend_cpu_us: the database's client backends' CPU time so far, in µs, by process
            id; None when it cannot be read.
    """

    at: float
    figures: dict[str, float]
    backend_cpu_us: dict[int, float] | None


class Meters:
    """Reads the counters of one Redis and one PostgreSQL database.

    A window starts with :meth:`start`; :meth:`prompt` returns what Redis did and the
    backends' CPU time, which are known at once, and :meth:`settled` the database's counts,
    once the backends have published them. Not safe to share between threads. :meth:`close`
    closes its Redis client.

    Args:
        redis_url: the Redis's URL (``redis://`` or ``unix://``).
        dsn: a libpq URL of the PostgreSQL server (any database: the counters are read on
            the ``postgres`` database).
        database: the database whose counters are read.
    """

    def __init__(self, redis_url: str, dsn: str, database: str) -> None:
        self._redis = redis.Redis.from_url(redis_url)
        self._dsn = dsn
        self._database = database

    def close(self) -> None:
        """Close the Redis client."""
        self._redis.close()

    def redis_clients(self) -> int:
        """Return how many clients are connected to Redis, this one included."""
        return int(self._redis.info("clients")["connected_clients"])

    def database_backends(self) -> int:
        """Return how many client backends are connected to the database."""
        return len(asyncio.run(self._postgres())[1])

    def start(self) -> Reading:
        """Reset Redis's statistics (``CONFIG RESETSTAT``); return every counter to measure from."""
        self._redis.config_resetstat()
        at = time.monotonic()
        figures = self._redis_figures()
        counts, pids = asyncio.run(self._postgres())
        return Reading(at, {**figures, **counts}, _cpu_us(pids))

    def prompt(self, start: Reading) -> Usage:
        """Return Redis's figures and the backends' CPU time (``pg_cpu_us``) since ``start``.

        A backend that ended within the window takes its CPU time with it; one that started
        within it counts from 0.
        """
        at = time.monotonic()
        figures = _differences(self._redis_figures(), start.figures)
        for name, count in OWN_COMMANDS.items():
            figures[CALLS + name] = figures.get(CALLS + name, 0.0) - count
        figures = {n: v for n, v in figures.items() if v or not n.startswith(CALLS)}
        cpu = _cpu_us(asyncio.run(self._postgres())[1])
        if cpu is not None and start.backend_cpu_us is not None:
            before = start.backend_cpu_us
            figures["pg_cpu_us"] = sum(v - before.get(p, 0.0) for p, v in cpu.items())
        return Usage(at - start.at, figures)

    def settled(self, start: Reading) -> Usage:
        """Return the database's counts (``pg_transactions``, ``pg_rows_*``) since ``start``."""
        at = time.monotonic()
        counts, _ = asyncio.run(self._postgres())
        return Usage(at - start.at, _differences(counts, start.figures))

    def _redis_figures(self) -> dict[str, float]:
        info: dict[str, Any] = self._redis.info("commandstats", "cpu", "stats")
        figures = {
            "redis_cpu_us": (float(info["used_cpu_user"]) + float(info["used_cpu_sys"])) * 1e6,
            "redis_in_bytes": float(info["total_net_input_bytes"]),
            "redis_out_bytes": float(info["total_net_output_bytes"]),
        }
        for name, stat in info.items():
            command = name.removeprefix("cmdstat_")
            if name.startswith("cmdstat_") and command not in IGNORED_COMMANDS:
                figures[CALLS + command] = float(stat["calls"])
        return figures

    async def _postgres(self) -> tuple[dict[str, float], set[int]]:
        """Return the database's counts and its client backends' process ids."""
        conn = await asyncpg.connect(self._dsn, database="postgres")
        try:
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            row = await conn.fetchrow(_DATABASE, self._database)
            if row is None:
                raise RuntimeError(f"no database {self._database!r} in pg_stat_database")
            pids = {r["pid"] for r in await conn.fetch(_BACKENDS, self._database)}
            return {f"pg_{n}": float(v) for n, v in zip(_COUNTS, row, strict=True)}, pids
        finally:
            await conn.close()


def _differences(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    """Return ``after`` less ``before``, for the figures of ``after``."""
    return {n: v - before.get(n, 0.0) for n, v in after.items()}
