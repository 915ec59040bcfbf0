"""A TCP proxy that a test can cut: the network between one server process and Redis.

The proxy listens on a free port of 127.0.0.1 and forwards every connection to the target,
both ways, from a thread of its own (so that it keeps forwarding while the test's event loop
is busy, or blocked in a fixture). :meth:`TcpProxy.cut` closes every connection and the
listening socket: what the client had sent and not yet got an answer to is lost, and new
connections are refused, as when a host's link to Redis goes down. :meth:`TcpProxy.stall`
stops forwarding instead, both ways, and keeps every connection open (new ones are accepted,
and not forwarded either): a partition that nothing reports, where requests get no answer.
:meth:`TcpProxy.restore` ends either: it listens again on the same port, or forwards again
what waited.

With ``subscription_delay_seconds``, what Redis sends on a connection that subscribed to a
channel (the messages of its subscriptions) reaches the client that much later: a subscriber
that hears messages late (a far or congested link, a busy subscriber), while its commands on
other connections are answered at once.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit, urlunsplit

from tests.faults.servers import free_port

#: bytes read from one side at a time
CHUNK_BYTES = 65536


@dataclass
class _Pair:
    """A client's connection and the proxy's connection to the target, with bytes not yet sent."""

    client: socket.socket
    upstream: socket.socket
    pending: dict[socket.socket, bytearray] = field(default_factory=dict)
    subscribed: bool = False  # the client sent a SUBSCRIBE on it

    def other(self, sock: socket.socket) -> socket.socket:
        return self.upstream if sock is self.client else self.client


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target`` until cut; a context manager.

    Thread-safe: :meth:`cut` and :meth:`restore` may be called from any thread; the forwarding
    runs in the proxy's own thread. :attr:`accepted` counts the connections taken so far.
    """

    def __init__(
        self, target: tuple[str, int] | str, subscription_delay_seconds: float = 0.0
    ) -> None:
        self.target = target  # (host, port), or the path of a Unix socket
        self.subscription_delay_seconds = subscription_delay_seconds
        #: bytes from the target held back until their time: (due, client socket, bytes)
        self._delayed: deque[tuple[float, socket.socket, bytes]] = deque()
        self.port = free_port()
        self.accepted = 0
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._pairs: dict[socket.socket, _Pair] = {}
        self._commands: list[str] = []
        self._acks: list[threading.Event] = []
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._stopping = False
        self._stalled = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)

    @classmethod
    def for_redis(cls, redis_url: str, subscription_delay_seconds: float = 0.0) -> TcpProxy:
        """Return a proxy to the Redis of ``redis_url`` (``redis://host:port/db`` or
        ``unix:///path?db=n``)."""
        parts = urlsplit(redis_url)
        if parts.scheme == "unix":
            return cls(parts.path, subscription_delay_seconds)
        return cls((parts.hostname or "127.0.0.1", parts.port or 6379), subscription_delay_seconds)

    def url_of(self, url: str) -> str:
        """Return the ``redis://`` URL of ``url``'s Redis through the proxy (user and db kept)."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        if parts.scheme == "unix":
            db = parse_qs(parts.query).get("db", ["0"])[0]
            return urlunsplit(("redis", netloc, f"/{db}", "", ""))
        return urlunsplit(parts._replace(netloc=netloc))

    def __enter__(self) -> TcpProxy:
        self._listen()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._command("stop")
        self._done.wait(5)
        self._thread.join(5)
        self._wake_read.close()
        self._wake_write.close()

    def cut(self) -> None:
        """Close every forwarded connection and stop listening (new connections are refused).

        Returns once the proxy's thread has done it.
        """
        self._command("cut")

    def stall(self) -> None:
        """Stop forwarding, both ways, keeping the connections; returns once it has."""
        self._command("stall")

    def restore(self) -> None:
        """Listen on the same port again, or forward again; returns once it does."""
        self._command("restore")

    def _command(self, command: str) -> None:
        done = threading.Event()
        with self._lock:
            self._commands.append(command)
            self._acks.append(done)
        self._wake_write.send(b"x")
        if not done.wait(5):
            raise TimeoutError(f"the proxy did not {command} within 5 s")

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ)
        with self._lock:
            self._listener = listener

    def _close_all(self) -> None:
        self._delayed.clear()
        for sock in list(self._pairs):
            self._drop(sock)
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            self._selector.unregister(listener)
            listener.close()

    def _run(self) -> None:
        try:
            while not self._stopping:
                timeout = 1.0
                if self._delayed and not self._stalled:
                    timeout = max(0.0, self._delayed[0][0] - time.monotonic())
                for key, events in self._selector.select(timeout=timeout):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._wake_read:
                        self._handle_commands()
                    elif sock is self._listener:
                        self._accept(sock)
                    elif sock in self._pairs:
                        if events & selectors.EVENT_READ:
                            self._forward(sock)
                        if sock in self._pairs and events & selectors.EVENT_WRITE:
                            self._flush(sock)
                self._release_delayed()
        finally:
            self._close_all()
            self._selector.close()
            self._done.set()

    def _handle_commands(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_read.recv(4096)
        with self._lock:
            commands, self._commands = self._commands, []
            acks, self._acks = self._acks, []
        for command in commands:
            if command in ("cut", "stop"):
                self._close_all()
                self._stopping = command == "stop"
            elif command == "stall" and not self._stalled:
                self._stalled = True
                for sock in self._pairs:
                    self._selector.unregister(sock)
            elif command == "restore":
                if self._listener is None:
                    self._listen()
                if self._stalled:
                    self._stalled = False
                    for sock, pair in self._pairs.items():
                        self._selector.register(sock, selectors.EVENT_READ)
                        if pair.pending[sock]:
                            self._flush(sock)
        for ack in acks:
            ack.set()

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except BlockingIOError:
            return
        try:
            if isinstance(self.target, str):
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                upstream.settimeout(2)
                upstream.connect(self.target)
            else:
                upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            client.close()
            return
        self.accepted += 1
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if upstream.family != socket.AF_UNIX:
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for sock in (client, upstream):
            sock.setblocking(False)
        pair = _Pair(client, upstream)
        for sock in (client, upstream):
            pair.pending[sock] = bytearray()
            self._pairs[sock] = pair
            if not self._stalled:
                self._selector.register(sock, selectors.EVENT_READ)

    def _forward(self, sock: socket.socket) -> None:
        pair = self._pairs[sock]
        try:
            data = sock.recv(CHUNK_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        destination = pair.other(sock)
        if sock is pair.client and b"subscribe" in data.lower():
            pair.subscribed = True
        delay = self.subscription_delay_seconds
        if delay and pair.subscribed and sock is pair.upstream:
            self._delayed.append((time.monotonic() + delay, destination, data))
            return
        pair.pending[destination] += data
        self._flush(destination)

    def _release_delayed(self) -> None:
        """Send on the bytes from the target whose delay is over (in the order they came)."""
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now and not self._stalled:
            _, destination, data = self._delayed.popleft()
            pair = self._pairs.get(destination)
            if pair is not None:  # not dropped meanwhile
                pair.pending[destination] += data
                self._flush(destination)

    def _flush(self, sock: socket.socket) -> None:
        pair = self._pairs[sock]
        pending = pair.pending[sock]
        if self._stalled:
            return
        try:
            sent = sock.send(pending) if pending else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(sock)
            return
        del pending[:sent]
        self._selector.modify(
            sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0)
        )

    def _drop(self, sock: socket.socket) -> None:
        """Close both connections of ``sock``'s pair."""
        pair = self._pairs.get(sock)
        if pair is None:
            return
        for each in (pair.client, pair.upstream):
            self._pairs.pop(each, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(each)
            each.close()
