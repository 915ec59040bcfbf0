"""Single-flight: concurrent calls for one key in one process share one execution.

After Go's ``golang.org/x/sync/singleflight``. The shared work runs in its own task, so that
a caller that is cancelled (a client that went away) neither cancels the work for the others
nor leaves them waiting on a dead future.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Runs at most one call per key at a time within one event loop.

    Not safe to share between event loops or threads.
    """

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Task[T]] = {}

    def in_flight(self, key: str) -> bool:
        """Return whether a call for ``key`` is running now."""
        return key in self._flights

    async def run(self, key: str, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Run ``fn()`` for ``key``, or wait for the run already under way.

        Returns:
            ``(result, shared)``: ``shared`` is True for the callers that waited on another
            caller's run.

        Raises:
            Whatever ``fn`` raised, to every caller that shared the run.
        """
        task = self._flights.get(key)
        if task is not None and task.done():
            task = None  # finished, but not yet forgotten: its result may predate this call
        shared = task is not None
        if task is None:
            task = asyncio.ensure_future(fn())
            self._flights[key] = task
            task.add_done_callback(lambda t: self._forget(key, t))
        return await asyncio.shield(task), shared

    def _forget(self, key: str, task: asyncio.Task[T]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: every waiter may have gone
