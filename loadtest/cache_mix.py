"""The ``X-Cache`` mix of a load test: how many answers were hits, misses, stale or bypassed.

Kept in a locust ``RequestStats`` of its own, so that percentiles come from locust's histogram
and merge across workers as its own stats do.
"""

from __future__ import annotations

import csv
from collections import Counter
from typing import Any

from locust.stats import RequestStats, StatsEntry

CACHE_STATES = ("HIT", "MISS", "STALE", "BYPASS", "-")
"""The values of ``X-Cache`` in report order; ``-`` counts answers without the header."""
AGGREGATED = "Aggregated"


class CacheMix:
    """``X-Cache`` values of the GET answers and their response times, per request name.

    Entries are keyed ``(request name, X-Cache value)``, plus ``("Aggregated", X-Cache
    value)``. Shared by a process's users, which run in one thread (gevent).
    """

    def __init__(self) -> None:
        self.stats = RequestStats(use_response_times_cache=False)
        self.not_modified: Counter[str] = Counter()  # request name -> 304 answers

    def add(self, name: str, state: str, status: int, response_ms: float) -> None:
        """Count one answer."""
        for key in (name, AGGREGATED):
            self.stats.log_request(state, key, round(response_ms), 0)
            if status == 304:
                self.not_modified[key] += 1

    def drain(self) -> dict[str, Any]:
        """Return the counts for a master (a worker's report) and reset them."""
        report = {
            "entries": self.stats.serialize_stats(),
            "not_modified": dict(self.not_modified),
        }
        self.stats.clear_all()
        self.not_modified.clear()
        return report

    def merge(self, report: dict[str, Any]) -> None:
        """Add a worker's :meth:`drain` report."""
        for data in report.get("entries", []):
            entry = StatsEntry.unserialize(data, self.stats)
            self.stats.get(entry.name, entry.method).extend(entry)
        self.not_modified.update(report.get("not_modified", {}))

    def rows(self) -> list[tuple[str, str, StatsEntry]]:
        """Return ``(name, state, entry)`` by name (``Aggregated`` last), then state order."""
        entries = self.stats.entries.values()
        names = [*sorted({e.name for e in entries} - {AGGREGATED}), AGGREGATED]
        order = {state: i for i, state in enumerate(CACHE_STATES)}
        chosen = [(e.name, e.method, e) for e in entries if e.num_requests]
        return sorted(chosen, key=lambda r: (names.index(r[0]), order.get(r[1], 99), r[1]))

    def totals(self) -> Counter[str]:
        """Return the number of answers per request name."""
        totals: Counter[str] = Counter()
        for name, _, entry in self.rows():
            totals[name] += entry.num_requests
        return totals

    def render(self) -> str:
        """Return the mix as text: the share of each state per name, then latency by state."""
        states = "".join(f"{s:>8}" for s in CACHE_STATES)
        lines = [f"{'X-Cache mix (GET answers)':<48}{states}{'# answers':>11}{'of them 304':>13}"]
        lines.append("-" * len(lines[0]))
        by_name: dict[str, dict[str, int]] = {}
        for name, state, entry in self.rows():
            by_name.setdefault(name, {})[state] = entry.num_requests
        for name, counts in by_name.items():
            total = sum(counts.values())
            shares = "".join(f"{100 * counts.get(s, 0) / total:>7.1f}%" for s in CACHE_STATES)
            lines.append(f"{name:<48}{shares}{total:>11}{self.not_modified[name]:>13}")
        lines += ["", f"{'X-Cache state (all GET answers)':<48}{'# answers':>11}"
                  f"{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}"]  # fmt: skip
        lines.append("-" * len(lines[-1]))
        for name, state, entry in self.rows():
            if name == AGGREGATED:
                lines.append(
                    f"{state:<48}{entry.num_requests:>11}"
                    f"{entry.get_response_time_percentile(0.5):>9}"
                    f"{entry.get_response_time_percentile(0.99):>9}"
                    f"{entry.avg_response_time:>9.1f}"
                )
        return "\n".join(lines)

    def write_csv(self, path: str) -> None:
        """Write rows ``Name, X-Cache, Count, Share, 50%, 99%, Average Response Time``."""
        totals = self.totals()
        with open(path, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(
                ["Name", "X-Cache", "Count", "Share", "50%", "99%", "Average Response Time"]
            )
            for name, state, entry in self.rows():
                writer.writerow([
                    name, state, entry.num_requests,
                    f"{entry.num_requests / totals[name]:.4f}",
                    entry.get_response_time_percentile(0.5),
                    entry.get_response_time_percentile(0.99),
                    f"{entry.avg_response_time:.2f}",
                ])  # fmt: skip
