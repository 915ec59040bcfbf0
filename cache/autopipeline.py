"""Auto-pipelining of reads: the GETs of one event-loop iteration go to Redis as one ``MGET``.

Every redis-py call pays a fixed price in Python (a pool checkout, packing, a parser call, a
release) that is larger than Redis's own work for a ``GET``. Under concurrent traffic many
requests reach their cache read in the same iteration of the event loop; this class collects
them and sends one command for all of them at the end of the iteration, so that the fixed
price is paid once per batch instead of once per request, and each read still costs one round
trip or less. The idea is ioredis's ``enableAutoPipelining`` and Lettuce's command batching;
here the batch is a single ``MGET`` because the reads are all ``GET`` commands.

A lone read waits for nothing: the batch is sent by a callback scheduled with
``loop.call_soon``, which runs in the same iteration, after the callbacks already queued.
"""

from __future__ import annotations

import asyncio
from typing import cast

from redis.asyncio import Redis

from cache.errors import CacheUnavailableError


class AutoPipeline:
    """Coalesces concurrent ``GET`` commands into one ``MGET`` per event-loop iteration.

    Safe to share between the tasks of one event loop; bound to the loop of its first use.

    Args:
        redis: the client; owned by the caller.
        max_batch: a batch is sent at once when it reaches this many keys.

    Attributes:
        batches: how many commands were sent so far.
        keys: how many reads they answered (``keys / batches`` is the mean batch size).
    """

    def __init__(self, redis: Redis, *, max_batch: int = 128) -> None:
        self._redis = redis
        self._max_batch = max_batch
        self._pending: list[tuple[str, asyncio.Future[bytes | None]]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.keys = 0

    def get(self, key: str) -> asyncio.Future[bytes | None]:
        """Return a future of the value at ``key``, or None when there is none.

        The future fails with :class:`CacheUnavailableError` when Redis fails (every failure
        of the batch's command, whatever its type, fails every read of the batch: reads fail
        open, never with a foreign exception).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes | None] = loop.create_future()
        pending = self._pending
        pending.append((key, future))
        if len(pending) == 1:
            loop.call_soon(self._flush)
        elif len(pending) >= self._max_batch:
            self._flush()
        return future

    def _flush(self) -> None:
        batch = self._pending
        if not batch:
            return
        self._pending = []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[str, asyncio.Future[bytes | None]]]) -> None:
        self.batches += 1
        self.keys += len(batch)
        try:
            values: list[bytes | None]
            if len(batch) == 1:
                values = [cast("bytes | None", await self._redis.get(batch[0][0]))]
            else:
                values = cast(
                    "list[bytes | None]", await self._redis.mget([key for key, _ in batch])
                )
            if not isinstance(values, list) or len(values) != len(batch):
                raise CacheUnavailableError(f"MGET of {len(batch)} keys answered {values!r:.80}")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    error = CacheUnavailableError(f"Redis failed to read: {exc!r}")
                    error.__cause__ = exc
                    future.set_exception(error)
            return
        for (_, future), value in zip(batch, values, strict=True):
            if not future.done():
                future.set_result(value)

    async def aclose(self) -> None:
        """Wait for the batches under way (at shutdown)."""
        self._flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
