"""Background tasks: started once, stopped reliably, optionally run at an interval."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)


async def stop_task(task: asyncio.Task[Any], *, poll_seconds: float = 0.1) -> None:
    """Cancel ``task`` and wait until it is done, cancelling again until it is.

    On Python 3.11, ``asyncio.wait_for`` (which asyncpg's and redis-py's connects use) can lose
    a cancellation that lands as the awaited call completes, and a loop around such a call
    would then run on; repeating the cancel stops it at its next await.

    Args:
        task: the task to stop; its own exceptions are not raised.
        poll_seconds: how long to wait after each cancel, in seconds.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=poll_seconds)
    if not task.cancelled():
        task.exception()  # mark retrieved


def every(
    interval_seconds: float, step: Callable[[], Awaitable[object] | object], *, at_once: bool = True
) -> Callable[[], Coroutine[Any, Any, None]]:
    """Return a coroutine function that runs ``step`` every ``interval_seconds``, for ever.

    Args:
        interval_seconds: the pause after each step, in seconds.
        step: a function or a coroutine function; an exception it raises is logged, and the
            loop goes on.
        at_once: run the first step at once (else after one interval).
    """

    async def run() -> None:
        if not at_once:
            await asyncio.sleep(interval_seconds)
        while True:
            try:
                result = step()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("background step %s failed", getattr(step, "__qualname__", step))
            await asyncio.sleep(interval_seconds)

    return run


class BackgroundTask:
    """One named task of an owner, started once and stopped once.

    Args:
        name: the task's name (in task dumps and logs).
        run: the coroutine function the task runs.
    """

    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._name = name
        self._run = run
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the task on the running loop (no-op when it was started)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def aclose(self) -> None:
        """Stop the task (see :func:`stop_task`); it may be started again afterwards."""
        if self._task is not None:
            task, self._task = self._task, None
            await stop_task(task)
