"""The results of a run: medians over rounds, ratios to the anchors, a table and a Markdown page.

Figures of one target are the medians over its rounds, each figure taken separately (the
median p99 is the median of the rounds' p99s). A ratio is a target's median requests per
second over its anchor's (above 1: faster than the anchor); the CPU ratio is the target's
median CPU per request over its anchor's (above 1: more CPU per request).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.measure import Measurement
from benchmarks.targets import TargetSpec


@dataclass
class TargetResult:
    """Every round of one target, and a failure if one round failed.

    Attributes:
        spec: the target.
        rounds: one measurement per round that completed, in order.
        failure: what went wrong in the round that failed (the target is not run again).
    """

    spec: TargetSpec
    rounds: list[Measurement] = field(default_factory=list)
    failure: str | None = None

    def median(self, figure: Callable[[Measurement], float]) -> float:
        """Return the median of ``figure`` over the rounds (0 when none completed)."""
        return statistics.median(figure(m) for m in self.rounds) if self.rounds else 0.0


def _ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def summary_rows(results: dict[str, TargetResult]) -> list[list[str]]:
    """Return the summary table's rows, one per target, with a header row first."""
    rows = [[
        "target", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "CPU µs/req", "check",
        "anchor", "ratio", "CPU ratio", "goal",
    ]]  # fmt: skip
    for name, r in results.items():
        spec = r.spec
        if not r.rounds:
            rows.append([name, "FAILED", *[""] * 9])
            continue
        rps = r.median(lambda m: m.requests_per_second)
        cpu = r.median(lambda m: m.cpu_us_per_request)
        p50 = r.median(lambda m: m.p50_us)
        check = " ".join(
            f"{c} {statistics.median(spec.check_share(c, m) for m in r.rounds):.1%}"
            for c in spec.checks
        )
        anchor = results.get(spec.anchor) if spec.anchor else None
        ratio = cpu_ratio = ""
        goal = ""
        if anchor is not None and anchor.rounds:
            value = rps / anchor.median(lambda m: m.requests_per_second)
            ratio = f"{value:.2f}"
            cpu_ratio = f"{cpu / anchor.median(lambda m: m.cpu_us_per_request):.2f}"
            if spec.ratio_goal is not None:
                met = "met" if value >= spec.ratio_goal else "NOT met"
                goal = f"ratio ≥ {spec.ratio_goal}: {met}"
        if spec.p50_goal_ms is not None:
            met = "met" if p50 <= spec.p50_goal_ms * 1000 else "NOT met"
            goal = f"p50 ≤ {spec.p50_goal_ms:g} ms: {met}"
        rows.append([
            name + (" (FAILED)" if r.failure else ""), f"{rps:.0f}", _ms(p50),
            _ms(r.median(lambda m: m.p99_us)), _ms(r.median(lambda m: m.p999_us)),
            f"{cpu:.0f}", check,
            spec.anchor if spec.anchor and anchor else "", ratio, cpu_ratio, goal,
        ])  # fmt: skip
    return rows


#: The headline ratios of requests per second: (target, base, what the ratio says).
HEADLINE_RATIOS = (
    ("redis_get", "constant", "one Redis GET over the bare framework"),
    ("hit_zipf", "redis_get", "the service's hit over a bare GET (Zipfian)"),
    ("hit_uniform", "redis_get", "the service's hit over a bare GET (uniform)"),
    ("hit_zipf", "asyncpg", "what the cache buys over one asyncpg query"),
    ("hit_tracked", "hit_untracked", "hot-key tracking on (default) over off (goal ≥ 0.95)"),
    ("hit_gzip", "hit_zipf", "a gzip hit over an identity hit"),
    ("revalidate_304", "hit_zipf", "a 304 over a full hit"),
    ("miss", "asyncpg_uniform", "a cold miss over one asyncpg query (goal ≥ 0.9)"),
)


def headline_ratios(results: dict[str, TargetResult]) -> list[str]:
    """Return one line per headline ratio whose two targets both completed a round."""
    lines = []
    for target, base, meaning in HEADLINE_RATIOS:
        a, b = results.get(target), results.get(base)
        if a is None or b is None or not a.rounds or not b.rounds:
            continue
        rps = a.median(lambda m: m.requests_per_second) / b.median(lambda m: m.requests_per_second)
        cpu = a.median(lambda m: m.cpu_us_per_request) / b.median(lambda m: m.cpu_us_per_request)
        lines.append(f"{target} / {base} = {rps:.2f} req/s, {cpu:.2f} CPU per request: {meaning}")
    return lines


def round_rows(results: dict[str, TargetResult]) -> list[list[str]]:
    """Return every round's raw figures, one row per target and round, header first."""
    rows = [[
        "round", "target", "requests", "seconds", "req/s", "p50 ms", "p99 ms", "p99.9 ms",
        "CPU µs/req", "statuses", "X-Cache", "encodings",
    ]]  # fmt: skip

    def counts(c: dict[str, int]) -> str:
        return " ".join(f"{k}:{v}" for k, v in sorted(c.items()))

    most = max((len(r.rounds) for r in results.values()), default=0)
    for i in range(most):
        for name, r in results.items():
            if i >= len(r.rounds):
                continue
            m = r.rounds[i]
            rows.append([
                str(i + 1), name, str(m.requests), f"{m.seconds:.2f}",
                f"{m.requests_per_second:.0f}", _ms(m.p50_us), _ms(m.p99_us), _ms(m.p999_us),
                f"{m.cpu_us_per_request:.0f}", counts(m.statuses), counts(m.caches),
                counts(m.encodings),
            ])  # fmt: skip
    return rows


def text_table(rows: Sequence[Sequence[str]]) -> str:
    """Return ``rows`` as aligned plain text (first column left, the others right)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """Return ``rows`` as a Markdown table, the first row as its header."""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines.extend("| " + " | ".join(row) + " |" for row in rows[1:])
    return "\n".join(lines)


def write_section(path: Path, heading: str, text: str) -> None:
    """Replace the section ``heading`` of the page at ``path`` with ``text``, or append it.

    The section runs from its heading (a line equal to ``heading``, e.g. ``## Rate limits``) to
    the next ``## `` heading or the end of the page; ``text`` starts with the heading. The rest
    of the page is left as it is.
    """
    page = path.read_text() if path.exists() else ""
    lines = page.splitlines()
    if heading in lines:
        start = lines.index(heading)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        rest = lines[end:]
        lines = lines[:start] + text.splitlines() + ([""] if rest else []) + rest
    else:
        lines = [*lines, *([""] if lines and lines[-1] else []), *text.splitlines()]
    path.write_text("\n".join(lines).rstrip("\n") + "\n")
