"""A Sentinel group for tests: a master, a replica and three sentinels, on free ports.

Debian's ``redis-server`` and ``redis-sentinel`` binaries (``apt-get install redis-sentinel``);
each process is started here and stopped by its PID. The sentinels declare the master down
after :data:`DOWN_AFTER_MS` milliseconds, so that a failover completes in a few seconds.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis

from tests.faults.servers import free_port, stop_process, wait_for_port

MASTER_NAME = "content"
#: The sentinels' ``down-after-milliseconds``: how long a master may be silent.
DOWN_AFTER_MS = 1000
#: The sentinels' ``failover-timeout``, milliseconds.
FAILOVER_TIMEOUT_MS = 5000
#: How many sentinels must agree that the master is down.
QUORUM = 2
SENTINELS = 3


def missing_binaries() -> list[str]:
    """Return the names of the binaries the group needs that are not on PATH."""
    return [name for name in ("redis-server", "redis-sentinel") if shutil.which(name) is None]


@dataclass
class Node:
    """One process of the group."""

    role: str  # what it was started as: master, replica or sentinel
    port: int
    process: subprocess.Popen[bytes] | None = None

    def client(self) -> Redis:
        """A synchronous client of this node (the caller closes it)."""
        return Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL: the node stops at once, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s (see ``stop_process``)."""
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process)


class SentinelGroup:
    """A master, a replica and three sentinels in a temporary folder (see the module)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cs-sentinel-"))
        self.master = Node("master", free_port())
        self.replica = Node("replica", free_port())
        self.sentinels = [Node("sentinel", free_port()) for _ in range(SENTINELS)]

    @property
    def nodes(self) -> list[Node]:
        return [self.master, self.replica, *self.sentinels]

    @property
    def sentinel_addresses(self) -> str:
        """``REDIS_SENTINELS`` of the group."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def start(self) -> None:
        """Start every process and wait until the sentinels know the replica and each other.

        Raises:
            TimeoutError: the group was not ready within 30 s.
        """
        self._start_server(self.master)
        self._start_server(self.replica, "--replicaof", "127.0.0.1", str(self.master.port))
        for sentinel in self.sentinels:
            self._start_sentinel(sentinel)
        self._wait_until_ready(30.0)

    def stop(self) -> None:
        """Stop every process still running, and remove the folder."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, characters: int = 6000) -> str:
        """The end of each process's log, for a failing test's output."""
        parts = []
        for log in sorted(self.root.glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-characters:]}")
        return "\n".join(parts)

    def _start_server(self, node: Node, *extra: str) -> None:
        node.process = subprocess.Popen(
            ["redis-server", "--port", str(node.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.root),
             "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
             "--logfile", str(self.root / f"{node.role}-{node.port}.log"), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(node.port)

    def _start_sentinel(self, node: Node) -> None:
        config = self.root / f"sentinel-{node.port}.conf"
        config.write_text(
            f"port {node.port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.root}\n"
            f"logfile {self.root / f'sentinel-{node.port}.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        node.process = subprocess.Popen(
            ["redis-sentinel", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(node.port)

    def _wait_until_ready(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self._is_ready():
                return
            time.sleep(0.1)
        raise TimeoutError(f"the sentinel group was not ready:\n{self.log_tail()}")

    def _is_ready(self) -> bool:
        with self.replica.client() as replica:
            if replica.info("replication").get("master_link_status") != "up":
                return False
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.sentinel_master(MASTER_NAME)
            if state["num-slaves"] < 1 or state["num-other-sentinels"] < SENTINELS - 1:
                return False
        return True

    def master_port(self) -> int:
        """The port of the node that the first sentinel answering names the master."""
        for sentinel in self.sentinels:
            if sentinel.process is None or sentinel.process.poll() is not None:
                continue
            with sentinel.client() as client:
                _, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            return int(port)
        raise RuntimeError("no sentinel runs")

    def node_at(self, port: int) -> Node:
        """The master or replica process listening on ``port``."""
        return next(n for n in (self.master, self.replica) if n.port == port)

    def failover(self) -> None:
        """Ask a sentinel for a failover now (``SENTINEL FAILOVER``), without agreement."""
        with self.sentinels[0].client() as client:
            client.sentinel_failover(MASTER_NAME)

    def wait_for_master(self, port: int, timeout_seconds: float = 30.0) -> float:
        """Wait until every sentinel names the node on ``port`` master and it answers as one.

        Returns:
            The seconds it took.

        Raises:
            TimeoutError: not within ``timeout_seconds``.
        """
        started = time.monotonic()
        while time.monotonic() - started < timeout_seconds:
            named = set()
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    named.add(int(client.sentinel_get_master_addr_by_name(MASTER_NAME)[1]))
            if named == {port}:
                with self.node_at(port).client() as node:
                    if node.info("replication")["role"] == "master":
                        return time.monotonic() - started
            time.sleep(0.05)
        raise TimeoutError(f"port {port} did not become the master:\n{self.log_tail()}")
