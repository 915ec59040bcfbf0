"""The service's configuration, read from the environment (and a ``.env`` file).

Every variable is documented in the README's configuration table.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal

from limits import RateLimitItem, parse_many
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Role = Literal["editor", "admin"]


class Settings(BaseSettings):
    """The service's settings; unknown environment variables are ignored."""

    # Inputs are kept out of error messages: API_TOKENS and STATS_TOKEN are secrets.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    database_url: str | None = Field(
        None, description="postgresql+asyncpg://... ; with REDIS_URL unset too, embedded servers"
    )
    redis_url: str | None = Field(None, description="redis://... or rediss://...")
    api_tokens: str = Field("", description="comma-separated token:role pairs (editor, admin)")
    stats_token: str | None = Field(None, description="when set, /stats and /metrics need it")
    data_dir: Path = Field(Path(".data"), description="where embedded servers keep their data")

    cache_prefix: str = Field("cs", description="first segment of every Redis key")
    cache_ttl_seconds: float = Field(300.0, gt=0, description="default entry TTL, seconds")
    cache_ttls: str = Field(
        "", description="per-namespace TTLs in seconds, e.g. 'articles=60,article=600'"
    )
    cache_jitter_ratio: float = Field(0.1, ge=0, lt=1, description="TTL jitter fraction")
    http_max_age_seconds: int = Field(
        0, ge=0, description="upper bound of Cache-Control max-age sent to clients, seconds"
    )
    cache_stale_while_revalidate_seconds: float = Field(
        30.0, ge=0, description="after the TTL, answer STALE while one refresh runs, seconds"
    )
    cache_stale_if_error_seconds: float = Field(
        300.0, ge=0, description="after the TTL, answer STALE when PostgreSQL fails, seconds"
    )
    cache_early_refresh_beta: float = Field(
        1.0, ge=0, description="probabilistic early refresh (XFetch) beta; 0 turns it off"
    )
    cache_negative_ttl_seconds: float = Field(5.0, gt=0, description="TTL of a cached 404")
    cache_herd_wait_ms: int = Field(
        1000, ge=0, description="how long a miss waits for another process's load, ms"
    )
    cache_load_lease_ms: int = Field(
        5000, gt=0, description="lifetime of a load lease (a dead loader delays others so long)"
    )
    cache_compress_min_bytes: int = Field(
        1024,
        ge=0,
        description="bodies of this many bytes or more are also stored compressed; 0: off",
    )
    cache_gzip_level: int = Field(
        1, ge=1, le=9, description="deflate level of stored gzip bodies (ISA-L: 1-3)"
    )
    cache_brotli_quality: int = Field(
        1, ge=0, le=11, description="quality of stored brotli bodies (with the brotli extra)"
    )
    stats_flush_interval_seconds: float = Field(1.0, gt=0)
    cache_hot_keys_sample_rate: float = Field(
        0.05, ge=0, le=1, description="fraction of reads counted for hot-key tracking; 0: off"
    )
    cache_hot_keys_per_namespace: int = Field(
        1000, ge=1, description="identities tracked per namespace (per flush and per bucket)"
    )
    warm_batch_size: int = Field(100, ge=1, le=1000, description="keys per warming batch")
    warm_concurrency: int = Field(
        2, ge=1, description="warming batches at a time, each on at most one database connection"
    )
    warm_default_limit: int = Field(1000, ge=1, description="keys per warming job by default")
    warm_loop_share: float = Field(
        0.2,
        gt=0,
        le=1,
        description="largest share of a worker's event loop a warming job takes"
        " while requests want it",
    )
    warm_lease_seconds: float = Field(
        10.0, gt=0, description="a warming job whose runner is silent this long is failed"
    )
    warm_on_startup: bool = Field(False, description="start a warming job (hot keys) at startup")
    warm_after_purge: bool = Field(
        False, description="start a warming job (hot keys) after POST /admin/cache/purge all"
    )
    warm_after_import: bool = Field(
        False, description="warm the newest articles and first pages after import and seed"
    )
    warm_refresh_top_n: int = Field(
        0,
        ge=0,
        le=100_000,
        description="refresh this many hot keys periodically before they expire; 0: off",
    )
    warm_refresh_interval_seconds: float = Field(
        60.0, gt=0, description="time between two periodic refreshes of the hot keys, seconds"
    )
    instance_name: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        description="this instance's name in /stats's worker lists (default: the host name)",
    )
    outbox_sample_interval_seconds: float = Field(
        5.0, gt=0, description="how often each worker samples the outbox backlog, seconds"
    )
    outbox_poll_interval_seconds: float = Field(
        1.0, gt=0, description="outbox drain interval when no NOTIFY arrives, seconds"
    )
    breaker_failure_threshold: int = Field(
        3, ge=1, description="consecutive failures that open a circuit breaker"
    )
    breaker_probe_interval_seconds: float = Field(
        0.5, gt=0, description="time between probes of an open breaker's server, seconds"
    )

    log_format: Literal["json", "text"] = Field(
        "json", description="log lines as JSON objects (one a line) or as plain text"
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info", description="lowest level of the lines logged (uvicorn's loggers too)"
    )
    access_log: bool = Field(
        False, description="log one line per answered request (method, route, status, ...)"
    )
    shutdown_drain_seconds: float = Field(
        0.0,
        ge=0,
        description="after SIGTERM, answer 503 on /health/ready this long before stopping, seconds",
    )

    max_body_bytes: int = Field(
        1_048_576, ge=1, description="largest request body accepted (else 413), bytes"
    )
    max_page_depth: int = Field(
        10_000, ge=1, description="deepest offset page (page * per_page) before cursor=, rows"
    )
    rate_limit_reads: str = Field(
        "", description="GET/HEAD limit per client address, e.g. '100/second;3000/minute'"
    )
    rate_limit_writes: str = Field("", description="write limit per token, e.g. '10/second'")
    trusted_proxies: str = Field(
        "", description="comma-separated addresses or CIDRs whose X-Forwarded-For is believed"
    )

    redis_max_connections: int = Field(64, ge=1)
    redis_pool_timeout_seconds: float = Field(0.5, gt=0)
    redis_socket_timeout_seconds: float = Field(0.25, gt=0)
    redis_connect_timeout_seconds: float = Field(0.25, gt=0)

    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(10, ge=0)
    db_pool_timeout_seconds: float = Field(5.0, gt=0)
    db_connect_timeout_seconds: float = Field(2.0, gt=0)
    db_statement_timeout_ms: int = Field(10_000, ge=0)

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("cache_prefix")
    @classmethod
    def _prefix_is_plain(cls, value: str) -> str:
        if not value or any(c in value for c in "*?[] :"):
            raise ValueError("CACHE_PREFIX must be non-empty without spaces, ':' or glob chars")
        return value

    @model_validator(mode="after")
    def _pairs_parse(self) -> Settings:
        if (self.database_url is None) != (self.redis_url is None):
            raise ValueError("set both DATABASE_URL and REDIS_URL, or neither")
        self.tokens()
        self.namespace_ttls()
        self.read_limits()
        self.write_limits()
        self.proxy_networks()
        return self

    def read_limits(self) -> list[RateLimitItem]:
        """Return ``RATE_LIMIT_READS`` parsed; empty when reads are not limited.

        Raises:
            ValueError: the value is not in the ``limits`` library's notation.
        """
        return _parse_limits("RATE_LIMIT_READS", self.rate_limit_reads)

    def write_limits(self) -> list[RateLimitItem]:
        """Return ``RATE_LIMIT_WRITES`` parsed; empty when writes are not limited.

        Raises:
            ValueError: the value is not in the ``limits`` library's notation.
        """
        return _parse_limits("RATE_LIMIT_WRITES", self.rate_limit_writes)

    def proxy_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """Return ``TRUSTED_PROXIES`` as networks (an address is a network of one).

        Raises:
            ValueError: an item is neither an address nor a CIDR.
        """
        try:
            return tuple(
                ip_network(item, strict=False)
                for item in filter(None, (p.strip() for p in self.trusted_proxies.split(",")))
            )
        except ValueError as exc:
            raise ValueError(f"TRUSTED_PROXIES: {exc}") from None

    @property
    def is_embedded(self) -> bool:
        """True when neither URL is set: the service runs its own servers."""
        return self.database_url is None and self.redis_url is None

    def tokens(self) -> dict[str, Role]:
        """Return the configured tokens and their roles.

        Raises:
            ValueError: on a pair that is not ``token:role`` with a known role.
        """
        pairs: dict[str, Role] = {}
        for item in filter(None, (p.strip() for p in self.api_tokens.split(","))):
            token, sep, role = item.rpartition(":")
            if not sep or not token or role not in ("editor", "admin"):
                raise ValueError("API_TOKENS holds a pair that is not token:editor or token:admin")
            pairs[token] = role  # type: ignore[assignment]
        return pairs

    def namespace_ttls(self) -> dict[str, float]:
        """Return ``CACHE_TTLS`` as namespace to seconds.

        Raises:
            ValueError: on an entry that is not ``name=seconds`` with seconds > 0.
        """
        ttls: dict[str, float] = {}
        for item in filter(None, (p.strip() for p in self.cache_ttls.split(","))):
            name, sep, value = item.partition("=")
            try:
                seconds = float(value)
            except ValueError:
                seconds = 0.0
            if not sep or seconds <= 0:
                raise ValueError(f"CACHE_TTLS entry {item!r} is not name=seconds")
            ttls[name.strip()] = seconds
        return ttls


def _parse_limits(name: str, value: str) -> list[RateLimitItem]:
    if not value.strip():
        return []
    try:
        return parse_many(value)
    except ValueError as exc:
        raise ValueError(
            f"{name} is not in the limits notation ('100/second;600/minute'): {exc}"
        ) from None
