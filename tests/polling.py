"""Waiting for a condition that other tasks or processes make true."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_seconds: float, interval: float = 0.02
) -> float:
    """Poll ``check`` until it is true; return the seconds it took.

    Raises:
        AssertionError: it was not true within ``timeout_seconds``.
    """
    started = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout_seconds:
            name = getattr(check, "__qualname__", None) or repr(check)  # a partial has none
            raise AssertionError(f"{name} not true within {timeout_seconds} s")
        await asyncio.sleep(interval)
