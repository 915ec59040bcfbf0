"""The lifespan state: everything built at startup, kept on ``app.state.ctx``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from cache import (
    CacheStats,
    CircuitBreaker,
    InvalidationBus,
    Invalidator,
    MemberRegistry,
    NearCache,
)
from cache.routing import RedisClient
from service.auth import TokenAuthority
from service.backlog import BacklogSampler
from service.entity_writes import EntityWrites
from service.keyspaces import ContentKeys
from service.metrics import ServiceMetrics
from service.outbox import OutboxRelay
from service.reads import ContentReader
from service.replicas import ReplicaSet
from service.settings import Settings
from service.unit_of_work import UnitOfWork
from service.warming import ContentWarming
from service.writes import ArticleWrites


@dataclass(frozen=True, slots=True)
class AppState:
    """What the endpoints use. Built and closed by the lifespan, in reverse order."""

    settings: Settings
    engine: AsyncEngine
    #: the small pool of background work (outbox relay, backlog sampler, readiness probe)
    background_engine: AsyncEngine
    redis: RedisClient
    keys: ContentKeys
    stats: CacheStats
    invalidator: Invalidator
    reader: ContentReader
    unit_of_work: UnitOfWork
    article_writes: ArticleWrites
    entity_writes: EntityWrites
    warming: ContentWarming
    auth: TokenAuthority
    relay: OutboxRelay
    redis_breaker: CircuitBreaker
    database_breaker: CircuitBreaker
    metrics: ServiceMetrics
    workers: MemberRegistry
    backlog: BacklogSampler
    #: the read replicas (none when ``DATABASE_REPLICA_URLS`` is empty) and the loads' counts
    replicas: ReplicaSet
    #: this worker's near cache (None when ``CACHE_L1_MAX_BYTES`` is 0) and its bus
    near: NearCache | None
    bus: InvalidationBus
