"""Server processes under test: one uvicorn worker each, pinned to one CPU.

Each server is ``uvicorn --factory`` with uvloop, httptools, no access log, ``--log-level
warning`` and no reloader, so the uvicorn process *is* the worker: its CPU time and resident
memory, read from ``/proc/{pid}/stat`` and ``/proc/{pid}/status``, are the worker's.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

_CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpu: int, command: list[str]) -> list[str]:
    """Return ``command`` run under ``taskset -c cpu`` (unchanged when taskset is missing)."""
    return ["taskset", "-c", str(cpu), *command] if shutil.which("taskset") else command


@dataclass(frozen=True)
class Server:
    """A running server.

    Attributes:
        name: what it serves, for messages.
        base_url: ``http://127.0.0.1:{port}``.
        pid: the worker's process id (``taskset`` execs, so it is uvicorn's).
    """

    name: str
    base_url: str
    pid: int

    def cpu_seconds(self) -> float:
        """Return the worker's user plus system CPU time so far, in seconds."""
        with open(f"/proc/{self.pid}/stat") as f:
            # The command name may hold spaces: fields are counted after its closing ")".
            fields = f.read().rsplit(")", 1)[1].split()
        utime, stime = int(fields[11]), int(fields[12])
        return (utime + stime) / _CLOCK_TICKS_PER_SECOND

    def rss_bytes(self) -> int:
        """Return the worker's resident set size (``VmRSS``), in bytes."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for process {self.pid}")


@contextmanager
def serve(
    name: str, factory: str, env: dict[str, str], *, cpu: int, ready_path: str
) -> Iterator[Server]:
    """Run ``uvicorn --factory factory`` pinned to ``cpu``; yield it once ``ready_path`` answers.

    The process is terminated (then killed after 10 seconds) on exit.

    Raises:
        RuntimeError: it exited or did not answer within 60 seconds.
    """
    port = free_port()
    command = pinned(cpu, [
        sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
        "--port", str(port), "--workers", "1", "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ])  # fmt: skip
    proc = subprocess.Popen(command, env=env)
    server = Server(name, f"http://127.0.0.1:{port}", proc.pid)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(server.base_url + ready_path).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} ({factory}) did not start")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
