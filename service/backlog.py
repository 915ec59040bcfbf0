"""The outbox backlog, sampled in the background so that reading it costs no query.

Every ``interval_seconds`` the sampler asks PostgreSQL for the outbox's row count and the age
of its oldest row (:meth:`service.outbox.OutboxRelay.sample`), and keeps the answer in
:attr:`BacklogSampler.latest`. ``/stats`` reads that attribute; a metrics gauge may read it too,
or register a callback with :meth:`BacklogSampler.on_sample` to be told of each new sample.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from cache import BackgroundTask, every
from service.outbox import OutboxSample

logger = logging.getLogger(__name__)


class BacklogSampler:
    """Keeps the latest outbox sample. One per process; call :meth:`start` and :meth:`aclose`.

    A failed sample (an error, or no answer within ``timeout_seconds``) is logged and counted
    in :attr:`failures`; :attr:`latest` keeps the previous sample, whose ``sampled_at`` tells
    its age.

    Args:
        take_sample: returns a fresh sample (queries the database).
        interval_seconds: time between two samples, in seconds.
        timeout_seconds: how long one sample may take, in seconds.

    Attributes:
        latest: the newest sample; None until the first one succeeds.
        failures: how many samples failed.
    """

    def __init__(
        self,
        take_sample: Callable[[], Awaitable[OutboxSample]],
        *,
        interval_seconds: float = 5.0,
        timeout_seconds: float = 2.0,
    ) -> None:
        self._take_sample = take_sample
        self._timeout = timeout_seconds
        self._callbacks: list[Callable[[OutboxSample], None]] = []
        self._task = BackgroundTask(
            "outbox-backlog-sampler", every(interval_seconds, self.sample_now)
        )
        self.latest: OutboxSample | None = None
        self.failures = 0

    def on_sample(self, callback: Callable[[OutboxSample], None]) -> None:
        """Call ``callback`` with every new sample from now on (its errors are logged)."""
        self._callbacks.append(callback)

    def start(self) -> None:
        """Start sampling in the background: the first sample at once."""
        self._task.start()

    async def aclose(self) -> None:
        """Stop the background task."""
        await self._task.aclose()

    async def sample_now(self) -> OutboxSample | None:
        """Take a sample now and keep it; return it, or None when it failed (fail-open)."""
        try:
            async with asyncio.timeout(self._timeout):
                sample = await self._take_sample()
        except Exception as exc:
            self.failures += 1
            logger.warning("outbox backlog not sampled: %r", exc)
            return None
        self.latest = sample
        for callback in self._callbacks:
            try:
                callback(sample)
            except Exception:
                logger.exception("outbox sample callback failed")
        return sample
