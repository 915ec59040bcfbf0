"""The invalidation watermark: how far a copy of the source must have caught up for a load.

A *source position* is a non-negative integer that only grows as the source of truth changes
(for PostgreSQL, a WAL position in bytes), below 2**64. An invalidation may record the
position of the change it invalidates for; ``{prefix}:source:watermark`` keeps the highest
one recorded (see :class:`cache.invalidation.Invalidator`). A lease reads it in the same
script that reads the invalidation sequence (see :mod:`cache.leases`), so that a lease whose
sequence is at or past an invalidation's also holds a watermark at or past that invalidation's
position.

While a leased load runs, :func:`required_position` returns its lease's watermark: a loader
that may read a lagging copy of the source (a streaming replica) must read one that has
applied the source at least up to it, or the source itself. Outside a leased load (a bypass
while Redis is down, a read no entry depends on) and when no watermark is recorded (Redis lost
it), it returns None: nothing says which copy is recent enough, so only the source will do.

Positions are stored as 20 decimal digits, zero-padded, so that Lua compares them as strings
exactly (its numbers are doubles, exact only below 2**53).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: Digits of a stored position: enough for any 64-bit unsigned integer.
POSITION_DIGITS = 20

_required: ContextVar[int | None] = ContextVar("cache_required_position", default=None)


def encode_position(position: int) -> str:
    """Return ``position`` as stored in Redis: 20 decimal digits, zero-padded.

    Raises:
        ValueError: ``position`` is negative or not below 2**64.
    """
    if not 0 <= position < 2**64:
        raise ValueError(f"source position {position} is outside [0, 2**64)")
    return f"{position:0{POSITION_DIGITS}d}"


def decode_position(raw: bytes | str | None) -> int | None:
    """Return a stored position as an integer; None for None (nothing recorded)."""
    return None if raw is None else int(raw)


def required_position() -> int | None:
    """Return the source position the running load must reflect; None when none can be named.

    Within a load under a lease: the highest position recorded by an invalidation before the
    lease was taken (see the module's docstring). None outside a leased load, and when no
    position was recorded: the loader must then read the source itself.
    """
    return _required.get()


@contextmanager
def requiring(position: int | None) -> Iterator[None]:
    """Make :func:`required_position` return ``position`` within the block (this task only)."""
    token = _required.set(position)
    try:
        yield
    finally:
        _required.reset(token)
