"""The near cache's soak: samples of one worker's memory and of its L1 over a long load.

A sample is taken every few seconds from outside the worker: its resident set size
(``VmRSS`` of ``/proc/{pid}/status``, the pid read from ``/stats``) and its L1's bytes,
entries and evictions (``/stats`` ``l1``). They are shown as a table (one row a minute) and
as an SVG plot of two panels, each with its bound drawn as a dashed line: RSS against the RSS
of a worker without L1 under the same load plus ``CACHE_L1_MAX_BYTES`` plus the L1's
bookkeeping beyond the bytes it counts, and the L1's bytes against ``CACHE_L1_MAX_BYTES``.

Everything here but :func:`rss_bytes` and :func:`read_sample` is pure: no servers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

MIB = 2**20


@dataclass(frozen=True)
class Sample:
    """One reading of the worker under load.

    Attributes:
        seconds: since the load started, in seconds.
        rss_bytes: the worker's resident set size, in bytes.
        l1_bytes: bytes of entries its L1 held (as the L1 counts them).
        l1_entries: entries its L1 held.
        l1_evictions: entries its L1 evicted since it started.

    The L1's figures are -1 when ``/stats`` has no ``l1`` object (a service that does not
    report its L1).
    """

    seconds: float
    rss_bytes: int
    l1_bytes: int
    l1_entries: int
    l1_evictions: int

    @property
    def has_l1(self) -> bool:
        """Whether the L1's figures were reported."""
        return self.l1_bytes >= 0


def rss_bytes(pid: int) -> int:
    """Return process ``pid``'s resident set size (``VmRSS`` of ``/proc/{pid}/status``), bytes.

    Raises:
        RuntimeError: the file has no ``VmRSS`` line (a kernel thread, or a zombie).
        OSError: no such process.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def l1_worker(stats: Mapping[str, Any], pid: int | None = None) -> dict[str, Any]:
    """Return the ``/stats`` ``l1.workers`` entry of ``pid`` (or the only one when None).

    Raises:
        RuntimeError: no ``l1`` object, no such worker, or several when ``pid`` is None.
    """
    workers = (stats.get("l1") or {}).get("workers") or []
    found = [w for w in workers if pid is None or int(w["pid"]) == pid]
    if len(found) != 1:
        raise RuntimeError(f"expected one L1 worker (pid {pid}) in /stats, got {workers}")
    return dict(found[0])


def read_sample(stats: Mapping[str, Any], seconds: float) -> Sample:
    """Return the sample of the only L1 worker of ``stats`` (a ``/stats`` document).

    Without an ``l1`` object, the only worker of ``db_pool.workers``, its L1 figures -1.

    Raises:
        RuntimeError: as :func:`l1_worker`, or not one worker in ``db_pool.workers``.
        OSError: its process is gone.
    """
    if "l1" not in stats:
        workers = (stats.get("db_pool") or {}).get("workers") or []
        if len(workers) != 1:
            raise RuntimeError(f"expected one worker in /stats, got {workers}")
        return Sample(seconds, rss_bytes(int(workers[0]["pid"])), -1, -1, -1)
    worker = l1_worker(stats)
    return Sample(
        seconds=seconds,
        rss_bytes=rss_bytes(int(worker["pid"])),
        l1_bytes=int(worker["bytes"]),
        l1_entries=int(worker["entries"]),
        l1_evictions=int(worker.get("evictions", 0)),
    )


def every(samples: Sequence[Sample], seconds: float) -> list[Sample]:
    """Return the first sample of each ``seconds``-long step, and the last sample."""
    kept: list[Sample] = []
    for s in samples:
        if not kept or s.seconds >= kept[-1].seconds + seconds - 1e-6:
            kept.append(s)
    if samples and kept[-1] is not samples[-1]:
        kept.append(samples[-1])
    return kept


def table_rows(samples: Sequence[Sample]) -> list[list[str]]:
    """Return the samples as table rows (time, RSS MiB, L1 bytes, entries, evictions)."""
    rows = [["time", "RSS MiB", "L1 bytes", "L1 entries", "L1 evictions"]]
    for s in samples:
        minutes, secs = divmod(round(s.seconds), 60)
        l1 = [f"{n:,}" if s.has_l1 else "n/a" for n in (s.l1_bytes, s.l1_entries,
                                                          s.l1_evictions)]  # fmt: skip
        rows.append([f"{minutes}:{secs:02d}", f"{s.rss_bytes / MIB:.1f}", *l1])
    return rows


def rss_slope_mib_per_hour(samples: Sequence[Sample]) -> float:
    """Return the least-squares slope of RSS over the second half of the samples, MiB per hour.

    The first half is left out: the allocator and the L1 fill up there. 0 with fewer than
    four samples.
    """
    tail = samples[len(samples) // 2 :]
    if len(tail) < 2 or len(samples) < 4:
        return 0.0
    xs = [s.seconds for s in tail]
    ys = [s.rss_bytes / MIB for s in tail]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 3600


@dataclass(frozen=True)
class Panel:
    """One panel of the plot: a series of values and its bound, both in MiB."""

    title: str
    values: list[float]
    bound: float
    bound_label: str


_WIDTH, _PANEL_HEIGHT, _LEFT, _RIGHT, _TOP, _BOTTOM = 720, 220, 64, 16, 28, 36


def _panel(p: Panel, times: Sequence[float], top: int) -> list[str]:
    """Return the SVG elements of panel ``p`` drawn with its top edge at ``top``."""
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _PANEL_HEIGHT - _TOP - _BOTTOM
    y_max = max([p.bound, *p.values]) * 1.1 or 1.0
    t_max = max(times[-1], 1.0) if times else 1.0

    def x(t: float) -> float:
        return _LEFT + plot_w * t / t_max

    def y(v: float) -> float:
        return top + _TOP + plot_h * (1 - v / y_max)

    base = top + _TOP + plot_h
    out = [
        f'<text x="{_LEFT}" y="{top + 18}" font-size="13">{escape(p.title)}</text>',
        f'<line x1="{_LEFT}" y1="{base}" x2="{_WIDTH - _RIGHT}" y2="{base}" stroke="#444"/>',
        f'<line x1="{_LEFT}" y1="{top + _TOP}" x2="{_LEFT}" y2="{base}" stroke="#444"/>',
    ]
    for i in range(5):
        v = y_max * i / 4
        out.append(
            f'<text x="{_LEFT - 6}" y="{y(v) + 4:.1f}" font-size="10" '
            f'text-anchor="end">{v:.1f}</text>'
        )
    for i in range(5):
        t = t_max * i / 4
        out.append(
            f'<text x="{x(t):.1f}" y="{base + 14}" font-size="10" '
            f'text-anchor="middle">{t / 60:.0f} min</text>'
        )
    out.append(
        f'<line x1="{_LEFT}" y1="{y(p.bound):.1f}" x2="{_WIDTH - _RIGHT}" y2="{y(p.bound):.1f}" '
        'stroke="#c00" stroke-dasharray="6,4"/>'
    )
    out.append(
        f'<text x="{_WIDTH - _RIGHT}" y="{y(p.bound) - 4:.1f}" font-size="10" fill="#c00" '
        f'text-anchor="end">{escape(p.bound_label)}</text>'
    )
    if p.values and len(p.values) == len(times):
        points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, p.values, strict=True))
        out.append(f'<polyline fill="none" stroke="#06c" stroke-width="1.5" points="{points}"/>')
    return out


def plot_svg(samples: Sequence[Sample], max_bytes: int, rss_bound_bytes: int) -> str:
    """Return an SVG document: RSS and L1 bytes over time (MiB), each with its bound dashed.

    Args:
        samples: the soak's samples, in time order.
        max_bytes: ``CACHE_L1_MAX_BYTES``, the bound of the L1's bytes.
        rss_bound_bytes: the bound of the worker's RSS, bytes.
    """
    times = [s.seconds for s in samples]
    panels = [
        Panel("worker RSS (MiB)", [s.rss_bytes / MIB for s in samples], rss_bound_bytes / MIB,
              f"bound {rss_bound_bytes / MIB:.1f} MiB"),
        Panel("L1 bytes (MiB)", [s.l1_bytes / MIB for s in samples if s.has_l1],
              max_bytes / MIB, f"CACHE_L1_MAX_BYTES {max_bytes / MIB:.2f} MiB"),
    ]  # fmt: skip
    height = _PANEL_HEIGHT * len(panels)
    body = []
    for i, p in enumerate(panels):
        body.extend(_panel(p, times, i * _PANEL_HEIGHT))
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family="sans-serif">',
        f'<rect width="{_WIDTH}" height="{height}" fill="white"/>',
        *body,
        "</svg>",
        "",
    ])  # fmt: skip
