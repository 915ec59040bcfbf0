"""The answers of the operations endpoints, as pydantic models: the OpenAPI document's schemas.

Health and readiness (:mod:`service.endpoints.health`), ``/stats``
(:mod:`service.endpoints.statistics`), the cache purge and the warming jobs
(:mod:`service.endpoints.admin`). Like :mod:`service.representations`, these models are on no
request's path: the answers are rendered as dicts, and the tests check that they validate.
Times are RFC 3339 strings in UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

#: The states of a warming job (see :mod:`cache.warming`).
JobState = Literal["queued", "running", "done", "failed", "cancelled"]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Liveness(_Answer):
    """The process runs."""

    status: Literal["ok"]


class Readiness(_Answer):
    """The instance can answer some reads; degraded when Redis or PostgreSQL does not answer.

    Hits still serve while PostgreSQL is down; reads bypass the cache while Redis is down.
    """

    status: Literal["ok", "degraded"]
    redis: Literal["ok", "unavailable"]
    postgres: Literal["ok", "unavailable"]


class Purged(_Answer):
    """The answer to a purge."""

    purged: int = Field(description="entries deleted")


class WarmingStarted(_Answer):
    """A warming job was queued; its location (and the Location header) tells its progress."""

    job_id: str
    state: Literal["queued"]
    location: str = Field(description="the job's path, also the Location header")


class WarmingJob(_Answer):
    """A warming job's state and progress; counts are in keys."""

    job_id: str
    state: JobState
    source: Literal["hot", "recent", "keys"]
    namespace: str | SkipJsonSchema[None] = Field(
        None, description="the namespace warmed; absent when the job warms every namespace"
    )
    limit: int = Field(description="the most keys the job plans")
    instance: str = Field(description="the instance (host:pid) that runs the job")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    total: int = Field(description="keys planned")
    done: int = Field(description="keys filled")
    skipped: int = Field(description="keys skipped: fresh enough already, or nothing to load")
    errors: int = Field(description="keys whose load failed")
    keys_per_second: float = Field(description="keys processed per second since the start")
    eta_seconds: float | None = Field(description="seconds left at that rate; null when unknown")
    error: str | None = Field(description="why the job failed; null otherwise")
    cancel_requested: bool


# /stats ---------------------------------------------------------------------------------------


class CacheCounters(_Answer):
    """Cache outcomes, counted over every worker and instance."""

    hits: int = Field(description="first reads answered from the cache")
    misses: int = Field(description="first reads loaded from PostgreSQL")
    stale: int = Field(description="stale entries answered")
    stale_if_error: int = Field(description="of the stale answers, those after a failed load")
    bypass: int = Field(description="reads that did not use Redis")
    coalesced: int = Field(description="misses answered by another caller's load")
    lease_losses: int = Field(description="misses that found another process's load lease")
    herd_timeouts: int = Field(description="of those, loads made after the wait ran out")
    store_rejected: int = Field(description="stores refused because an invalidation came first")
    refreshes: int = Field(description="background refreshes")
    refresh_failures: int = Field(description="background refreshes that failed")
    l1_hits: int = Field(
        description="of the hits, those answered from a worker's near cache (L1), not Redis"
    )
    hit_ratio: float = Field(description="hits / (hits + misses); 0 when both are 0")


class TierFigures(_Answer):
    """The answers one tier gave."""

    hits: int = Field(description="hits it answered")
    stale: int = Field(
        description="stale entries it answered (0 for L1: a near cache answers fresh entries only)"
    )
    hit_ratio: float = Field(
        description="its hits / (hits + misses) of every read, so that the tiers' ratios add "
        "up to the cache's hit_ratio; 0 when there was no read"
    )


class Tiers(_Answer):
    """The hits and stale answers split by tier: L1 (each worker's near cache) and L2 (Redis)."""

    l1: TierFigures = Field(description="the near caches: l1_hits")
    l2: TierFigures = Field(description="Redis: hits - l1_hits, and every stale answer")


class CacheFigures(CacheCounters):
    """The totals over every namespace, and each namespace's counters."""

    complete: bool = Field(
        description="whether the counters are the deployment's (false: Redis could not be read, "
        "only this process's unsent counts)"
    )
    namespaces: dict[str, CacheCounters] = Field(description="by namespace, sorted")
    tiers: Tiers
    invalidation_failures: int = Field(
        description="invalidations this worker could not apply after a commit (the outbox "
        "applies them later)"
    )


class StatePerSecond(_Answer):
    """Requests per second of each cache state."""

    hit: float
    miss: float
    stale: float
    bypass: float


class WindowRates(_Answer):
    """The request rates of one window."""

    seconds: float = Field(description="the time the counted buckets cover, the rates' divisor")
    requests_per_second: float
    hit_ratio: float = Field(description="hits / (hits + misses) in the window; 0 when none")
    per_second: StatePerSecond


class Rates(_Answer):
    """Request rates over the last 10 seconds, minute and 5 minutes."""

    ten_seconds: WindowRates = Field(alias="10s")
    one_minute: WindowRates = Field(alias="1m")
    five_minutes: WindowRates = Field(alias="5m")


class WorkerIdentity(_Answer):
    """A live worker: which instance and process, when it started and last reported."""

    instance: str
    pid: int
    started_at: datetime
    reported_at: datetime


class DbPoolFigures(_Answer):
    """A SQLAlchemy pool's connections."""

    size: int
    checked_out: int
    checked_in: int
    overflow: int


class DbPoolWorker(WorkerIdentity, DbPoolFigures):
    """One live worker's database pool."""


class DbPool(DbPoolFigures):
    """The database pools: sums over the live workers of every instance, and each worker."""

    workers: list[DbPoolWorker]


class RedisPoolFigures(_Answer):
    """A Redis client pool's connections."""

    pool_in_use: int
    pool_max: int


class RedisPoolWorker(WorkerIdentity, RedisPoolFigures):
    """One live worker's Redis pool."""


class RedisFigures(RedisPoolFigures):
    """Redis's memory and keys (null when Redis refused the command), and the client pools."""

    used_memory_bytes: int | None
    keys: int | None
    evicted_keys: int | None
    available: bool = Field(description="whether Redis answered this poll")
    workers: list[RedisPoolWorker]


class OutboxFigures(_Answer):
    """The invalidation outbox: the last backlog sample and this worker's relay."""

    backlog: int | None = Field(description="rows waiting; null before the first sample")
    lag_seconds: float | None = Field(description="age of the oldest row, seconds")
    sampled_at: datetime | None
    sample_failures: int
    applied: int = Field(description="rows this worker's relay applied")
    failures: int = Field(description="rows this worker's relay failed to apply")
    listening: bool = Field(description="whether the relay listens for new rows")


class BreakerFigures(_Answer):
    """A circuit breaker in this worker."""

    state: Literal["closed", "open", "recovering"]
    opened: int = Field(description="times it opened")


class Breakers(_Answer):
    """This worker's circuit breakers."""

    redis: BreakerFigures
    database: BreakerFigures


class WarmingFigures(_Answer):
    """The running warming job and the last one that ended."""

    state: Literal["idle", "running"]
    current: WarmingJob | None
    last_run: WarmingJob | None
    available: bool | SkipJsonSchema[None] = Field(
        None, description="false when Redis could not say (state is then idle); absent otherwise"
    )


class ReplicaSkips(_Answer):
    """Loads that passed a read replica by, per reason (summed over the live workers)."""

    lagging: int = Field(description="its sampled lag was past the bound")
    down: int = Field(description="it could not be reached")
    not_replica: int = Field(description="it was not in recovery")
    behind: int = Field(description="it had not replayed the newest invalidated write")
    conflict: int = Field(description="the statement was cancelled by a recovery conflict")


class ReplicaFigures(_Answer):
    """A read replica: state and lag as this worker last sampled them; loads of every worker."""

    name: str = Field(description="`host:port/database`")
    state: Literal["unknown", "up", "lagging", "down", "not_replica"]
    lag_seconds: float | None = Field(description="replay lag behind the primary, seconds")
    replayed_position: int | None = Field(description="its WAL replay position, bytes")
    sampled_at: datetime | None
    loads: int = Field(description="cache-miss loads it served")
    skipped: ReplicaSkips


class DbReplicas(_Answer):
    """The read replicas of ``DATABASE_REPLICA_URLS``, and the loads the primary served."""

    max_lag_seconds: float
    primary_loads: int = Field(description="cache-miss loads the primary served")
    replicas: list[ReplicaFigures]


class NearCacheFigures(_Answer):
    """A near cache (L1) and its worker's invalidation bus."""

    max_bytes: int = Field(description="its bound, bytes; 0 when the near cache is off")
    bytes: int = Field(
        description="bytes of the entries it holds (bodies, ETags and keys, plus a fixed "
        "overhead per entry)"
    )
    entries: int = Field(description="entries it holds")
    evictions: int = Field(description="entries evicted to stay within max_bytes")
    fills_refused: int = Field(description="fills refused because an invalidation raced the read")
    invalidations: int = Field(description="invalidation messages it applied")
    lease_valid: bool = Field(
        description="whether it answers (its holder's lease in Redis is valid, or the lease "
        "check is off), as of reported_at; false when the near cache is off"
    )
    ack_waits: int = Field(description="this worker's writes that waited for a holder's ack")
    lapsed_leases: int = Field(
        description="holders whose lease this worker's writes waited out (no acknowledgement)"
    )


class NearCacheWorker(WorkerIdentity, NearCacheFigures):
    """One live worker's near cache."""


class NearCaches(_Answer):
    """The near caches (L1): sums over the live workers of every instance, and each worker."""

    max_bytes: int = Field(description="the sum of the live workers' bounds, bytes")
    bytes: int = Field(description="the sum of the bytes the live workers' entries count")
    entries: int = Field(description="the sum of the live workers' entries")
    lease_ms: int = Field(description="a holder's lease (CACHE_L1_LEASE_MS), milliseconds")
    lease_check: bool = Field(
        description="CACHE_L1_LEASE_CHECK: false is the best-effort mode, for comparison only"
    )
    workers: list[NearCacheWorker] = Field(
        description="each live worker that reports near-cache figures"
    )


class Stats(_Answer):
    """The figures a dashboard polls: cache, rates, pools, Redis, outbox, warming, near caches."""

    cache: CacheFigures
    rates: Rates
    db_pool: DbPool
    redis: RedisFigures
    outbox: OutboxFigures
    breakers: Breakers
    warming: WarmingFigures
    db_replicas: DbReplicas
    l1: NearCaches
