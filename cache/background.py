"""Stopping background tasks reliably."""

from __future__ import annotations

import asyncio
from typing import Any


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
