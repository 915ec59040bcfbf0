"""A bounded pool on the master Redis Sentinel names, admitting a new master when told to.

redis-py's ``SentinelConnectionPool`` asks the sentinels where the master is each time it opens
a connection, and its connections turn a ``READONLY`` answer (a demoted master) into a
``ConnectionError``. That follows a failover, but does not make it safe to read from: the
sentinels may name the new master before every client has stopped writing to the old one (after
a manual ``SENTINEL FAILOVER`` the old master stays a master, its clients connected, until the
sentinels convert it a few seconds later), and replication is asynchronous, so the promoted
replica may lack the last writes the old master acknowledged. A cache reading from it at once
may serve entries that a lost invalidation deleted.

:class:`BoundedSentinelConnectionPool` therefore knows which master it may use. It asks every
sentinel at once and believes the newest configuration (the highest ``config-epoch``). Each
connection records, when it opens, the :class:`MasterIdentity` it reached (address and
replication id), after checking that the server answers as a master. A checkout that meets an
identity other than the *acknowledged* one is refused with :class:`MasterChangedError` (a
redis-py ``ConnectionError``, so callers fail open as on any outage), after the owner's
``on_master_change`` hook was called (once per identity). The owner repairs what the new master
may lack inside :meth:`BoundedSentinelConnectionPool.admitting`, where its own task alone may use
it, then calls :meth:`~BoundedSentinelConnectionPool.acknowledge`. The sentinels'
``+switch-master`` announcements (:meth:`~BoundedSentinelConnectionPool.watch_switches`) and a
periodic question (:meth:`~BoundedSentinelConnectionPool.verify_master`) withdraw the
acknowledgement of a master that is still up but no longer the one named.

The pool keeps :class:`cache.pool.BoundedConnectionPool`'s bound: at most ``max_connections``
connections checked out, a checkout waits at most ``timeout`` seconds for a free one.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from cache.errors import REDIS_FAILURES
from cache.pool import BoundedConnectionPool

#: The channel on which every sentinel announces a new master: ``name old-ip old-port ip port``.
SWITCH_CHANNEL = "+switch-master"


@dataclass(frozen=True, slots=True)
class MasterIdentity:
    """One master as a connection found it.

    Attributes:
        host: the address the sentinels gave.
        port: its port.
        replication_id: the server's ``master_replid``: new at every promotion of a replica and
            at every start of a server that loaded no data, so that equal identities mean the
            same data set (also new when a master without a backlog gets its first replica: a
            change that costs its owner one needless repair).
    """

    host: str
    port: int
    replication_id: str

    def __str__(self) -> str:
        return f"{self.host}:{self.port} (replication id {self.replication_id[:12]})"


class MasterChangedError(RedisConnectionError):
    """A connection reached a master other than the acknowledged one; nothing was sent to it.

    A ``redis.exceptions.ConnectionError``, so code that handles Redis failures handles it.
    """


class NotMasterError(RedisConnectionError):
    """The server the sentinels named does not answer as a master (yet, or any more)."""


class IdentifiedSentinelConnection(SentinelManagedConnection):
    """A Sentinel-managed connection that learns, as it opens, which master it reached.

    Attributes:
        identity: the master it is connected to; None while it is not connected.
        generation: the pool's ``generation`` when it connected.

    Raises:
        NotMasterError: from ``connect`` when the server answers as a replica.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.identity: MasterIdentity | None = None
        self.generation = 0

    async def connect_to(self, address: tuple[str, int]) -> None:
        """Connect to ``address``, then read its role and replication id (one round trip)."""
        self.identity = None
        self.generation = self.connection_pool.generation
        await super().connect_to(address)  # type: ignore[no-untyped-call]
        try:
            await self.send_command("INFO", "replication", check_health=False)
            fields = info_fields(await self.read_response())
        except BaseException:
            await self.disconnect()
            raise
        role = fields.get("role", "unknown")
        if role != "master":
            await self.disconnect()
            raise NotMasterError(f"{self.host}:{self.port} answers as a {role}, not a master")
        self.identity = MasterIdentity(str(self.host), int(self.port), fields["master_replid"])


def info_fields(reply: object) -> dict[str, str]:
    """Return the ``name:value`` lines of an ``INFO`` reply as a dict (sections left out)."""
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and not name.startswith("#"):
            fields[name.strip()] = value.strip()
    return fields


class Admission:
    """The right of one task to use a master that is not acknowledged yet (see ``admitting``).

    Held in a context variable: the task that entered ``admitting`` and the tasks it creates
    meanwhile see it; it ends with the block.

    Attributes:
        identity: the master the task's first checkout reached; every later checkout of the
            admission must reach the same one. None before the first checkout.
    """

    def __init__(self, pool: BoundedSentinelConnectionPool) -> None:
        self.pool = pool
        self.identity: MasterIdentity | None = None
        self.is_open = True


_ADMISSION: contextvars.ContextVar[Admission | None] = contextvars.ContextVar(
    "cache_failover_admission", default=None
)


class BoundedSentinelConnectionPool(BoundedConnectionPool, SentinelConnectionPool):
    """A bounded pool of connections to the master that the sentinels name, acknowledged first.

    Bound to the event loop it is first used on, like every redis-py asyncio pool. It owns its
    ``sentinel_manager`` when built by :meth:`from_sentinels` (``aclose`` closes it).

    Args:
        service_name: the master's name in the sentinels' configuration.
        sentinel_manager: the ``redis.asyncio.sentinel.Sentinel`` to ask.
        timeout: how long a checkout waits for a free connection, in seconds.
        on_master_change: called (with no argument) the first time a checkout meets each new
            master, and when the acknowledgement is withdrawn (:meth:`verify_master`,
            :meth:`watch_switches`); synchronous, called before the refusal is raised. None
            for nothing; may be set later.
        **kwargs: as for ``redis.asyncio.ConnectionPool`` (``max_connections`` is required);
            ``connection_class`` must be :class:`IdentifiedSentinelConnection` (the default)
            or a subclass.

    Attributes:
        acknowledged: the master every task may use; None until the first :meth:`acknowledge`,
            and after a withdrawal.
        generation: incremented by each withdrawal; a connection opened in an earlier
            generation is opened again before it is used.

    Raises:
        PoolTimeoutError: from :meth:`get_connection`, when no connection came free in time.
        MasterChangedError: from :meth:`get_connection`, for a master not acknowledged.
        NotMasterError, redis.asyncio.sentinel.MasterNotFoundError: from
            :meth:`get_connection`, while no master can be reached (during a failover).
    """

    def __init__(
        self,
        service_name: str,
        sentinel_manager: Sentinel,
        *,
        timeout: float,
        on_master_change: Callable[[], object] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("connection_class", IdentifiedSentinelConnection)
        super().__init__(
            timeout=timeout,
            service_name=service_name,
            sentinel_manager=sentinel_manager,
            **kwargs,
        )
        self.on_master_change = on_master_change
        self.acknowledged: MasterIdentity | None = None
        self.generation = 0
        self._reported: MasterIdentity | None = None
        self._owns_sentinels = False

    @classmethod
    def from_sentinels(
        cls,
        sentinels: Sequence[tuple[str, int]],
        service_name: str,
        *,
        timeout: float,
        sentinel_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> BoundedSentinelConnectionPool:
        """Return a pool that asks ``sentinels`` (host, port pairs) and owns its clients of them.

        Args:
            sentinels: the sentinels' addresses, all asked at once (see
                :meth:`newest_master_address`).
            service_name: the master's name in the sentinels' configuration.
            timeout: as for the constructor.
            sentinel_kwargs: connection options of the sentinel clients (timeouts, password);
                None for the ``socket_*`` options of ``kwargs``.
            **kwargs: as for the constructor.
        """
        manager = Sentinel(  # type: ignore[no-untyped-call]
            list(sentinels),
            sentinel_kwargs=sentinel_kwargs
            or {k: v for k, v in kwargs.items() if k.startswith("socket_")},
        )
        pool = cls(service_name, manager, timeout=timeout, **kwargs)
        pool._owns_sentinels = True
        return pool

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        """Check out a connection to the acknowledged master (or the admitted one).

        Raises:
            MasterChangedError: the connection reached another master; it is closed, and
                ``on_master_change`` was called if this master was not reported before.
        """
        connection = await super().get_connection()
        assert isinstance(connection, IdentifiedSentinelConnection)
        try:
            if connection.generation != self.generation:
                # Opened before the sentinels named another master: it may still be on the old.
                await connection.disconnect()
                await connection.connect()  # type: ignore[no-untyped-call]
            self._admit(connection.identity)
        except BaseException:
            # Closed: its next use asks the sentinels again.
            await connection.disconnect()
            await self.release(connection)
            raise
        return connection

    def check_admitted(self, connection: AbstractConnection) -> None:
        """Check a connection made outside the pool (from its class) as a checkout would.

        Raises:
            MasterChangedError: it reached a master other than the acknowledged (or admitted)
                one; ``on_master_change`` was called if this master was not reported before.
        """
        assert isinstance(connection, IdentifiedSentinelConnection)
        self._admit(connection.identity)

    def _admit(self, identity: MasterIdentity | None) -> None:
        admission = _ADMISSION.get()
        if admission is not None and admission.pool is self and admission.is_open:
            if admission.identity is None:
                admission.identity = identity
            elif identity != admission.identity:
                raise MasterChangedError(
                    f"the master changed again while admitted: {identity}, not {admission.identity}"
                )
            return
        if identity is not None and identity == self.acknowledged:
            return
        if identity != self._reported:
            self._reported = identity
            self._report()
        raise MasterChangedError(
            f"Redis master {identity} is not acknowledged yet (acknowledged: {self.acknowledged})"
        )

    def _report(self) -> None:
        if self.on_master_change is not None:
            self.on_master_change()

    @contextmanager
    def admitting(self) -> Iterator[Admission]:
        """Let the current task use whichever master its first checkout reaches.

        Every checkout of the task (and of tasks it creates) inside the block must reach that
        same master, else :class:`MasterChangedError`; other tasks still get only the
        acknowledged one. The admission ends with the block.

        Yields:
            The admission; its ``identity`` is the master reached, once a checkout happened.
        """
        admission = Admission(self)
        token = _ADMISSION.set(admission)
        try:
            yield admission
        finally:
            admission.is_open = False
            _ADMISSION.reset(token)

    def acknowledge(self, identity: MasterIdentity) -> None:
        """Let every task use ``identity`` from now on (the caller repaired what it lacks)."""
        self.acknowledged = identity
        self._reported = identity

    async def verify_master(self) -> bool:
        """Ask the sentinels for the master; withdraw the acknowledgement when it moved.

        When the sentinels name an address other than the acknowledged master's, nothing is
        acknowledged any more: every checkout is refused until the owner acknowledges again,
        connections opened before are opened again before their next use, and
        ``on_master_change`` is called.

        Returns:
            False when the acknowledgement was withdrawn; True otherwise (also when nothing
            was acknowledged yet).

        Raises:
            redis.asyncio.sentinel.MasterNotFoundError: no sentinel names a usable master
                (during a failover, or none answers); nothing is changed.
        """
        host, port = await self.newest_master_address()
        return not self._moved(host, port)

    async def newest_master_address(self) -> tuple[str, int]:
        """Ask every sentinel at once; return the master address of the newest configuration.

        Of the sentinels that answer and see the master up, the one with the highest
        ``config-epoch`` (incremented by each failover) is believed: right after a failover,
        the others may still name the old master.

        Raises:
            redis.asyncio.sentinel.MasterNotFoundError: no sentinel names a master that is up.
        """
        manager = self.sentinel_manager
        answers = await asyncio.gather(
            *(sentinel.sentinel_master(self.service_name) for sentinel in manager.sentinels),
            return_exceptions=True,
        )
        states = [
            state
            for state in answers
            if isinstance(state, dict) and manager.check_master_state(state, self.service_name)
        ]
        if not states:
            failures = [repr(a) for a in answers if isinstance(a, BaseException)]
            raise MasterNotFoundError(f"No master found for {self.service_name!r}: {failures}")
        newest = max(states, key=lambda state: int(state.get("config-epoch", 0)))
        return str(newest["ip"]), int(newest["port"])

    async def get_master_address(self) -> tuple[str, int]:
        """Return :meth:`newest_master_address`; close the idle connections when it moved."""
        address = await self.newest_master_address()
        if self.master_address != address:
            self.master_address = address
            await self.disconnect(inuse_connections=False)
        return address

    async def watch_switches(self, *, retry_seconds: float = 1.0) -> None:
        """Listen to every sentinel's ``+switch-master`` announcements until cancelled.

        An announcement of this pool's master at another address withdraws the
        acknowledgement as :meth:`verify_master` does, within a round trip of the switch. One
        subscription (one connection) per sentinel; a failed one is made again after
        ``retry_seconds``. Failures are swallowed: :meth:`verify_master` is the backstop.
        """
        await asyncio.gather(
            *(self._listen(sentinel, retry_seconds) for sentinel in self.sentinel_manager.sentinels)
        )

    async def _listen(self, sentinel: Redis, retry_seconds: float) -> None:
        while True:
            try:
                async with sentinel.pubsub() as pubsub:
                    await pubsub.subscribe(SWITCH_CHANNEL)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._announced(message["data"])
            except REDIS_FAILURES:
                pass
            await asyncio.sleep(retry_seconds)

    def _announced(self, data: bytes | str) -> None:
        words = (data.decode() if isinstance(data, bytes) else data).split()
        if len(words) == 5 and words[0] == self.service_name and words[4].isdigit():
            self._moved(words[3], int(words[4]))

    def _moved(self, host: str, port: int) -> bool:
        """Withdraw the acknowledgement when the master is now at ``host:port``; return if so."""
        acknowledged = self.acknowledged
        if acknowledged is None or (acknowledged.host, acknowledged.port) == (host, port):
            return False
        self.acknowledged = None
        self._reported = None
        self.generation += 1
        self._report()
        return True

    async def aclose(self) -> None:
        """Close every connection, and the sentinel clients when the pool owns them."""
        try:
            await super().aclose()
        finally:
            if self._owns_sentinels:
                await self.sentinel_manager.aclose()
