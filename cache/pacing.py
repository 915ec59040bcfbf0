"""Pacing of background work that shares an event loop with requests.

A :class:`Pacer` bounds the share of the loop that background work (cache warming) takes while
other tasks want it, and costs nothing while they do not. The work calls :meth:`Pacer.pause`
between short steps. Each pause yields once (``sleep(0)``: every task that was ready runs
first); if that yield took time, other tasks were waiting, and the pause sleeps on until the
work's share of the time since its previous step is at most ``share``. Alone on the loop, the
yield returns at once and the work runs at full speed.

This is the duty-cycle idea of CPU bandwidth control (e.g. Linux CFS quotas), applied per step
and only under contention.
"""

from __future__ import annotations

import asyncio
import time

#: A yield that took longer than this, in seconds, means other tasks ran during it.
CONTENTION_SECONDS = 0.0002


class Pacer:
    """Keeps background work to ``share`` of the event loop while requests want it.

    Not safe to share between concurrent tasks: each task of background work has its own.

    Args:
        share: the largest fraction of the loop's time the work takes under contention, in
            (0, 1]; 1 only yields.
        max_pause_seconds: the longest single pause, in seconds.
    """

    def __init__(self, share: float = 0.25, *, max_pause_seconds: float = 0.05) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be within (0, 1]")
        self._ratio = (1 - share) / share
        self._max_pause = max_pause_seconds
        self._resumed = time.perf_counter()
        self.paused_seconds = 0.0

    async def pause(self) -> None:
        """Yield to the tasks that are ready; under contention, sleep the work's share off."""
        started = time.perf_counter()
        worked = started - self._resumed
        await asyncio.sleep(0)
        yielded = time.perf_counter() - started
        if yielded > CONTENTION_SECONDS:
            owed = min(worked * self._ratio, self._max_pause) - yielded
            if owed > 0:
                await asyncio.sleep(owed)
        self._resumed = time.perf_counter()
        self.paused_seconds += self._resumed - started
