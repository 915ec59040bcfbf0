"""The gauges of one worker: its pools and breakers, sampled about once a second.

The figures are this process's own (each worker has its own pools and breakers), read from
memory: sampling costs no I/O, so it also runs before every scrape the worker answers.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from cache import CircuitBreaker
from cache.breaker import BreakerState
from cache.routing import RedisClient
from service.metrics import Sampler, ServiceMetrics
from service.workers import db_pool_figures, redis_pool_figures

#: time between two samples of the gauges, seconds
SAMPLE_INTERVAL_SECONDS = 1.0


def worker_sampler(
    engine: AsyncEngine, redis: RedisClient, breakers: Sequence[CircuitBreaker]
) -> Sampler:
    """Return a sampler that sets the pool gauges and ``content_breaker_open`` of this worker."""

    def sample(metrics: ServiceMetrics) -> None:
        metrics.set_db_pool(db_pool_figures(engine))
        redis_pool = redis_pool_figures(redis)
        metrics.set_redis_pool(redis_pool["pool_in_use"], redis_pool["pool_max"])
        for breaker in breakers:
            metrics.set_breaker_open(breaker.name, breaker.state is BreakerState.OPEN)

    return sample
