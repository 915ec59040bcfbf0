"""Server processes under test: one uvicorn worker each (or more, when asked), pinned to one CPU.

Each server is ``uvicorn --factory`` with uvloop, httptools, no access log, ``--log-level
warning`` and no reloader. With one worker the uvicorn process *is* the worker: its CPU time and
resident memory, read from ``/proc/{pid}/stat`` and ``/proc/{pid}/status``, are the worker's.
With several, the uvicorn process supervises its worker processes (its children, pinned with
it), and the CPU time is theirs and its own.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import httpx

_CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """Return process ``pid``'s user plus system CPU time so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces: fields are counted after its closing ")".
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLOCK_TICKS_PER_SECOND


def _children(pid: int) -> list[int]:
    """Return the ids of the running processes whose parent is ``pid``, ascending."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # it ended while being read
            continue
        if ppid == pid:
            found.append(int(entry.name))
    return sorted(found)


def pinned(cpu: int, command: list[str]) -> list[str]:
    """Return ``command`` run under ``taskset -c cpu`` (unchanged when taskset is missing)."""
    return ["taskset", "-c", str(cpu), *command] if shutil.which("taskset") else command


@dataclass(frozen=True)
class Server:
    """A running server.

    Attributes:
        name: what it serves, for messages.
        base_url: ``http://127.0.0.1:{port}``.
        pid: uvicorn's process id (``taskset`` execs): the worker's, with one worker.
        workers: how many worker processes it runs.
    """

    name: str
    base_url: str
    pid: int
    workers: int = 1

    def worker_pids(self) -> list[int]:
        """Return the worker processes' ids, ascending: ``[pid]`` with one worker.

        With several, uvicorn's children (multiprocessing's resource tracker excluded).
        """
        if self.workers == 1:
            return [self.pid]
        pids = []
        for child in _children(self.pid):
            try:
                with open(f"/proc/{child}/cmdline", "rb") as f:
                    if b"resource_tracker" not in f.read():
                        pids.append(child)
            except OSError:  # it ended while being read
                continue
        return pids

    def worker_cpu_seconds(self) -> dict[int, float]:
        """Return each worker's user plus system CPU time so far, in seconds, by process id."""
        return {pid: _cpu_seconds(pid) for pid in self.worker_pids()}

    def cpu_seconds(self) -> float:
        """Return the user plus system CPU time so far of uvicorn and its workers, in seconds."""
        pids = {self.pid, *self.worker_pids()}
        return sum(_cpu_seconds(pid) for pid in pids)

    def rss_bytes(self) -> int:
        """Return uvicorn's resident set size (``VmRSS``): the worker's with one worker, bytes."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for process {self.pid}")


@contextmanager
def serve(
    name: str,
    factory: str,
    env: dict[str, str],
    *,
    cpu: int,
    ready_path: str,
    workers: int = 1,
) -> Iterator[Server]:
    """Run ``uvicorn --factory factory`` pinned to ``cpu``; yield it once ``ready_path`` answers.

    With ``workers`` above 1, it is yielded once ``ready_path`` answers and that many worker
    processes run (one may still be starting: they share the listening socket, and the first
    one ready answers). The process is terminated (then killed after 10 seconds) on exit;
    uvicorn stops its workers.

    Raises:
        RuntimeError: it exited or did not answer (or start its workers) within 60 seconds.
    """
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with _running(name, pinned(cpu, command), env, port, ready_path, workers) as server:
        yield server


@contextmanager
def serve_service(
    name: str,
    env: dict[str, str],
    *,
    cpu: int,
    ready_path: str,
    workers: int = 1,
    output: IO[bytes] | None = None,
) -> Iterator[Server]:
    """Run ``content-service serve --no-migrate --workers workers`` pinned to ``cpu``.

    As in production: the command line's own uvicorn settings (uvloop, httptools, its
    keep-alive), a Prometheus folder shared by its workers. ``output`` takes its standard
    output and error (None: inherited). Yielded and stopped as :func:`serve` does.

    Raises:
        RuntimeError: it exited or did not answer (or start its workers) within 60 seconds.
    """
    port = free_port()
    command = [
        sys.executable, "-m", "service", "serve", "--no-migrate", "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    with _running(name, pinned(cpu, command), env, port, ready_path, workers, output) as server:
        yield server


@contextmanager
def _running(
    name: str,
    command: list[str],
    env: dict[str, str],
    port: int,
    ready_path: str,
    workers: int,
    output: IO[bytes] | None = None,
) -> Iterator[Server]:
    """Start ``command`` (listening on ``port``); yield it once ready; stop it on exit."""
    proc = subprocess.Popen(command, env=env, stdout=output, stderr=output)
    server = Server(name, f"http://127.0.0.1:{port}", proc.pid, workers)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                is_ready = httpx.get(server.base_url + ready_path).status_code < 500
                if is_ready and len(server.worker_pids()) >= workers:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} ({shlex.join(command)}) did not start")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
