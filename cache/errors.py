"""The cache library's exception tree.

Every error that escapes ``cache`` derives from :class:`CacheError`. Errors of the Redis client
are translated at one boundary (:func:`translate_redis_errors`) with ``raise ... from exc`` so
that callers never need to import ``redis`` to handle a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import RedisError


class CacheError(Exception):
    """Root of every error raised by the cache library."""


class CacheUnavailableError(CacheError):
    """Redis could not be reached, timed out, or answered with an error."""


class CodecError(CacheError):
    """A stored entry could not be decoded (wrong version or truncated)."""


#: The exceptions that mean "Redis did not do what was asked": the client's own errors, socket
#: errors, and timeouts of ``asyncio.wait_for`` around a command.
REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)


@contextmanager
def translate_redis_errors(action: str) -> Iterator[None]:
    """Turn any Redis failure raised inside the block into :class:`CacheUnavailableError`.

    Args:
        action: what was being done, for the error message (``"invalidate tags"``).

    Raises:
        CacheUnavailableError: when the block raised one of :data:`REDIS_FAILURES`.
    """
    try:
        yield
    except REDIS_FAILURES as exc:
        raise CacheUnavailableError(f"Redis failed to {action}: {exc!r}") from exc
