"""Which worker process holds the server side of a client's TCP connection (Linux ``/proc``).

The workers of one ``serve`` instance accept connections from one shared listening socket, so
a client cannot tell which worker answers it. The kernel can: ``/proc/net/tcp`` names the
socket (its inode) whose local port is the server's and remote port the client's, and the
worker that accepted it holds a file descriptor linking to ``socket:[inode]``. The tests read
both once per new connection, so that every answer is attributed to the worker that gave it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

#: the kernel's tables of TCP sockets (IPv4, IPv6) of this network namespace
TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def socket_inode(server_port: int, client_port: int) -> str | None:
    """Return the inode of the server's socket of the connection ``client_port`` -> ``server_port``.

    Returns:
        The inode (decimal, as ``/proc`` writes it), or None when no such socket is open.
    """
    for table in TCP_TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (
                int(local.rsplit(":", 1)[1], 16) == server_port
                and int(remote.rsplit(":", 1)[1], 16) == client_port
            ):
                return fields[9]
    return None


def holder_of(inode: str, pids: Iterable[int]) -> int | None:
    """Return which of ``pids`` has a file descriptor on socket ``inode``, or None."""
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # it exited
            continue
        for fd in descriptors:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:  # closed meanwhile
                continue
    return None


def worker_of(server_port: int, client_port: int, pids: Iterable[int]) -> int | None:
    """Return the pid among ``pids`` that serves the connection from ``client_port``, or None."""
    inode = socket_inode(server_port, client_port)
    return None if inode is None else holder_of(inode, pids)
