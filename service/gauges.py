"""The gauges of one worker: its pools and breakers, sampled about once a second.

The figures are this process's own (each worker has its own pools and breakers), read from
memory: sampling costs no I/O, so it also runs before every scrape the worker answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from cache import CircuitBreaker
from cache.background import stop_task
from cache.breaker import BreakerState
from service.metrics import Sampler, ServiceMetrics
from service.workers import db_pool_figures, redis_pool_figures

logger = logging.getLogger(__name__)

#: time between two samples of the gauges, seconds
SAMPLE_INTERVAL_SECONDS = 1.0


def worker_sampler(
    engine: AsyncEngine, redis: Redis, breakers: Sequence[CircuitBreaker]
) -> Sampler:
    """Return a sampler that sets the pool gauges and ``content_breaker_open`` of this worker."""

    def sample(metrics: ServiceMetrics) -> None:
        metrics.set_db_pool(db_pool_figures(engine))
        redis_pool = redis_pool_figures(redis)
        metrics.set_redis_pool(redis_pool["pool_in_use"], redis_pool["pool_max"])
        for breaker in breakers:
            metrics.set_breaker_open(breaker.name, breaker.state is BreakerState.OPEN)

    return sample


class GaugeSampling:
    """A background task that runs ``metrics.sample()`` every ``interval_seconds``.

    The owner calls :meth:`start` once on the running loop and :meth:`aclose` once.

    Args:
        metrics: whose samplers run.
        interval_seconds: time between two samples, seconds.
    """

    def __init__(
        self, metrics: ServiceMetrics, interval_seconds: float = SAMPLE_INTERVAL_SECONDS
    ) -> None:
        self._metrics = metrics
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling on the running loop (the first sample is taken at once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="metrics-gauges")

    async def aclose(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            await stop_task(self._task)
            self._task = None

    async def _run(self) -> None:
        while True:
            self._metrics.sample()
            await asyncio.sleep(self._interval)
