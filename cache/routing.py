"""Redis Cluster routing: the clients the library takes, and which node holds a slot.

The library takes a standalone ``redis.asyncio.Redis`` or a ``redis.asyncio.cluster.RedisCluster``
(:data:`RedisClient`). With a cluster, every script and multi-key command it sends keeps its
keys in one slot (see :class:`cache.keys.KeyScheme`), and the commands that are not routed by
redis-py itself (the auto-pipeline's batches, see :mod:`cache.autopipeline`) are routed here
from the client's slot map (``CLUSTER SLOTS``, refreshed by redis-py on ``MOVED`` and after a
connection failure, or here by :class:`NodeConnections` after a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TypeAlias

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import Connection

from cache.errors import REDIS_FAILURES
from cache.keys import key_slot
from cache.pool import PoolTimeoutError

logger = logging.getLogger(__name__)

#: A client of one Redis server, or of a Redis Cluster.
RedisClient: TypeAlias = Redis | RedisCluster

#: A non-transactional pipeline of either client.
AnyPipeline: TypeAlias = Pipeline | ClusterPipeline

#: The least time between two slot-map refreshes started by failures, in seconds.
REFRESH_INTERVAL_SECONDS = 0.1


def primary_of(cluster: RedisCluster, key: str | bytes) -> ClusterNode:
    """Return the node that serves ``key``'s slot, as the client's slot map says.

    Raises:
        redis.exceptions.SlotNotCoveredError: no node serves the slot (the map is incomplete).
    """
    return cluster.nodes_manager.get_node_from_slot(key_slot(key))


def replica_count(cluster: RedisCluster, key: str | bytes) -> int:
    """Return how many replicas the slot map lists for ``key``'s slot."""
    nodes = cluster.nodes_manager.slots_cache.get(key_slot(key)) or []
    return max(0, len(nodes) - 1)


def connections_in_use(redis: RedisClient) -> int:
    """Return the client's connections checked out now (summed over a cluster's nodes)."""
    if isinstance(redis, RedisCluster):
        # ClusterNode keeps no count of its own: made connections minus free ones.
        return sum(len(node._connections) - len(node._free) for node in redis.get_nodes())
    return int(getattr(redis.connection_pool, "in_use", 0))


def connection_bound(redis: RedisClient) -> int:
    """Return the most connections the client may open (summed over a cluster's nodes)."""
    if isinstance(redis, RedisCluster):
        return sum(node.max_connections for node in redis.get_nodes())
    return int(redis.connection_pool.max_connections)


class NodeConnections:
    """Checks out connections of a cluster's nodes, at most ``max_connections`` per node.

    redis-py's ``ClusterNode`` raises at once when its connections are all in use; this waits
    up to ``timeout_seconds`` for one, as :class:`cache.pool.BoundedConnectionPool` does for a
    standalone client. Safe to share between the tasks of one event loop.

    Args:
        cluster: the client whose nodes' connections are used; owned by the caller.
        max_connections: connections checked out here at once, per node.
        timeout_seconds: how long a checkout waits for a free connection, in seconds.
    """

    def __init__(
        self, cluster: RedisCluster, *, max_connections: int, timeout_seconds: float
    ) -> None:
        self.cluster = cluster
        self._max = max_connections
        self._timeout = timeout_seconds
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._refreshed_at = -float("inf")
        self._refresh: asyncio.Task[None] | None = None

    async def acquire(self, node: ClusterNode) -> Connection:
        """Check out a connection of ``node`` (not yet connected, maybe).

        Raises:
            PoolTimeoutError: no connection came free within the timeout.
            redis.exceptions.MaxConnectionsError: the node's own bound is reached (its other
                users hold every connection).
        """
        slots = self._slots.get(node.name)
        if slots is None:
            slots = self._slots[node.name] = asyncio.Semaphore(self._max)
        if slots.locked():
            try:
                async with asyncio.timeout(self._timeout):
                    await slots.acquire()
            except TimeoutError as exc:
                raise PoolTimeoutError(
                    f"no connection to {node.name} came free within {self._timeout} s"
                ) from exc
        else:
            await slots.acquire()
        try:
            return node.acquire_connection()
        except BaseException:
            slots.release()
            raise

    def release(self, node: ClusterNode, connection: Connection) -> None:
        """Return ``connection`` to ``node`` and free its slot."""
        try:
            node.release(connection)
        finally:
            self._slots[node.name].release()

    def refresh_soon(self) -> None:
        """Refresh the slot map in the background (after a failure); at most every 100 ms.

        A failover moves slots to a promoted replica: until the map says so, commands for
        those slots go to the dead master and fail (the cache fails open meanwhile).
        """
        now = time.monotonic()
        if now - self._refreshed_at < REFRESH_INTERVAL_SECONDS:
            return
        if self._refresh is not None and not self._refresh.done():
            return
        self._refreshed_at = now
        self._refresh = asyncio.get_running_loop().create_task(self._refresh_map())

    async def _refresh_map(self) -> None:
        try:
            await self.cluster.nodes_manager.initialize()
        except REDIS_FAILURES as exc:
            logger.info("cluster slot map not refreshed: %r", exc)

    async def aclose(self) -> None:
        """Wait for a refresh under way (at shutdown)."""
        if self._refresh is not None:
            with contextlib.suppress(Exception):
                await self._refresh


async def ping(redis: RedisClient) -> None:
    """Check that Redis answers (``PING``); a cluster: refresh the slot map, ping each master.

    The refresh makes a probe after a failover see the promoted replicas (and forget the dead
    master), so that a circuit breaker using it closes once the cluster serves again.

    Raises:
        redis.exceptions.RedisError, OSError: Redis (a master) did not answer.
    """
    if isinstance(redis, RedisCluster):
        await redis.nodes_manager.initialize()
        await asyncio.gather(*(redis.ping(target_nodes=node) for node in redis.get_primaries()))
    else:
        await redis.ping()
