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

With a Redis Cluster client, a batch is split by node (the slot map says which node serves
each key's slot): each node gets one write on one of its connections, the nodes concurrently,
so that a hit is still one round trip, to its entry's node. Reads of one slot share one
``MGET``; a node serves several slots, and ``MGET`` takes keys of one slot only. A command
answered with a redirection (``MOVED``, ``ASK``, ``TRYAGAIN``: slots moving, a failover
done) is sent again through the cluster client, which follows it and updates its map; a node
that fails its batch, or answers ``CLUSTERDOWN``, makes the slot map refresh in the
background (see :class:`cache.routing.NodeConnections`).

A lone command waits for nothing but the callbacks already queued: the batch is sent by a
callback scheduled with ``loop.call_soon``, which runs in the loop's next pass, after a poll
for I/O that does not wait (the pass has ready callbacks) and before the callbacks of that
poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from hiredis import pack_command
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript as Script
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)

from cache.errors import CacheUnavailableError
from cache.keys import key_slot
from cache.routing import NodeConnections, RedisClient

#: Error replies that say "ask elsewhere or later": the command is sent again through the
#: cluster client, which follows them. ``CLUSTERDOWN`` (slots without a master, before a
#: failover) fails its command instead (the cache fails open) and refreshes the slot map.
_REDIRECTIONS = (MovedError, AskError, TryAgainError)

_Read = tuple[str, "asyncio.Future[Any]"]
_Call = tuple[tuple[Any, ...], Script, "asyncio.Future[Any]"]


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
        redis: the client whose connections the batches use (a cluster client: its nodes'
            connections); owned by the caller.
        max_batch: a batch is sent at once when it reaches this many commands.
        max_connections_per_node: with a cluster client, connections checked out by batches at
            once, per node.
        pool_timeout_seconds: with a cluster client, how long a batch waits for a free
            connection of its node, in seconds.

    Attributes:
        batches: how many batches were sent so far (a cluster batch counts once, however
            many nodes it went to).
        commands: how many commands they carried, reads counted one each (``commands /
            batches`` is the mean batch size).
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        max_batch: int = 128,
        max_connections_per_node: int = 50,
        pool_timeout_seconds: float = 0.1,
    ) -> None:
        self._redis = redis
        self._max_batch = max_batch
        self._nodes = (
            NodeConnections(
                redis,
                max_connections=max_connections_per_node,
                timeout_seconds=pool_timeout_seconds,
            )
            if isinstance(redis, RedisCluster)
            else None
        )
        self._reads: list[_Read] = []
        self._calls: list[_Call] = []
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
        ``EVAL`` and keeps it for the next time. With a cluster client, ``keys`` must share a
        slot (the first key routes the command).

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

    async def _send(self, reads: list[_Read], calls: list[_Call]) -> None:
        self.batches += 1
        self.commands += len(reads) + len(calls)
        if self._nodes is None:
            pool = cast(Redis, self._redis).connection_pool
            await self._exchange(
                pool.get_connection,
                pool.release,
                [reads] if reads else [],
                calls,
            )
            return
        await self._send_by_node(self._nodes, reads, calls)

    async def _send_by_node(
        self, nodes: NodeConnections, reads: list[_Read], calls: list[_Call]
    ) -> None:
        """Split a batch by node, and by slot within a node's reads; send to every node at once."""
        cluster = nodes.cluster
        slot_map = cluster.nodes_manager
        by_node: dict[str, tuple[ClusterNode, dict[int, list[_Read]], list[_Call]]] = {}

        def batch_of(
            slot: int, futures: list[asyncio.Future[Any]]
        ) -> tuple[ClusterNode, dict[int, list[_Read]], list[_Call]] | None:
            try:
                node = slot_map.get_node_from_slot(slot)
            except Exception as exc:  # no node serves the slot (yet): fail open
                _fail(futures, exc)
                nodes.refresh_soon()
                return None
            batch = by_node.get(node.name)
            if batch is None:
                batch = by_node[node.name] = (node, {}, [])
            return batch

        for read in reads:
            slot = key_slot(read[0])
            batch = batch_of(slot, [read[1]])
            if batch is not None:
                batch[1].setdefault(slot, []).append(read)
        for call in calls:
            slot = key_slot(call[0][3])
            batch = batch_of(slot, [call[2]])
            if batch is not None:
                batch[2].append(call)

        async def send(
            node: ClusterNode, groups: list[list[_Read]], node_calls: list[_Call]
        ) -> None:
            async def acquire() -> AbstractConnection:
                return await nodes.acquire(node)

            async def release(connection: AbstractConnection) -> None:
                nodes.release(node, connection)  # type: ignore[arg-type]

            if not await self._exchange(acquire, release, groups, node_calls):
                nodes.refresh_soon()

        await asyncio.gather(
            *(
                send(node, list(slots.values()), node_calls)
                for node, slots, node_calls in by_node.values()
            )
        )

    async def _exchange(
        self,
        acquire: Callable[[], Awaitable[AbstractConnection]],
        release: Callable[[AbstractConnection], Awaitable[None]],
        read_groups: list[list[_Read]],
        calls: list[_Call],
    ) -> bool:
        """Send reads (a ``GET`` or ``MGET`` per group) and calls on one connection.

        Returns:
            False when the connection failed (its commands failed) or the cluster answered
            ``CLUSTERDOWN``, else True.
        """
        healthy = True
        commands: list[tuple[Any, ...]] = []
        for group in read_groups:
            if len(group) == 1:
                commands.append(("GET", group[0][0]))
            else:
                commands.append(("MGET", *(key for key, _ in group)))
        commands += [args for args, _, _ in calls]
        futures = [f for group in read_groups for _, f in group] + [f for _, _, f in calls]
        resend_scripts: list[tuple[_Call, bool]] = []
        resend_reads: list[_Read] = []
        try:
            connection = await acquire()
        except BaseException as exc:
            _fail(futures, exc)
            _raise_if_cancelled(exc)
            return False
        try:
            # hiredis packs a command about five times as fast as redis-py's Python packer.
            await connection.send_packed_command([pack_command(c) for c in commands])
            for group in read_groups:
                # Reads are answered first, before the replies of the scripts behind them.
                reply = await _reply(connection)
                if isinstance(reply, _REDIRECTIONS):
                    resend_reads += group
                else:
                    healthy = healthy and not isinstance(reply, ClusterDownError)
                    _settle_reads(group, reply)
            for call in calls:
                reply = await _reply(connection)
                healthy = healthy and not isinstance(reply, ClusterDownError)
                if isinstance(reply, NoScriptError):
                    resend_scripts.append((call, True))
                elif isinstance(reply, _REDIRECTIONS):
                    resend_scripts.append((call, False))
                else:
                    _settle(call[2], reply)
        except BaseException as exc:
            # The replies still on the wire would answer the next user: never reuse it.
            with contextlib.suppress(Exception):
                await connection.disconnect()
            _fail(futures, exc)
            _raise_if_cancelled(exc)
            return False
        finally:
            await release(connection)
        if resend_reads or resend_scripts:
            await asyncio.gather(
                *(self._resend_read(key, future) for key, future in resend_reads),
                *(self._resend_script(call, unknown) for call, unknown in resend_scripts),
            )
        return healthy

    async def _resend_read(self, key: str, future: asyncio.Future[Any]) -> None:
        """Read ``key`` through the client (which follows cluster redirections)."""
        try:
            _settle(future, await self._redis.get(key))
        except Exception as exc:
            _fail([future], exc)

    async def _resend_script(self, call: _Call, unknown: bool) -> None:
        """Run a script again through the client (which follows cluster redirections).

        ``EVAL`` when the server did not know it (``unknown``); else ``EVALSHA``, and ``EVAL``
        if the node it was redirected to does not know it.
        """
        args, script, future = call
        text = script.script
        source = text if isinstance(text, str) else bytes(text).decode()
        try:
            try:
                if unknown:
                    raise NoScriptError("unknown script")
                reply = await self._redis.execute_command(*args)
            except NoScriptError:
                reply = await self._redis.eval(source, *args[2:])
            _settle(future, reply)
        except ResponseError as exc:
            _settle(future, exc)
        except Exception as exc:
            _fail([future], exc)

    async def aclose(self) -> None:
        """Send what is queued and wait for the batches under way (at shutdown)."""
        self._flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        if self._nodes is not None:
            await self._nodes.aclose()


async def _reply(connection: AbstractConnection) -> Any:
    """Read one reply; an error reply is returned as its ``ResponseError``, not raised."""
    try:
        return await connection.read_response()
    except ResponseError as exc:
        return exc


def _settle_reads(reads: list[_Read], reply: object) -> None:
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
