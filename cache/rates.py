"""Request rates by cache state over sliding windows, summed in Redis over every process.

Each statistics flush adds the counts it carries, by state (``hit``, ``miss``, ``stale``,
``bypass``), to time buckets: one hash per bucket width, ``{prefix}:rates:{width}s``, whose
fields are ``{bucket_start}:{state}`` (``bucket_start`` in whole Unix seconds, a multiple of the
width) holding integers. Two widths serve three windows:

=======  ===============  ==============================
window   bucket width     buckets kept (hash lifetime)
=======  ===============  ==============================
``10s``  1 s              12 (12 s)
``1m``   10 s             32 (320 s), shared with ``5m``
``5m``   10 s             32 (320 s)
=======  ===============  ==============================

Field names derive from the bucket time, so a flusher deletes the buckets that left the kept
span by name (``HDEL``), without reading; each flush also renews the hash's lifetime, so that
when every process stops, the hash expires on its own.

A window's figures divide the counts of every bucket that overlaps ``[now - window, now]`` by
the time those buckets actually cover (from the start of the oldest one to ``now``): between
the window and the window plus one bucket width. A process adds its counts when it flushes,
so the newest figures lag by up to one flush interval; counts that a failed flush kept go into
the bucket of the flush that delivers them. Bucket times come from each process's clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypedDict

from cache.counters import READ_STATES
from cache.keys import KeyScheme
from cache.routing import AnyPipeline

#: The states a rate is kept for, in the order of the answers.
STATES: Final = tuple(READ_STATES.values())


class WindowFigures(TypedDict):
    """The rates of one window: requests per second, hit ratio, per-state rates, time covered.

    ``seconds`` is the time the counted buckets cover (the divisor of every rate).
    """

    seconds: float
    requests_per_second: float
    hit_ratio: float
    per_second: dict[str, float]


@dataclass(frozen=True, slots=True)
class _Resolution:
    width_seconds: int
    kept: int  # buckets kept, the current one included

    @property
    def lifetime_ms(self) -> int:
        return self.width_seconds * self.kept * 1000


_FINE: Final = _Resolution(1, 12)
_COARSE: Final = _Resolution(10, 32)
#: Window name to (its length in seconds, the resolution it reads).
WINDOWS: Final = {"10s": (10, _FINE), "1m": (60, _COARSE), "5m": (300, _COARSE)}


class RateBuckets:
    """Writes and reads the rate buckets of one key scheme.

    Holds, per resolution, the newest bucket this process has pruned up to; safe to share
    between tasks of one event loop. It does no I/O itself: it queues commands on pipelines.

    Args:
        scheme: the key scheme (its ``rate_buckets`` keys hold the buckets).
    """

    def __init__(self, scheme: KeyScheme) -> None:
        self._keys = {r: scheme.rate_buckets(r.width_seconds) for r in (_FINE, _COARSE)}
        self._pruned: dict[_Resolution, int] = {}

    def add_to(self, pipe: AnyPipeline, counts: Mapping[str, int], now: float) -> None:
        """Queue the addition of ``counts`` at time ``now`` and the pruning of old buckets.

        Args:
            pipe: a non-transactional pipeline.
            counts: state (one of :data:`STATES`) to a count; zeros are skipped.
            now: the flush's Unix time, in seconds.
        """
        for resolution, key in self._keys.items():
            width = resolution.width_seconds
            current = int(now // width) * width
            for state, n in counts.items():
                if n:
                    pipe.hincrby(key, f"{current}:{state}", n)
            self._queue_pruning(pipe, resolution, key, current)
            pipe.pexpire(key, resolution.lifetime_ms)

    def _queue_pruning(
        self, pipe: AnyPipeline, resolution: _Resolution, key: str, now: int
    ) -> None:
        width, kept = resolution.width_seconds, resolution.kept
        # Buckets starting at or before `last_gone` have left the kept span. A process deletes
        # those that left it since its previous flush, at most one span of them: older ones
        # are gone already, with the hash's expiry or by another process's flush.
        last_gone = now - kept * width
        first = last_gone - (kept - 1) * width
        previous = self._pruned.get(resolution)
        if previous is not None:
            first = max(first, previous + width)
        if first <= last_gone:
            fields = [
                f"{start}:{state}"
                for start in range(first, last_gone + 1, width)
                for state in STATES
            ]
            pipe.hdel(key, *fields)
        self._pruned[resolution] = last_gone

    def queue_read(self, pipe: AnyPipeline) -> int:
        """Queue the reads of every bucket (one ``HGETALL`` per resolution).

        Returns:
            How many replies :meth:`figures` takes, in order, from the pipeline's results.
        """
        for key in self._keys.values():
            pipe.hgetall(key)
        return len(self._keys)

    def figures(self, replies: list[Any], now: float) -> dict[str, WindowFigures]:
        """Return every window's figures from the replies of :meth:`queue_read`.

        Args:
            replies: the replies of the commands :meth:`queue_read` queued, in order.
            now: the reading's Unix time, in seconds.

        Returns:
            ``{"10s": WindowFigures, "1m": ..., "5m": ...}``, rates in events per second;
            ``hit_ratio`` is hits / (hits + misses) of the window, 0.0 when both are 0.
        """
        buckets = {
            resolution: _parse(reply) for resolution, reply in zip(self._keys, replies, strict=True)
        }
        return {
            name: _window(buckets[resolution], resolution.width_seconds, length, now)
            for name, (length, resolution) in WINDOWS.items()
        }

    @staticmethod
    def empty() -> dict[str, WindowFigures]:
        """Return every window with zero rates (the figures when Redis could not be read)."""
        return {name: _window({}, 1, length, 0.0) for name, (length, _) in WINDOWS.items()}


def _parse(reply: Mapping[bytes | str, bytes | str]) -> dict[tuple[int, str], int]:
    counts: dict[tuple[int, str], int] = {}
    for field, value in reply.items():
        start, _, state = (field.decode() if isinstance(field, bytes) else field).partition(":")
        if start.isdigit():
            counts[int(start), state] = int(value)
    return counts


def _window(
    buckets: Mapping[tuple[int, str], int], width: int, length: int, now: float
) -> WindowFigures:
    oldest = math.floor((now - length) / width) * width
    covered = now - oldest  # from `length` to `length + width` seconds
    per_state = dict.fromkeys(STATES, 0)
    for (start, state), n in buckets.items():
        if oldest <= start <= now and state in per_state:
            per_state[state] += n
    hits, misses = per_state["hit"], per_state["miss"]
    return {
        "seconds": covered,
        "requests_per_second": sum(per_state.values()) / covered,
        "hit_ratio": hits / (hits + misses) if hits + misses else 0.0,
        "per_second": {state: n / covered for state, n in per_state.items()},
    }
