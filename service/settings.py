"""The service's configuration, read from the environment (and a ``.env`` file).

Every variable is documented in the README's configuration table, which :func:`configuration_table`
generates (``python -m service.settings``).
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal

from limits import RateLimitItem, parse_many
from pydantic import Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

Role = Literal["editor", "admin"]


class Settings(BaseSettings):
    """The service's settings; unknown environment variables are ignored."""

    # Inputs are kept out of error messages: API_TOKENS and STATS_TOKEN are secrets.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    database_url: str | None = Field(
        None,
        description="`postgresql+asyncpg://user:pass@host:port/db`",
    )
    redis_url: str | None = Field(
        None,
        description=(
            "`redis://`, `rediss://` or `unix://` URL; with `REDIS_MODE=cluster`, one or more "
            "seed nodes as whole URLs, comma-separated (the other nodes are discovered)"
        ),
    )
    redis_cluster_slot_groups: int = Field(
        16,
        ge=1,
        le=1024,
        description=(
            "with `REDIS_MODE=cluster`: how many hash-tagged slot groups the entries are spread "
            "over; more spreads them more evenly over the masters, and costs each invalidation "
            "more keys (one record per tag per group)"
        ),
    )
    redis_replica_ack_timeout_ms: int = Field(
        500,
        ge=1,
        description=(
            "with `REDIS_MODE=cluster`: how long an invalidation waits for a replica of each "
            "master to acknowledge it (`WAIT`) before it counts as failed and stays in the outbox"
        ),
    )
    redis_mode: Literal["standalone", "cluster", "sentinel"] = Field(
        "standalone",
        description=(
            "`standalone`: one server at `REDIS_URL`; `cluster`: a Redis Cluster whose seed nodes "
            "`REDIS_URL` lists (see docs/cluster.md); `sentinel`: the master that "
            "`REDIS_SENTINELS` name (no `REDIS_URL`; see docs/sentinel.md)"
        ),
    )
    redis_sentinels: str = Field(
        "",
        description=(
            "`sentinel` mode: the sentinels as `host:port` pairs, comma-separated "
            "(`10.0.0.1:26379,10.0.0.2:26379,[::1]:26379`)"
        ),
    )
    redis_sentinel_master: str = Field(
        "",
        description="`sentinel` mode: the master's name in the sentinels' configuration",
    )
    redis_sentinel_password: str | None = Field(
        None,
        description="`sentinel` mode: the sentinels' password (`requirepass` of the sentinels)",
    )
    redis_password: str | None = Field(
        None,
        description=(
            "`sentinel` mode: the password of the master and replicas (the other modes take it "
            "from the URL)"
        ),
    )
    api_tokens: str = Field(
        "",
        description="`token:role` pairs, comma-separated; roles `editor` and `admin`",
    )
    stats_token: str | None = Field(
        None,
        description=(
            "when set, `/stats` and `/metrics` need `Authorization: Bearer <it>` (or an admin "
            "token)"
        ),
    )
    data_dir: Path = Field(
        Path(".data"),
        description="where the embedded servers keep their files",
    )

    cache_prefix: str = Field(
        "cs",
        description="first segment of every Redis key; one per deployment sharing a Redis",
    )
    cache_ttl_seconds: float = Field(
        300.0,
        gt=0,
        description="default entry TTL, seconds",
    )
    cache_ttls: str = Field(
        "",
        description="per-namespace TTLs, seconds: `articles=60,article=600`",
    )
    cache_jitter_ratio: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="each stored TTL is shortened by a random fraction up to this",
    )
    http_max_age_seconds: int = Field(
        0,
        ge=0,
        description=(
            "cap of `Cache-Control: max-age` sent to clients (0: clients revalidate with "
            "`If-None-Match`)"
        ),
    )
    cache_stale_while_revalidate_seconds: float = Field(
        30.0,
        ge=0,
        description="after the TTL, answer `STALE` at once while one refresh runs",
    )
    cache_stale_if_error_seconds: float = Field(
        300.0,
        ge=0,
        description="after the TTL, answer `STALE` when PostgreSQL fails",
    )
    cache_early_refresh_beta: float = Field(
        1.0,
        ge=0,
        description="probabilistic early refresh (XFetch); 0 turns it off",
    )
    cache_negative_ttl_seconds: float = Field(
        5.0,
        gt=0,
        description="how long a 404 is cached",
    )
    cache_herd_wait_ms: int = Field(
        1000,
        ge=0,
        description=(
            "how long a miss waits for another process's load of the same key, milliseconds"
        ),
    )
    cache_load_lease_ms: int = Field(
        5000,
        gt=0,
        description=(
            "lifetime of a load lease, milliseconds (a dead loader delays others at most so long)"
        ),
    )
    cache_compress_min_bytes: int = Field(
        1024,
        ge=0,
        description=(
            "answers of at least this many bytes are also stored gzip-compressed (and brotli, with "
            "the `brotli` extra: `pip install -e '.[brotli]'`), once, on the miss; 0 turns it off"
        ),
    )
    cache_gzip_level: int = Field(
        1,
        ge=1,
        le=9,
        description=(
            "deflate level of the stored gzip bytes (1 fastest, 9 smallest; ISA-L, used when "
            "installed as it is by default, stops at 3)"
        ),
    )
    cache_brotli_quality: int = Field(
        1,
        ge=0,
        le=11,
        description="quality of the stored brotli bytes (0 fastest, 11 smallest)",
    )
    cache_l1_max_bytes: int = Field(
        32 * 1024 * 1024,
        ge=0,
        description=(
            "bytes of entries each worker keeps in its in-process near cache (L1) in front of "
            "Redis, counted as bodies, ETags and keys plus a fixed overhead per entry; 0 turns it "
            "off (see docs/near-cache.md)"
        ),
        json_schema_extra={"shown_default": "`33554432` (32 MiB)"},
    )
    cache_l1_lease_ms: int = Field(
        500,
        ge=50,
        le=10_000,
        description=(
            "each near-cache holder's lease in Redis, milliseconds: a worker that stops hearing "
            "invalidations (frozen, cut off) delays writes by at most this long"
        ),
    )
    cache_l1_lease_check: bool = Field(
        True,
        description=(
            "false answers from the near cache without a valid lease and lets writes return "
            "without waiting for the holders: the best effort of other near caches, which can "
            "answer what a write replaced for a while after it; for comparison only"
        ),
    )
    stats_flush_interval_seconds: float = Field(
        1.0,
        gt=0,
        description=(
            "how often a process adds its counters and rate buckets to Redis, and reports its pools"
            " (its heartbeat in `/stats`'s worker lists)"
        ),
    )
    cache_hot_keys_sample_rate: float = Field(
        0.05,
        ge=0,
        le=1,
        description=(
            "fraction of reads counted for hot-key tracking (sent with the statistics flush); 0 "
            "turns it off"
        ),
    )
    cache_hot_keys_per_namespace: int = Field(
        1000,
        ge=1,
        description="identities tracked per namespace, per flush and per minute bucket",
    )
    warm_batch_size: int = Field(
        100,
        ge=1,
        le=1000,
        description="keys per warming batch (articles: one statement per batch)",
    )
    warm_concurrency: int = Field(
        2,
        ge=1,
        description="warming batches at a time, each on at most one database connection",
    )
    warm_default_limit: int = Field(
        1000,
        ge=1,
        description="keys of a warming job that names no `limit`",
    )
    warm_loop_share: float = Field(
        0.2,
        gt=0,
        le=1,
        description=(
            "largest share of a worker's event loop a warming job takes while requests are waiting "
            "for it; alone, a job runs at full speed"
        ),
    )
    warm_lease_seconds: float = Field(
        10.0,
        gt=0,
        description="a job whose runner stopped renewing this long is recorded `failed`",
    )
    warm_on_startup: bool = Field(
        False,
        description="start a warming job (hot keys, else the newest content) when a worker starts",
    )
    warm_after_purge: bool = Field(
        False,
        description="start one after `POST /admin/cache/purge` of `all`",
    )
    warm_after_import: bool = Field(
        False,
        description="warm the newest content after `import` and `seed`",
    )
    warm_refresh_top_n: int = Field(
        0,
        ge=0,
        le=100_000,
        description=(
            "every `WARM_REFRESH_INTERVAL_SECONDS`, reload the N hottest keys that would expire "
            "within two intervals; 0 turns it off"
        ),
    )
    warm_refresh_interval_seconds: float = Field(
        60.0,
        gt=0,
        description="time between two periodic refreshes, seconds",
    )
    instance_name: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        description=(
            "this instance's name in `/stats`'s worker lists (`db_pool.workers`, `redis.workers`); "
            "each worker is listed as instance and pid"
        ),
        json_schema_extra={"shown_default": "the host name"},
    )
    outbox_sample_interval_seconds: float = Field(
        5.0,
        gt=0,
        description=(
            "how often each worker samples the outbox backlog and its lag for `/stats` (a poll runs"
            " no SQL)"
        ),
    )
    outbox_poll_interval_seconds: float = Field(
        1.0,
        gt=0,
        description="how often the outbox is drained when no `NOTIFY` arrives: the longest the"
        " rows of the service's own writes (which invalidate themselves and do not notify) wait",
    )
    outbox_retention_seconds: float = Field(
        60.0,
        ge=0,
        description=(
            "`sentinel` mode: applied outbox rows are kept this long and applied again to a newly "
            "promoted master; more than the replication lag bound plus the failover's detection "
            '(see docs/sentinel.md, "Lost invalidations")'
        ),
    )
    breaker_failure_threshold: int = Field(
        3,
        ge=1,
        description="consecutive failures that open the Redis or the database breaker",
    )
    breaker_probe_interval_seconds: float = Field(
        0.5,
        gt=0,
        description="how often an open breaker probes its server",
    )

    log_format: Literal["json", "text"] = Field(
        "json",
        description=(
            "`json`: one JSON object a line (`time`, `level`, `logger`, `message`, `request_id`, "
            "extra fields); `text`: plain lines"
        ),
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info",
        description=(
            "lowest level logged (`debug`, `info`, `warning`, `error`, `critical`), uvicorn's "
            "loggers too"
        ),
    )
    access_log: bool = Field(
        False,
        description=(
            "log one line per answer: `method`, `route` (template), `path`, `status`, "
            "`duration_ms`, `request_id`, `client`"
        ),
    )
    shutdown_drain_seconds: float = Field(
        0.0,
        ge=0,
        description=(
            "after SIGTERM, `/health/ready` answers 503 `draining` this long before the server "
            "stops accepting connections, seconds"
        ),
    )
    migrate_on_start: bool = Field(
        True,
        description=(
            "`serve` upgrades the schema before serving; `false` (or `serve --no-migrate`) leaves"
            " it to `content-service migrate`, run once per release (e.g. a Kubernetes Job)"
        ),
    )

    max_body_bytes: int = Field(
        1_048_576,
        ge=1,
        description=(
            "largest request body accepted, bytes; a larger one is a 413 (request bodies are also "
            "bounded to 32 levels of nesting and strings of 524,288 characters: 400)"
        ),
    )
    max_page_depth: int = Field(
        10_000,
        ge=1,
        description=(
            "deepest offset page, in rows (`page * per_page`); a deeper `page=` is a 400 whose"
            ' detail points to `cursor=` (see docs/operations.md, "Pages")'
        ),
    )
    rate_limit_reads: str = Field(
        "",
        description=(
            "GET/HEAD limit per client address, in the `limits` notation, several separated by `;`"
            " (empty: off);"
            ' recommended: `100/second;3000/minute` (see docs/operations.md, "Limits")'
        ),
    )
    rate_limit_writes: str = Field(
        "",
        description=(
            "limit of the other methods per API token (per client address without a known token),"
            " as `RATE_LIMIT_READS` (empty: off); recommended: `10/second;300/minute`"
        ),
    )
    trusted_proxies: str = Field(
        "",
        description=(
            "comma-separated addresses or CIDRs (e.g. `10.0.0.0/8,127.0.0.1`) whose "
            "`X-Forwarded-For` gives the client address; empty: the socket peer is the client"
        ),
    )

    redis_max_connections: int = Field(
        64,
        ge=1,
        description="client pool size per process",
    )
    redis_pool_timeout_seconds: float = Field(
        0.5,
        gt=0,
        description="wait for a free Redis connection before failing open",
    )
    redis_socket_timeout_seconds: float = Field(
        0.25,
        gt=0,
        description="wait for a Redis answer before failing open",
    )
    redis_connect_timeout_seconds: float = Field(
        0.25,
        gt=0,
        description="wait for a Redis connection to open",
    )
    redis_sentinel_check_interval_seconds: float = Field(
        1.0,
        gt=0,
        description=(
            "`sentinel` mode: how often each worker asks the sentinels which server is the master "
            "(a backstop: their `+switch-master` announcements show a failover at once)"
        ),
    )

    db_pool_size: int = Field(
        10,
        ge=1,
        description=(
            "SQLAlchemy pool per process; cache-miss loads use at most `DB_POOL_SIZE` connections "
            "(they wait up to the pool timeout rather than open overflow ones)"
        ),
    )
    db_max_overflow: int = Field(
        10,
        ge=0,
        description="connections beyond the pool per process; they serve writes",
    )
    db_pool_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="wait for a free database connection before answering 503",
    )
    db_connect_timeout_seconds: float = Field(
        2.0,
        gt=0,
        description="wait for a new database connection to open",
    )
    db_statement_timeout_ms: int = Field(
        10_000,
        ge=0,
        description="PostgreSQL `statement_timeout`, milliseconds",
    )
    database_replica_urls: str = Field(
        "",
        description=(
            "PostgreSQL streaming replicas that cache-miss loads may read from: "
            "`postgresql+asyncpg://` URLs, comma-separated (empty: none); writes and whatever must"
            " see a just-acknowledged write use `DATABASE_URL` (see docs/replicas.md)"
        ),
    )
    database_replica_max_lag_seconds: float = Field(
        5.0,
        gt=0,
        description=(
            "a replica whose replay lags the primary by more than this, as last sampled, is "
            "skipped until it catches up, seconds"
        ),
    )
    database_replica_pool_size: int = Field(
        5,
        ge=1,
        description=(
            "connections per replica per process (timeouts and server settings as the primary's)"
        ),
    )
    database_replica_sample_interval_seconds: float = Field(
        1.0,
        gt=0,
        description="how often each process samples the primary's WAL position and each replica",
    )

    @field_validator("database_url", "redis_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("log_format", "log_level", "redis_mode", mode="before")
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
        if self.redis_mode == "sentinel":
            if self.redis_url is not None:
                raise ValueError(
                    "REDIS_MODE=sentinel finds the master through REDIS_SENTINELS: unset REDIS_URL"
                )
            if self.database_url is None:
                raise ValueError(
                    "REDIS_MODE=sentinel needs DATABASE_URL (the embedded servers are standalone)"
                )
            if not self.redis_sentinel_master.strip():
                raise ValueError("REDIS_MODE=sentinel needs REDIS_SENTINEL_MASTER")
            if not self.sentinel_addresses():
                raise ValueError("REDIS_MODE=sentinel needs REDIS_SENTINELS (host:port, ...)")
        elif (self.database_url is None) != (self.redis_url is None):
            raise ValueError("set both DATABASE_URL and REDIS_URL, or neither")
        if self.redis_mode == "cluster":
            self.redis_cluster_urls()
        self.tokens()
        self.namespace_ttls()
        self.read_limits()
        self.write_limits()
        self.proxy_networks()
        if self.replica_urls() and self.database_url is None:
            raise ValueError("DATABASE_REPLICA_URLS needs DATABASE_URL")
        return self

    def replica_urls(self) -> list[str]:
        """Return ``DATABASE_REPLICA_URLS`` as a list of URLs, in order; empty for none.

        Raises:
            ValueError: an item is not a ``postgresql+asyncpg://`` URL with a host, or two
                items are the same.
        """
        urls: list[str] = []
        for item in filter(None, (p.strip() for p in self.database_replica_urls.split(","))):
            try:
                url = make_url(item)
            except ArgumentError:
                raise ValueError("DATABASE_REPLICA_URLS holds an item that is not a URL") from None
            if url.drivername != "postgresql+asyncpg" or not (url.host or url.query.get("host")):
                raise ValueError(
                    "DATABASE_REPLICA_URLS holds an item that is not a postgresql+asyncpg:// URL"
                    " with a host"
                )
            if item in urls:
                raise ValueError("DATABASE_REPLICA_URLS names a replica twice")
            urls.append(item)
        return urls

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

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """Return ``REDIS_SENTINELS`` as (host, port) pairs, in order; IPv6 hosts unbracketed.

        Raises:
            ValueError: an item is not ``host:port`` with a port from 1 to 65535.
        """
        addresses: list[tuple[str, int]] = []
        for item in filter(None, (p.strip() for p in self.redis_sentinels.split(","))):
            host, sep, port = item.rpartition(":")
            host = host.removeprefix("[").removesuffix("]")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"REDIS_SENTINELS item {item!r} is not host:port")
            addresses.append((host, int(port)))
        return addresses

    def redis_cluster_urls(self) -> list[str]:
        """Return the seed nodes of ``REDIS_URL`` in cluster mode, one whole URL each.

        Raises:
            ValueError: ``REDIS_URL`` is unset, or an item is not a ``redis://`` or
                ``rediss://`` URL with a host.
        """
        if not self.redis_url:
            raise ValueError("REDIS_MODE=cluster needs REDIS_URL (the seed nodes)")
        urls = [u.strip() for u in self.redis_url.split(",") if u.strip()]
        for url in urls:
            scheme, sep, rest = url.partition("://")
            if not sep or scheme not in ("redis", "rediss") or not rest.split("/")[0]:
                raise ValueError(
                    "REDIS_URL in cluster mode lists redis:// or rediss:// URLs, comma-separated"
                )
        return urls

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


def _shown_default(field: FieldInfo) -> str:
    """Return a field's default as the README shows it (``shown_default`` overrides it)."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    shown = extra.get("shown_default")
    if isinstance(shown, str):
        return shown
    default = field.default
    if default is None:
        return "unset"
    if default == "":
        return "empty"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float):
        return f"`{default:g}`"
    return f"`{default}`"


def configuration_table() -> str:
    """Return the README's configuration table: Markdown, one row per setting, in order.

    Each row is the variable's name, its default (from the field's default; a field whose
    default is computed says how in ``json_schema_extra["shown_default"]``) and the field's
    description. ``python -m service.settings`` prints it; a test keeps the README's copy equal
    to it.
    """
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `{name.upper()}` | {_shown_default(field)} | {field.description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(configuration_table(), end="")
