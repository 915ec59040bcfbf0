"""Auto-pipelining: the commands of one event-loop iteration go to Redis in one write.

Every redis-py call pays a fixed price in Python (a pool checkout, packing, a parser call,
bookkeeping, a release, and a socket write) that is larger than Redis's own work for a ``GET``
or a short script. Under concurrent traffic many requests reach Redis in the same iteration of
the event loop; this class collects their commands and sends them together at the end of the
iteration, on one connection, in one write, so that the fixed price is paid once per batch
instead of once per request. Reads (``GET``) are folded into one ``MGET``; other commands
(the lease scripts of the miss path) follow it in the same write. The idea is ioredis's
``enableAutoPipelining`` and Lettuce's command batching.

A lone command waits for nothing: the batch is sent by a callback scheduled with
``loop.call_soon``, which runs in the same iteration, after the callbacks already queued.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from hiredis import pack_command
from redis.asyncio import Redis
from redis.commands.core import AsyncScript as Script
from redis.exceptions import NoScriptError, ResponseError

from cache.errors import CacheUnavailableError


class AutoPipeline:
    """Sends the commands of one event-loop iteration in one write; reads as one ``MGET``.

    Safe to share between the tasks of one event loop (and between the cache and its lease
    store, so that their commands share batches); bound to the loop of its first use.

    A failure of the connection (an error, a timeout) fails every command of its batch with
    :class:`CacheUnavailableError`, whatever the failure's type: callers fail open, never on a
    foreign exception. An error answer to one command (``ResponseError``) fails that command
    only. The connection of a failed batch is closed, never reused in an unknown state.

    Args:
        redis: the client whose pool the batches use; owned by the caller.
        max_batch: a batch is sent at once when it reaches this many commands.

    Attributes:
        batches: how many batches were sent so far.
        commands: how many commands they carried, reads counted one each (``commands /
            batches`` is the mean batch size).
    """

    def __init__(self, redis: Redis, *, max_batch: int = 128) -> None:
        self._redis = redis
        self._max_batch = max_batch
        self._reads: list[tuple[str, asyncio.Future[Any]]] = []
        self._calls: list[tuple[tuple[Any, ...], Script | None, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.commands = 0

    def get(self, key: str) -> asyncio.Future[bytes | None]:
        """Return a future of the value at ``key``, or None when there is none.

        The future fails with :class:`CacheUnavailableError` when Redis fails.
        """
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._reads.append((key, future))
        self._queued()
        return future

    def run_script(
        self, script: Script, keys: Sequence[Any], args: Sequence[Any]
    ) -> asyncio.Future[Any]:
        """Return a future of ``script``'s answer for ``keys`` and ``args`` (``EVALSHA``).

        A server that does not know the script (restarted, ``SCRIPT FLUSH``) gets it with
        ``EVAL`` and keeps it for the next time.

        The future fails with :class:`CacheUnavailableError` when the connection fails, and
        with redis-py's ``ResponseError`` when the script raised an error.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls.append((("EVALSHA", script.sha, len(keys), *keys, *args), script, future))
        self._queued()
        return future

    def _queued(self) -> None:
        size = len(self._reads) + len(self._calls)
        if size == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        elif size >= self._max_batch:
            self._flush()

    def _flush(self) -> None:
        reads, calls = self._reads, self._calls
        if not reads and not calls:
            return
        self._reads, self._calls = [], []
        task = asyncio.get_running_loop().create_task(self._send(reads, calls))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(
        self,
        reads: list[tuple[str, asyncio.Future[Any]]],
        calls: list[tuple[tuple[Any, ...], Script | None, asyncio.Future[Any]]],
    ) -> None:
        self.batches += 1
        self.commands += len(reads) + len(calls)
        commands = [args for args, _, _ in calls]
        if len(reads) == 1:
            commands.insert(0, ("GET", reads[0][0]))
        elif reads:
            commands.insert(0, ("MGET", *(key for key, _ in reads)))
        try:
            replies = await self._round_trip(commands)
        except asyncio.CancelledError:
            for future in _futures(reads, calls):
                future.cancel()
            raise
        except Exception as exc:
            for future in _futures(reads, calls):
                if not future.done():
                    error = CacheUnavailableError(f"Redis failed: {exc!r}")
                    error.__cause__ = exc
                    future.set_exception(error)
            return
        if reads:
            values = replies[0]
            if len(reads) == 1:
                values = [values]
            if isinstance(values, ResponseError) or len(values) != len(reads):
                values = [CacheUnavailableError(f"unexpected read answer {values!r:.80}")] * len(
                    reads
                )
            for (_, future), value in zip(reads, values, strict=True):
                _settle(future, value)
            replies = replies[1:]
        for (args, script, future), reply in zip(calls, replies, strict=True):
            if isinstance(reply, NoScriptError) and script is not None and not future.done():
                try:
                    text = script.script
                    source = text if isinstance(text, str) else bytes(text).decode()
                    reply = await self._redis.eval(source, *args[2:])
                except Exception as exc:
                    reply = exc
            _settle(future, reply)

    async def _round_trip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write on one pooled connection; return their replies.

        An error reply is returned as its ``ResponseError``; any other failure closes the
        connection and is raised.
        """
        pool = self._redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            # hiredis packs a command about five times as fast as redis-py's Python packer.
            await connection.send_packed_command([pack_command(c) for c in commands])
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            # The replies still on the wire would answer the next user: never reuse it.
            with contextlib.suppress(Exception):
                await connection.disconnect()
            raise
        finally:
            await pool.release(connection)
        return replies

    async def aclose(self) -> None:
        """Send what is queued and wait for the batches under way (at shutdown)."""
        self._flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


def _futures(
    reads: list[tuple[str, asyncio.Future[Any]]],
    calls: list[tuple[tuple[Any, ...], Script | None, asyncio.Future[Any]]],
) -> list[asyncio.Future[Any]]:
    return [f for _, f in reads] + [f for _, _, f in calls]


def _settle(future: asyncio.Future[Any], reply: Any) -> None:
    if future.done():
        return  # its caller went away
    if isinstance(reply, BaseException):
        future.set_exception(reply)
    else:
        future.set_result(reply)
