"""A Redis cache-aside library: read-through with TTL and jitter, tags, leases and statistics.

It knows nothing of the data it caches: callers build keys from :class:`KeyScheme` namespaces,
load on a miss with their own loader, and name the tags that make an entry wrong.
"""

from cache.autopipeline import AutoPipeline
from cache.background import BackgroundTask, every
from cache.breaker import BreakerState, CircuitBreaker
from cache.bus import InvalidationBus
from cache.codec import Entry, Representation, coded_etag, coded_etags, etag_for
from cache.compression import Compression
from cache.counters import hit_ratio
from cache.entries import BatchLoader, Loaded, Loader
from cache.errors import CacheError, CacheUnavailableError, CodecError
from cache.failover import (
    Admission,
    BoundedSentinelConnectionPool,
    IdentifiedSentinelConnection,
    MasterChangedError,
    MasterIdentity,
    NotMasterError,
)
from cache.filling import FillReport
from cache.hotkeys import HotKeyTracker
from cache.invalidation import Invalidator
from cache.keys import CacheKey, KeyScheme, Namespace
from cache.leases import Grant, Lease, LeaseStore
from cache.members import MemberRegistry, MemberReport, Members
from cache.near import NearCache, NearFigures, NearStore
from cache.orm_hooks import Change, SessionTagCollector
from cache.pacing import Pacer
from cache.policy import CachePolicy, PolicyTable
from cache.pool import BoundedConnectionPool, PoolTimeoutError
from cache.rates import RateBuckets, WindowFigures
from cache.readthrough import CacheState, Lookup, PendingHit, ReadThroughCache
from cache.routing import RedisClient
from cache.singleflight import SingleFlight
from cache.stats import CacheStats, FlushPart, StatsObserver, StatsReading
from cache.warming import JobProgress, WarmingBusyError, WarmingJobs
from cache.watermarks import required_position, requiring

__all__ = [
    "Admission",
    "AutoPipeline",
    "BackgroundTask",
    "BatchLoader",
    "BoundedConnectionPool",
    "BoundedSentinelConnectionPool",
    "BreakerState",
    "CacheError",
    "CacheKey",
    "CachePolicy",
    "CacheState",
    "CacheStats",
    "CacheUnavailableError",
    "Change",
    "CircuitBreaker",
    "CodecError",
    "Compression",
    "Entry",
    "FillReport",
    "FlushPart",
    "Grant",
    "HotKeyTracker",
    "IdentifiedSentinelConnection",
    "InvalidationBus",
    "Invalidator",
    "JobProgress",
    "KeyScheme",
    "Lease",
    "LeaseStore",
    "Loaded",
    "Loader",
    "Lookup",
    "MasterChangedError",
    "MasterIdentity",
    "MemberRegistry",
    "MemberReport",
    "Members",
    "Namespace",
    "NearCache",
    "NearFigures",
    "NearStore",
    "NotMasterError",
    "Pacer",
    "PendingHit",
    "PolicyTable",
    "PoolTimeoutError",
    "RateBuckets",
    "ReadThroughCache",
    "RedisClient",
    "Representation",
    "SessionTagCollector",
    "SingleFlight",
    "StatsObserver",
    "StatsReading",
    "WarmingBusyError",
    "WarmingJobs",
    "WindowFigures",
    "coded_etag",
    "coded_etags",
    "etag_for",
    "every",
    "hit_ratio",
    "required_position",
    "requiring",
]
