"""Rate limits, counted in Redis so that they hold across workers and instances.

Reads (``GET``, ``HEAD``) are counted per client address, writes (every other method) per API
token (by its digest, never in clear), or per client address when the request carries no known
token. The operations endpoints (``/health/*``, ``/metrics``, ``/stats``, ``/dashboard``) are
never limited. The counting is the ``limits`` library's sliding window counter (two counters per
limit and client, weighted), its keys under :meth:`cache.KeyScheme.rate_limits`.

Every answer of a limited class carries ``RateLimit-Policy`` and ``RateLimit`` in the syntax of
draft-ietf-httpapi-ratelimit-headers-10 (``"reads";q=100;w=1`` and ``"reads";r=42;t=1``: quota,
window in seconds, remaining, seconds until the quota resets). Past a limit the answer is a 429
problem document with ``Retry-After`` (seconds).

When Redis fails (or the Redis circuit breaker is open) the request is served unlimited and
without those headers: rate limits fail open; a warning is logged at most once per
:data:`WARN_INTERVAL_SECONDS`.

The client address is the socket peer's, unless the peer is a trusted proxy: then the nearest
address of ``X-Forwarded-For`` (read from the right) that is not a trusted proxy.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address

from limits import RateLimitItem
from limits.aio.storage import RedisClusterStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cache import CircuitBreaker, KeyScheme
from cache.routing import RedisClient
from service.problems import problem_bytes
from service.settings import Settings

logger = logging.getLogger(__name__)

#: The least time between two warnings that Redis failed and limits are not enforced, seconds.
WARN_INTERVAL_SECONDS = 5.0

Network = IPv4Network | IPv6Network

_READ_METHODS = frozenset({"GET", "HEAD"})
#: The paths never limited: the operations endpoints, by prefix.
UNLIMITED_PREFIXES: tuple[str, ...] = ("/health/", "/metrics", "/stats", "/dashboard")
_XFF = b"x-forwarded-for"
_AUTHORIZATION = b"authorization"
_PROBLEM = b"application/problem+json"


def is_limited(path: str) -> bool:
    """Return whether requests to ``path`` are counted (when limits are configured)."""
    return not path.startswith(UNLIMITED_PREFIXES)


def token_digest(token: str) -> str:
    """Return the hex BLAKE2b digest (16 bytes) that stands for ``token`` in keys and logs."""
    return hashlib.blake2b(token.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class LimitClass:
    """The limits of one class of requests (``reads`` or ``writes``).

    Attributes:
        name: the class's name, the first part of its counters' identity.
        items: its limits, all enforced.
        names: each limit's policy name in the headers: ``name`` alone for one limit,
            ``{name}-{window}s`` for several.
        policy: the ``RateLimit-Policy`` value, encoded.
    """

    name: str
    items: tuple[RateLimitItem, ...]
    names: tuple[str, ...]
    policy: bytes

    @classmethod
    def of(cls, name: str, items: Sequence[RateLimitItem]) -> LimitClass:
        """Return the class ``name`` with ``items``, its header names and policy made."""
        if len(items) == 1:
            names: tuple[str, ...] = (name,)
        else:
            names = tuple(f"{name}-{item.get_expiry()}s" for item in items)
        policy = ", ".join(
            f'"{n}";q={item.amount};w={item.get_expiry()}'
            for n, item in zip(names, items, strict=True)
        )
        return cls(name, tuple(items), names, policy.encode("ascii"))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the limits decided for one request.

    Attributes:
        allowed: whether the request may be served.
        headers: the ``RateLimit-Policy`` and ``RateLimit`` headers, encoded.
        retry_after_seconds: when refused, how long to wait, whole seconds (at least 1).
    """

    allowed: bool
    headers: list[tuple[bytes, bytes]]
    retry_after_seconds: int = 0


def client_address(scope: Scope, trusted: Sequence[Network]) -> str:
    """Return the client address of ``scope``, believing ``X-Forwarded-For`` of ``trusted``.

    The socket peer is the client unless it is in ``trusted``; then ``X-Forwarded-For`` is read
    from the right, past every trusted address: the first other one is the client (when all are
    trusted, the leftmost). ``-`` when the server gave no peer.
    """
    peer = scope.get("client")
    address = peer[0] if peer else "-"
    if not trusted or not _is_trusted(address, trusted):
        return address
    hops: list[str] = []
    for name, value in scope["headers"]:
        if name == _XFF:
            hops.extend(h.strip() for h in value.decode("latin-1").split(","))
    for hop in reversed(hops):
        if not hop:
            continue
        address = hop
        if not _is_trusted(hop, trusted):
            break
    return address


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


class RateLimits:
    """The configured limits, their counters in Redis, and the choice of what to count.

    Args:
        redis: the service's client; its connection pool (and timeouts) are shared.
        scheme: the deployment's keys; the counters go under :meth:`KeyScheme.rate_limits`.
        reads: the read limits (per client address); empty for none.
        writes: the write limits (per token); empty for none.
        trusted_proxies: the peers whose ``X-Forwarded-For`` is believed.
        tokens: the known API tokens; a write with another token counts per address.
        breaker: when open, limits are skipped without trying Redis; None for no breaker.
    """

    def __init__(
        self,
        redis: RedisClient,
        scheme: KeyScheme,
        *,
        reads: Sequence[RateLimitItem],
        writes: Sequence[RateLimitItem],
        trusted_proxies: Sequence[Network] = (),
        tokens: Collection[str] = (),
        breaker: CircuitBreaker | None = None,
    ) -> None:
        storage: RedisStorage
        if isinstance(redis, RedisCluster):
            # The limits library keeps a cluster client of its own (on the same nodes, with
            # the same credentials and timeouts); its keys carry hash tags of their own.
            kwargs = redis.get_connection_kwargs()
            options: dict[str, float | str] = {
                name: kwargs[name] or ""
                for name in ("username", "password", "socket_timeout", "socket_connect_timeout")
                if kwargs.get(name) is not None
            }
            seeds = ",".join(
                f"{node.host}:{node.port}" for node in redis.nodes_manager.startup_nodes.values()
            )
            storage = RedisClusterStorage(
                f"async+redis+cluster://{seeds}",
                implementation="redispy",
                key_prefix=scheme.rate_limits(),
                **options,  # type: ignore[arg-type]  # mypy matches them to the named parameters
            )
        else:
            storage = RedisStorage(
                "redis://",
                implementation="redispy",
                key_prefix=scheme.rate_limits(),
                connection_pool=redis.connection_pool,  # type: ignore[arg-type]
            )
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self.reads = LimitClass.of("reads", reads) if reads else None
        self.writes = LimitClass.of("writes", writes) if writes else None
        self._trusted = tuple(trusted_proxies)
        self._tokens = frozenset(token_digest(t) for t in tokens)
        self._breaker = breaker
        self._warned_at = -math.inf

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        redis: RedisClient,
        scheme: KeyScheme,
        breaker: CircuitBreaker | None = None,
    ) -> RateLimits | None:
        """Return the limits of ``settings``; None when neither reads nor writes are limited."""
        reads, writes = settings.read_limits(), settings.write_limits()
        if not reads and not writes:
            return None
        return cls(
            redis,
            scheme,
            reads=reads,
            writes=writes,
            trusted_proxies=settings.proxy_networks(),
            tokens=settings.tokens(),
            breaker=breaker,
        )

    def classify(self, scope: Scope) -> tuple[LimitClass, str] | None:
        """Return the class of the request ``scope`` and who it counts against; None if unlimited.

        The identity is ``a:{address}`` or, for a write with a known bearer token,
        ``t:{digest}``.
        """
        if not is_limited(scope["path"]):
            return None
        if scope["method"] in _READ_METHODS:
            if self.reads is None:
                return None
            return self.reads, "a:" + client_address(scope, self._trusted)
        if self.writes is None:
            return None
        for name, value in scope["headers"]:
            if name == _AUTHORIZATION:
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    digest = token_digest(token.strip())
                    if digest in self._tokens:
                        return self.writes, "t:" + digest
                break
        return self.writes, "a:" + client_address(scope, self._trusted)

    async def check(self, limits: LimitClass, identity: str) -> Verdict | None:
        """Count one request of ``identity`` against ``limits``; None when Redis failed.

        A refused request is not counted. Two Redis round trips per limit at most (the hit,
        then the window's state for the headers).
        """
        breaker = self._breaker
        if breaker is not None and not breaker.allows():
            return None
        limiter = self._limiter
        try:
            refused: int | None = None
            for index, item in enumerate(limits.items):
                if not await limiter.hit(item, limits.name, identity):
                    refused = index
                    break
            windows = await asyncio.gather(
                *(limiter.get_window_stats(item, limits.name, identity) for item in limits.items)
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._warn(exc)
            return None
        now = time.time()
        resets = [max(0, math.ceil(w.reset_time - now)) for w in windows]
        state = ", ".join(
            f'"{name}";r={w.remaining};t={reset}'
            for name, w, reset in zip(limits.names, windows, resets, strict=True)
        )
        headers = [(b"ratelimit-policy", limits.policy), (b"ratelimit", state.encode("ascii"))]
        if refused is None:
            return Verdict(True, headers)
        return Verdict(False, headers, max(1, resets[refused]))

    def _warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_INTERVAL_SECONDS:
            self._warned_at = now
            logger.warning("rate limits not enforced, Redis failed: %r", exc)


class RateLimitMiddleware:
    """Pure ASGI middleware: counts each request of a limited class, refuses it past a limit.

    Args:
        app: the application it wraps.
        limits: returns the limits in force (None before the app started: nothing is limited).
    """

    def __init__(self, app: ASGIApp, limits: Callable[[], RateLimits | None]) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve ``scope``, with the rate-limit headers, or refuse it with a 429."""
        limits = self.limits() if scope["type"] == "http" else None
        found = limits.classify(scope) if limits is not None else None
        if found is None:
            await self.app(scope, receive, send)
            return
        assert limits is not None
        verdict = await limits.check(*found)
        if verdict is None:
            await self.app(scope, receive, send)
            return
        if not verdict.allowed:
            await _refuse(send, found[0], verdict)
            return
        extra = verdict.headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _refuse(send: Send, limits: LimitClass, verdict: Verdict) -> None:
    body = problem_bytes(
        429,
        f"too many {limits.name}; retry in {verdict.retry_after_seconds} s",
        title="Too many requests",
    )
    headers = [
        (b"content-type", _PROBLEM),
        (b"content-length", b"%d" % len(body)),
        (b"cache-control", b"no-store"),
        (b"retry-after", b"%d" % verdict.retry_after_seconds),
        *verdict.headers,
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
