"""Acknowledged invalidation of the near caches of a deployment, fenced by leases.

Every process that holds a near cache (:class:`cache.near.NearCache`) is a *holder*. A holder
keeps a lease in Redis (a member of the sorted set ``{prefix}:l1:holders`` whose score is the
lease's end on Redis's clock, in milliseconds) and renews it every ``lease_ms / 5``: one script
sets the score to Redis's ``TIME`` plus ``lease_ms`` and then publishes a *token* on the
holder's own channel, sent on the connection that carries its acknowledgements (no reply to
wait for: the token is the answer). The holder's near cache answers only once that token came
back over its subscription, and only until ``t0 + lease_ms * (1 - drift) / (1 + drift) - 2 ms``
on its own clock, ``t0`` being when it sent the renewal: before Redis could consider the lease
over.

A write, after its entries were deleted from Redis, publishes the keys it deleted on the bus
channel and reads the live holders (score past Redis's now) in the same round trip, then waits
until each live holder acknowledged the message, or until that holder's lease has surely
lapsed: ``remaining * (1 + drift) / (1 - drift) + 1 ms`` after the reply, on the writer's
clock. A holder applies each message (drops the keys from its near cache, which also refuses
the fills of reads begun before) and then acknowledges it on the writer's channel, in the same
pass of its reading loop: the subscription and the acknowledgements are two connections of the
bus's own, read and written directly (no pool, no reply to wait for: Redis answers nothing on
the second, ``CLIENT REPLY OFF``).

Why no acknowledged write can be missed: Redis writes the messages published to one
connection in the order it ran the commands that published them, so a holder that receives a
renewal's token has applied every message published before that renewal ran. A holder that
did not acknowledge a write's message was waited for until its lease, as it stood when the
message was published, lapsed; its later renewals ran after the message, so their tokens come
after it: it answers again only once it has applied it. A holder whose subscription broke
empties its near cache before it subscribes again. The full argument, and what it assumes of
clocks and pauses, is in ``docs/near-cache.md``.

With a Redis Cluster, the bus's keys and channels share one hash tag and its commands go to
the node serving that slot over a client of that node alone; channels are shard channels
(``SPUBLISH`` / ``SSUBSCRIBE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from hiredis import pack_command
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import SentinelConnectionPool

from cache.background import stop_task
from cache.errors import REDIS_FAILURES, CacheUnavailableError, translate_redis_errors
from cache.failover import BoundedSentinelConnectionPool
from cache.keys import KeyScheme
from cache.near import FILL_WINDOW_SECONDS, MAX_AGE_SECONDS, NearCache, boot_clock
from cache.routing import RedisClient, primary_of

logger = logging.getLogger(__name__)

#: The bound on the rate at which clocks may run apart (1 %): far above a quartz clock's
#: drift (about 1e-5) and NTP's slew limit (5e-4).
DEFAULT_DRIFT = 0.01

#: How long an invalidation's deleted keys stay listed in its tags' tombstones, in seconds: past
#: it, no near cache holds what the invalidation deleted even if its message never came (an entry
#: is filled within FILL_WINDOW_SECONDS of its read and held MAX_AGE_SECONDS at most), with room
#: for clocks that drift apart.
TOMBSTONE_SECONDS = 2 * (MAX_AGE_SECONDS + FILL_WINDOW_SECONDS) + 8

#: Subtracted from a holder's fence, in seconds: the millisecond rounding of Redis's clock.
_MARGIN_SECONDS = 0.002
#: the steps of the wait for a lease token, and the longest a step counts for (in steps)
_TOKEN_WAIT_STEPS, _LONGEST_STEP = 25, 2

#: Lua: ``now``, Redis's clock in milliseconds.
NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: Live holders, after dropping the lapsed ones. KEYS: holders. Returns {now ms, id, end, ...}.
LIVE_HOLDERS = (
    NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[HOLDERS], '-inf', now)
local live = redis.call('ZRANGE', KEYS[HOLDERS], 0, -1, 'WITHSCORES')
"""
)

_LIVE = (
    LIVE_HOLDERS.replace("HOLDERS", "1")
    + """
table.insert(live, 1, now)
return live
"""
)

# KEYS: holders; ARGV: holder, lease ms, the holder's channel, token. The token is published
# only once the lease is set: a renewal that failed (a replica's READONLY, an OOM) sends none.
_RENEW = (
    NOW_MS
    + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
"""
)


@dataclass(slots=True)
class _Waiter:
    """The acknowledgements one message is waiting for."""

    acked: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class Message:
    """One invalidation message being sent.

    Attributes:
        ident: its number among this process's messages.
        header: what precedes its payload on the channel (writer, number and op, then a newline).
    """

    ident: int
    header: str


#: Sends a message (see :meth:`InvalidationBus.deliver`) and returns the live holders.
Publisher = Callable[[Message], Awaitable[Sequence[bytes | str | int] | None]]


class InvalidationBus:
    """The near caches' invalidation channel, holder lease and acknowledgements, per process.

    Call :meth:`start` before use and :meth:`aclose` at the end. Safe to share between the
    tasks of one event loop.

    Args:
        redis: the client (of one server, a Sentinel-managed master, or a cluster); owned by
            the caller.
        scheme: the key scheme.
        near: this process's near cache, which then holds a lease and hears invalidations;
            None for a process that only writes (it still waits for the holders).
        lease_ms: a holder's lease, in milliseconds: a holder that stops answering delays
            writes by at most this long.
        drift: the bound on the relative rate of any two clocks (see docs/near-cache.md).
        lease_check: False publishes without waiting for anyone (the best effort of other
            near caches: for comparison only).
        on_wait: called with how long each write waited for acknowledgements, in seconds.
        on_deliver: called with how long each message took, from before ``publish`` ran (the
            invalidation's script, which publishes) to the end of the wait for the holders, in
            seconds; not called when publishing failed.

    Attributes:
        holder: this process's name on the bus.
        waits: how many messages waited for at least one holder.
        acknowledgements: how many holders acknowledged this process's messages (itself
            included, when it holds a near cache).
        lapsed: how many holders' leases writes waited out (no acknowledgement came).

    Raises:
        ValueError: ``lease_ms`` below 50, or ``drift`` outside [0, 0.5).
    """

    def __init__(
        self,
        redis: RedisClient,
        scheme: KeyScheme,
        *,
        near: NearCache | None = None,
        lease_ms: int = 500,
        drift: float = DEFAULT_DRIFT,
        lease_check: bool = True,
        on_wait: Callable[[float], None] | None = None,
        on_deliver: Callable[[float], None] | None = None,
    ) -> None:
        if lease_ms < 50:
            raise ValueError("lease_ms must be >= 50")
        if not 0 <= drift < 0.5:
            raise ValueError("drift must be within [0, 0.5)")
        self._redis = redis
        self._scheme = scheme
        self._near = near
        self._lease_ms = lease_ms
        self._drift = drift
        self._lease_check = lease_check
        # How much longer a span may last on one clock than on another (see docs/near-cache.md).
        self._stretch = (1 + drift) / (1 - drift)
        self._on_wait = on_wait
        self._on_deliver = on_deliver
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._holders_key = scheme.near_holders
        self._channel = scheme.near_channel
        self._own_channel = scheme.near_holder_channel(self.holder)
        self._sharded = isinstance(redis, RedisCluster)
        self._publish = "SPUBLISH" if self._sharded else "PUBLISH"
        self._client: Redis | None = None if self._sharded else _own_client(redis)
        self._owns_client = self._client is not redis
        self._ids = itertools.count(1)
        self._waiters: dict[int, _Waiter] = {}
        self._token: tuple[int, asyncio.Future[None]] | None = None
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.waits = 0
        self.acknowledgements = 0
        self.lapsed = 0

    @property
    def lease_ms(self) -> int:
        """A holder's lease, in milliseconds."""
        return self._lease_ms

    @property
    def lapse_seconds(self) -> float:
        """How long after the last renewal Redis ran every holder's lease has surely lapsed.

        In seconds, on this process's clock; 0 with the lease check off. A write whose
        invalidation could not be published waits this long before it is answered: holders
        that cannot reach Redis either stop answering from their near caches by then.
        """
        if not self._lease_check:
            return 0.0
        return self._lease_ms / 1000 * self._stretch + _MARGIN_SECONDS

    @property
    def tombstone_ms(self) -> int:
        """How long invalidated keys stay in their tags' tombstones, in milliseconds."""
        return int(TOMBSTONE_SECONDS * 1000)

    @property
    def channel(self) -> str:
        """The channel invalidations are published on."""
        return self._channel

    @property
    def is_sharded(self) -> bool:
        """Whether channels are shard channels (a cluster): publish with ``SPUBLISH``."""
        return self._sharded

    def start(self) -> None:
        """Subscribe and, with a near cache, hold a lease, in the background."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="near-bus")

    async def aclose(self) -> None:
        """Stop: the near cache stops answering, and its lease is removed (or lapses)."""
        if self._near is not None:
            self._near.revoke()
        if self._task is not None:
            await stop_task(self._task)
            self._task = None
        if self._near is not None and self._client is not None:
            # Writers need not wait out the lease of a holder that no longer answers.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._lease_ms / 1000):
                    await self._client.zrem(self._holders_key, self.holder)
        if self._owns_client and self._client is not None:
            await self._client.aclose()

    # -- writing ------------------------------------------------------------------------

    @property
    def holders_key(self) -> str:
        """The key of the holders' leases (a publishing script reads the live ones)."""
        return self._holders_key

    async def deliver(self, op: str, publish: Publisher) -> None:
        """Publish a message of ``op`` with ``publish``; wait for the holders it names.

        Acknowledgements are collected from before ``publish`` runs, so none is missed.

        Args:
            op: ``k`` (keys), ``n`` (a namespace) or ``a`` (everything).
            publish: sends the message (its header, then its payload) and returns the live
                holders as the script reads them: Redis's time in ms, then holder, lease end
                (ms) pairs; None or empty when nothing was published.

        Raises:
            Whatever ``publish`` raises (nothing is waited for then).
        """
        ident = next(self._ids)
        waiter = self._waiters[ident] = _Waiter()
        started = boot_clock()
        try:
            live = await publish(Message(ident, f"{self.holder} {ident} {op}\n"))
            await self._wait(waiter, live)
        finally:
            del self._waiters[ident]
        if self._on_deliver is not None:
            self._on_deliver(boot_clock() - started)

    async def _wait(self, waiter: _Waiter, live: Sequence[bytes | str | int] | None) -> None:
        """Wait until each holder in ``live`` acknowledged, or its lease surely lapsed."""
        if not live:
            return
        replied = boot_clock()
        now_ms = float(live[0])
        stretch = self._stretch
        deadlines: dict[str, float] = {}
        for i in range(1, len(live) - 1, 2):
            holder = _text(live[i])
            remaining_ms = float(live[i + 1]) - now_ms
            deadlines[holder] = replied + (remaining_ms * stretch + 1) / 1000
        pending = {h: d for h, d in deadlines.items() if h not in waiter.acked}
        if not pending:
            return
        if not self._lease_check:
            return  # best effort: the holders drop what they hear, when they hear it
        self.waits += 1
        while True:
            pending = {h: d for h, d in pending.items() if h not in waiter.acked}
            now = boot_clock()
            lapsed = [h for h, d in pending.items() if d <= now]
            self.lapsed += len(lapsed)
            for h in lapsed:
                del pending[h]
            if not pending:
                break
            waiter.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(pending.values()) - now):
                    await waiter.wake.wait()
        if self._on_wait is not None:
            self._on_wait(boot_clock() - replied)

    async def announce(self, op: str, payload: str) -> None:
        """Publish a message of ``op`` with ``payload`` and wait for the live holders.

        For writes whose entries were deleted by other means (a cluster's groups, a purge).

        Raises:
            CacheUnavailableError: Redis failed; the holders may not have heard it.
        """

        async def publish(message: Message) -> Sequence[bytes | str | int]:
            with translate_redis_errors("publish an invalidation"):
                client = await self._command_client()
                async with client.pipeline(transaction=False) as pipe:
                    pipe.execute_command(self._publish, self._channel, message.header + payload)
                    pipe.eval(_LIVE, 1, self._holders_key)
                    _, live = await pipe.execute()
            return list(live)

        await self.deliver(op, publish)

    # -- holding ------------------------------------------------------------------------

    async def _command_client(self) -> Redis:
        """This process's client of the bus's server.

        Raises:
            CacheUnavailableError: with a cluster, its slot map names no node for the bus.
        """
        if self._client is None:
            assert isinstance(self._redis, RedisCluster)
            try:
                self._client = _node_client(self._redis, self._holders_key)
            except Exception as exc:
                raise CacheUnavailableError(f"no node serves the bus's slot: {exc!r}") from exc
        return self._client

    async def _run(self) -> None:
        first_pause = pause = 0.05
        while True:
            began = boot_clock()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._subscribed.is_set() and boot_clock() - began > self._lease_ms / 1000:
                    pause = first_pause  # the session had held a lease: this is a new loss
                logger.warning("near cache bus lost (%r); reconnecting in %.2f s", exc, pause)
            if self._near is not None:
                self._near.revoke()
                self._near.clear()
            self._subscribed.clear()
            if self._sharded and self._client is not None:
                with contextlib.suppress(Exception):
                    await self._client.aclose()
                self._client = None  # the slot may have moved: find its node again
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def _session(self) -> None:
        """Subscribe, empty the near cache, then hold the lease while reading messages."""
        client = await self._command_client()
        subscriber, acks = _dedicated_connection(client), _dedicated_connection(client)
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        try:
            # Bounded here: the connections have no socket timeout (see _dedicated_connection).
            async with asyncio.timeout(max(1.0, self._lease_ms / 1000)):
                for connection in (subscriber, acks):
                    await connection.connect()  # type: ignore[no-untyped-call]
                    _check_admitted(client, connection)
            # Acknowledgements are written and never waited for: Redis sends no replies on it.
            await acks.send_packed_command(_command("CLIENT", "REPLY", "OFF"), False)
            channels = [self._own_channel]
            if self._near is not None:
                channels.append(self._channel)
            subscribe = "SSUBSCRIBE" if self._sharded else "SUBSCRIBE"
            await subscriber.send_packed_command(_command(subscribe, *channels), False)
            await self._confirm(subscriber, len(channels))
            if self._near is not None:
                # Whatever it holds may have missed messages while it was not subscribed.
                self._near.clear()
                tasks.append(loop.create_task(self._renew(acks), name="near-bus-lease"))
            self._subscribed.set()
            tasks.append(loop.create_task(self._read(subscriber, acks), name="near-bus-read"))
            tasks.append(loop.create_task(_watch_silent(acks), name="near-bus-acks"))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # its failure ends the session
            raise CacheUnavailableError("a task of the bus's session stopped")
        finally:
            for task in tasks:
                task.cancel()
            for connection in (subscriber, acks):
                with contextlib.suppress(Exception):
                    await connection.disconnect(nowait=True)
            for task in tasks:
                await stop_task(task)

    async def _confirm(self, subscriber: AbstractConnection, count: int) -> None:
        async with asyncio.timeout(max(1.0, self._lease_ms / 1000)):
            for _ in range(count):
                reply = await subscriber.read_response(disconnect_on_error=False)
                if not isinstance(reply, list) or reply[0] not in (b"subscribe", b"ssubscribe"):
                    raise CacheUnavailableError(f"subscribing was answered with {reply!r}")

    async def _read(self, subscriber: AbstractConnection, acks: AbstractConnection) -> None:
        """Apply each message as it comes; acknowledge each invalidation once it is applied.

        One task reads the subscription and writes the acknowledgements, with no reply to wait
        for: a holder's part of a write's wait is one pass of this loop.
        """
        while True:
            reply = await subscriber.read_response(disconnect_on_error=False)
            kind = reply[0]
            if kind in (b"message", b"smessage"):
                ack = self._receive(_text(reply[1]), reply[2])
                if ack is not None:
                    await _send_unanswered(acks, ack)
            elif kind in (b"unsubscribe", b"sunsubscribe"):
                raise CacheUnavailableError("unsubscribed by the server (the slot moved?)")

    def _receive(self, channel: str, data: bytes) -> bytes | None:
        """Apply one message; return the acknowledgement to send for it, if one is due."""
        text = data.decode()
        if channel == self._channel:
            head, _, payload = text.partition("\n")
            writer, ident, op = head.split(" ", 2)
            near = self._near
            if near is not None:
                if op == "k":
                    near.invalidate(payload.split("\n") if payload else [])
                elif op == "n":
                    near.invalidate_namespace(payload)
                else:
                    near.clear()
            if writer == self.holder:
                self._acknowledged(int(ident), self.holder)
                return None
            to = self._scheme.near_holder_channel(writer)
            return _command(self._publish, to, f"a {self.holder} {ident}")
        kind, _, rest = text.partition(" ")
        if kind == "a":
            holder, _, ident = rest.rpartition(" ")
            self._acknowledged(int(ident), holder)
        elif kind == "r" and self._token is not None and self._token[0] == int(rest):
            token = self._token[1]
            if not token.done():
                token.set_result(None)
        return None

    def _acknowledged(self, ident: int, holder: str) -> None:
        waiter = self._waiters.get(ident)
        if waiter is not None:
            self.acknowledgements += 1
            waiter.acked.add(holder)
            waiter.wake.set()

    async def _renew(self, acks: AbstractConnection) -> None:
        """Renew the lease every lease/5; grant the near cache each renewal its token confirms.

        Each renewal is one script on ``acks`` (replies off): a renewal Redis refused sends
        no token, and a token that does not come back within half a lease ends the session.
        """
        near = self._near
        assert near is not None
        lease = self._lease_ms / 1000
        valid_for = lease / self._stretch - _MARGIN_SECONDS
        period = lease / 5
        script = _RENEW.replace("PUBLISH", self._publish)
        arguments = (self._holders_key, self.holder, str(self._lease_ms), self._own_channel)
        nonce = 0
        while True:
            nonce += 1
            token: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._token = (nonce, token)
            sent = boot_clock()
            await _send_unanswered(acks, _command("EVAL", script, "1", *arguments, f"r {nonce}"))
            if not await _returned(token, lease / 2):
                # Replies are off: Redis refused the renewal, or the subscription is dead.
                raise CacheUnavailableError("the lease's token did not come back")
            near.grant(sent + valid_for)
            await asyncio.sleep(max(0.0, sent + period - boot_clock()))

    async def wait_subscribed(self, timeout_seconds: float) -> bool:
        """Wait until the bus is subscribed; return whether it is (for startup and tests)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_seconds):
                await self._subscribed.wait()
        return self._subscribed.is_set()


async def _returned(token: asyncio.Future[None], limit: float) -> bool:
    """Whether ``token`` is done within ``limit`` seconds of this process's running time.

    Time in which the process did not run (stopped by SIGSTOP, or its event loop blocked) is
    not counted: a token that came back while the process was stopped is found done when it
    runs again, instead of a timeout that fell due in the pause ending the session. The wait
    goes in :data:`_TOKEN_WAIT_STEPS` steps, each counted for at most :data:`_LONGEST_STEP`
    times its length; a loop that is only slow is discounted too, so that a dead channel can
    take a few times ``limit`` to be found (meanwhile the near cache's lease lapses as usual:
    no answer depends on this wait).
    """
    step = limit / _TOKEN_WAIT_STEPS
    waited = 0.0
    while waited < limit:
        began = boot_clock()
        done, _ = await asyncio.wait((token,), timeout=step)
        if done:
            return True
        # A step that took much longer than asked: the process did not run for the rest.
        waited += min(boot_clock() - began, _LONGEST_STEP * step)
    return token.done()


def _text(value: bytes | str | int) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _command(*args: str) -> bytes:
    """``args`` as one command in Redis's protocol (packed by hiredis)."""
    # hiredis's stub types the argument as a one-element tuple; it takes any number.
    return cast(bytes, pack_command(cast(Any, args)))


def _check_admitted(client: Redis, connection: AbstractConnection) -> None:
    """Refuse a Sentinel master that its pool has not acknowledged (see cache.failover).

    Raises:
        MasterChangedError: ``connection`` reached a master other than the acknowledged one.
    """
    pool = client.connection_pool
    if isinstance(pool, BoundedSentinelConnectionPool):
        pool.check_admitted(connection)


async def _send_unanswered(connection: AbstractConnection, packed: bytes) -> None:
    """Write ``packed`` on ``connection``, whose replies are off; never connect it again.

    Raises:
        CacheUnavailableError: it closed (connecting it again would turn replies back on).
        redis.exceptions.ConnectionError: the write failed.
    """
    if not connection.is_connected:
        raise CacheUnavailableError("the acknowledgements' connection closed")
    await connection.send_packed_command(packed, False)


async def _watch_silent(connection: AbstractConnection) -> None:
    """Return never while ``connection`` (with replies off) stays silent and open.

    Raises:
        CacheUnavailableError: it answered something (an error, or replies were not turned
            off), or it closed.
    """
    try:
        reply = await connection.read_response(disconnect_on_error=False)
    except REDIS_FAILURES as exc:
        raise CacheUnavailableError(f"the acknowledgements' connection failed: {exc!r}") from exc
    raise CacheUnavailableError(f"the acknowledgements' connection answered {reply!r}")


def _dedicated_connection(client: Redis) -> AbstractConnection:
    """A new connection to ``client``'s server, outside its pool, for the bus to drive itself.

    Not connected yet; the caller connects it (bounding the wait itself) and disconnects it.
    It speaks RESP2 and returns bytes whatever the client's settings, and has no socket
    timeout: a subscription waits for messages as long as none comes (a holder's lease tokens,
    which must come back over it within half a lease, notice a dead one).
    """
    pool = client.connection_pool
    kwargs = {
        **pool.connection_kwargs,
        "protocol": 2,
        "decode_responses": False,
        "socket_timeout": None,
    }
    return pool.connection_class(**kwargs)


def _own_client(redis: RedisClient) -> Redis:
    """A client of the same server with a small pool of its own, when it can be made.

    The bus's subscription, renewals and acknowledgements never wait behind requests for a
    pooled connection (a renewal that waits lets the lease lapse), nor leave a connection that
    was subscribed in the requests' pool. A Sentinel-managed client is shared: its pool
    follows the master.
    """
    assert isinstance(redis, Redis)
    pool = redis.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        return redis
    kwargs = {**pool.connection_kwargs}
    own = ConnectionPool(connection_class=pool.connection_class, max_connections=8, **kwargs)
    return Redis.from_pool(own)


def _node_client(cluster: RedisCluster, key: str) -> Redis:
    """A client of the one node that serves ``key``'s slot (the bus's keys and channels)."""
    node = primary_of(cluster, key)
    # The node's own connection settings (address, timeouts, credentials, TLS), as its
    # connections are made; a pool of this client's own.
    pool = ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
    return Redis.from_pool(pool)  # closing the client disconnects its pool
