"""A circuit breaker: stop calling a server that fails, probe it, recover it deliberately.

States (after Nygard, *Release It!*, 2007, "Circuit Breaker"):

* ``CLOSED``: calls go through; ``failure_threshold`` failures in a row open the breaker.
* ``OPEN``: callers must not call the server (:meth:`CircuitBreaker.allows` is False), so no
  request waits on a dead server's timeout; a background task probes the server every
  ``probe_interval_seconds``.
* ``RECOVERING``: a probe succeeded; the ``on_recovery`` hook runs (for a cache, applying the
  invalidations that accrued while it was unreachable) and calls still do not go through. The
  breaker closes only when the hook has succeeded; when it fails, the breaker opens again.

:meth:`CircuitBreaker.trip` opens the breaker at once, whatever the count: for a failure that
makes the server's data untrustworthy (a lost invalidation, a new master), not merely
unreachable. A trip while ``RECOVERING`` means that the recovery under way may have missed what
caused it: the hook runs again before the breaker closes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable

from cache.background import stop_task

logger = logging.getLogger(__name__)


class BreakerState(enum.Enum):
    """The state of a :class:`CircuitBreaker`."""

    CLOSED = "closed"
    OPEN = "open"
    RECOVERING = "recovering"


class CircuitBreaker:
    """A circuit breaker for one server, for the tasks of one event loop.

    Args:
        name: names the server in logs.
        probe: an awaitable call that raises when the server is not usable (e.g. a PING).
        on_recovery: run after a successful probe, before the breaker closes; it raises to
            keep the breaker open. None for nothing to do.
        failure_threshold: consecutive failures that open the breaker (>= 1).
        probe_interval_seconds: time between probes while open, in seconds.
    """

    def __init__(
        self,
        name: str,
        probe: Callable[[], Awaitable[object]],
        *,
        on_recovery: Callable[[], Awaitable[object]] | None = None,
        failure_threshold: int = 3,
        probe_interval_seconds: float = 0.5,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.name = name
        self._probe = probe
        self._on_recovery = on_recovery
        self._threshold = failure_threshold
        self._interval = probe_interval_seconds
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_count = 0
        self._tripped_while_recovering = False
        self._task: asyncio.Task[None] | None = None

    def allows(self) -> bool:
        """Return whether calls may go to the server now (the breaker is closed)."""
        return self.state is BreakerState.CLOSED

    def record_success(self) -> None:
        """Note a successful call: the consecutive failure count starts again."""
        self.failures = 0

    def record_failure(self) -> None:
        """Note a failed call; open the breaker at ``failure_threshold`` failures in a row."""
        self.failures += 1
        if self.failures >= self._threshold:
            self.trip()

    def trip(self) -> None:
        """Open the breaker now and start probing.

        No-op when already open; while recovering, the recovery hook runs again (after a new
        probe) before the breaker closes.
        """
        if self.state is BreakerState.RECOVERING:
            self._tripped_while_recovering = True
            return
        if self.state is not BreakerState.CLOSED:
            return
        self.state = BreakerState.OPEN
        self.opened_count += 1
        logger.warning("circuit breaker %s opened", self.name)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._recover(), name=f"breaker-{self.name}"
            )

    async def aclose(self) -> None:
        """Stop probing (at shutdown)."""
        if self._task is not None:
            await stop_task(self._task)
            self._task = None

    async def _recover(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._probe()
            except Exception as exc:
                logger.info("circuit breaker %s: probe failed: %r", self.name, exc)
                continue
            self.state = BreakerState.RECOVERING
            self._tripped_while_recovering = False
            try:
                if self._on_recovery is not None:
                    await self._on_recovery()
            except Exception:
                logger.exception("circuit breaker %s: recovery failed, staying open", self.name)
                self.state = BreakerState.OPEN
                continue
            if self._tripped_while_recovering:
                logger.warning("circuit breaker %s: tripped while recovering, again", self.name)
                self.state = BreakerState.OPEN
                continue
            self.state = BreakerState.CLOSED
            self.failures = 0
            logger.warning("circuit breaker %s closed", self.name)
            return
