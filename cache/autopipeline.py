"""Auto-pipelining: the commands of one event-loop iteration go to Redis in one write.

Every redis-py call pays a fixed price in Python (a pool checkout, packing, a parser call,
bookkeeping, a release, and a socket write) that is larger than Redis's own work for a ``GET``
or a short script. Under concurrent traffic many requests reach Redis in the same iteration of
the event loop; this class collects their commands and sends them together at the end of the
iteration, on one connection, in one write, so that the fixed price is paid once per batch
instead of once per request. Reads (``GET``) are folded into one ``MGET``; other commands
(the lease scripts of the miss path) follow it in the same write. The idea is ioredis's
``enableAutoPipelining`` and Lettuce's command batching. Commands are packed by
``hiredis`` (redis-py's C parser, a declared dependency), about five times as fast as
redis-py's packer.

A lone command waits for nothing but the callbacks already queued: the batch is sent by a
callback scheduled with ``loop.call_soon``, which runs in the loop's next pass, after a poll
for I/O that does not wait (the pass has ready callbacks) and before the callbacks of that
poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from hiredis import pack_command
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript as Script
from redis.exceptions import NoScriptError, ResponseError

from cache.errors import CacheUnavailableError


class AutoPipeline:
    """Sends the commands of one event-loop iteration in one write; reads as one ``MGET``.

    Safe to share between the tasks of one event loop (and between the cache and its lease
    store, so that their commands share batches); bound to the loop of its first use.

    A failure of the connection (an error, a timeout, a cancellation at shutdown) fails every
    command of its batch still unanswered with :class:`CacheUnavailableError`, whatever the
    failure's type: callers fail open, never on a foreign exception. An error answer fails its
    own command only: a read with :class:`CacheUnavailableError`, a script with redis-py's
    ``ResponseError`` (its callers translate it). The connection of a failed batch is closed,
    never reused in an unknown state. Reads are answered as soon as their reply is in, before
    the replies of the scripts sent behind them.

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
        self._calls: list[tuple[tuple[Any, ...], Script, asyncio.Future[Any]]] = []
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
        calls: list[tuple[tuple[Any, ...], Script, asyncio.Future[Any]]],
    ) -> None:
        self.batches += 1
        self.commands += len(reads) + len(calls)
        commands = [args for args, _, _ in calls]
        if len(reads) == 1:
            commands.insert(0, ("GET", reads[0][0]))
        elif reads:
            commands.insert(0, ("MGET", *(key for key, _ in reads)))
        futures = [f for _, f in reads] + [f for _, _, f in calls]
        unknown_scripts = []
        pool = self._redis.connection_pool
        try:
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        except BaseException as exc:
            _fail(futures, exc)
            _raise_if_cancelled(exc)
            return
        try:
            # hiredis packs a command about five times as fast as redis-py's Python packer.
            await connection.send_packed_command([pack_command(c) for c in commands])
            if reads:
                # Reads are answered first, before the replies of the scripts behind them.
                _settle_reads(reads, await _reply(connection))
            for args, script, future in calls:
                reply = await _reply(connection)
                if isinstance(reply, NoScriptError):
                    unknown_scripts.append((args, script, future))
                else:
                    _settle(future, reply)
        except BaseException as exc:
            # The replies still on the wire would answer the next user: never reuse it.
            with contextlib.suppress(Exception):
                await connection.disconnect()
            _fail(futures, exc)
            _raise_if_cancelled(exc)
            return
        finally:
            await pool.release(connection)
        for args, script, future in unknown_scripts:
            text = script.script
            source = text if isinstance(text, str) else bytes(text).decode()
            try:
                _settle(future, await self._redis.eval(source, *args[2:]))
            except ResponseError as exc:
                _settle(future, exc)
            except Exception as exc:
                _fail([future], exc)

    async def aclose(self) -> None:
        """Send what is queued and wait for the batches under way (at shutdown)."""
        self._flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


async def _reply(connection: AbstractConnection) -> Any:
    """Read one reply; an error reply is returned as its ``ResponseError``, not raised."""
    try:
        return await connection.read_response()
    except ResponseError as exc:
        return exc


def _settle_reads(reads: list[tuple[str, asyncio.Future[Any]]], reply: object) -> None:
    """Answer each read from the ``GET`` or ``MGET`` reply; an error reply fails them all."""
    values = [reply] if len(reads) == 1 else reply
    if isinstance(reply, ResponseError) or not isinstance(values, list):
        _fail([f for _, f in reads], reply)
        return
    if len(values) != len(reads):
        _fail([f for _, f in reads], CacheUnavailableError(f"MGET answered {len(values)} values"))
        return
    for (_, future), value in zip(reads, values, strict=True):
        _settle(future, value)


def _fail(futures: list[asyncio.Future[Any]], cause: object) -> None:
    """Fail each pending future with its own :class:`CacheUnavailableError` from ``cause``."""
    for future in futures:
        if not future.done():
            error = CacheUnavailableError(f"Redis failed: {cause!r}")
            if isinstance(cause, BaseException):
                error.__cause__ = cause
            future.set_exception(error)


def _raise_if_cancelled(exc: BaseException) -> None:
    """Re-raise ``exc`` when it is a cancellation (the batch's task is being stopped)."""
    if isinstance(exc, asyncio.CancelledError):
        raise exc


def _settle(future: asyncio.Future[Any], reply: object) -> None:
    if future.done():
        return  # its caller went away
    if isinstance(reply, BaseException):
        future.set_exception(reply)
    else:
        future.set_result(reply)
