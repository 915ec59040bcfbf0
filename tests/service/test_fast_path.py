"""The fast path answers cache hits in the HTTP protocol exactly as uvicorn's task would.

On the run's PostgreSQL and Redis: two uvicorn servers of the same settings, in threads, over
real sockets; one with :class:`service.fast_path.FastPathProtocol` (as ``content-service
serve`` runs), one with uvicorn's own httptools protocol. Each question is asked of both, in
the same order, as raw HTTP/1.1 bytes; the answers must be the same bytes but for what differs
between any two answers (the date, a new request id, durations, seconds left).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from service.app import create_app
from service.fast_path import FastAnswer, FastPathProtocol
from tests.apps import AppOn, make_settings
from tests.faults.servers import free_port
from tests.servers import Servers, truncate

SLUGS = ("fast-a", "fast-b")
#: published, never read before its test
COLD = "fast-cold"
PATH = "/api/v1/articles/"
#: headers whose values differ between any two answers (a request id when none was sent)
VARYING = {b"date", b"server-timing", b"x-request-id"}
#: seconds left, which differ with each entry's TTL jitter
_SECONDS = re.compile(rb"(ttl|max-age)=\d+")


class CountingProtocol(FastPathProtocol):
    """The fast path, counting the answers it writes (one server uses it)."""

    written = 0

    def _write(self, cycle: RequestResponseCycle, answer: FastAnswer) -> None:
        type(self).written += 1
        super()._write(cycle, answer)


@dataclass
class Answer:
    status_line: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)

    def compared(self) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
        """Status line, headers (varying values and seconds left blanked), body."""
        headers = []
        for name, value in self.headers:
            if name in VARYING:
                value = b"-"
            headers.append((name, _SECONDS.sub(rb"\1=N", value)))
        return self.status_line, headers, self.body


@contextmanager
def serving(settings: Any, http: Any) -> Iterator[int]:
    """Run the app of ``settings`` under uvicorn with ``http`` in a thread; yield its port."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, http=http, log_level="warning",
        lifespan="on", access_log=False, proxy_headers=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def exchange(port: int, raw: bytes, answers: int = 1) -> tuple[list[Answer], bool]:
    """Send ``raw``; read ``answers`` answers; return them and whether the server then closed."""
    # The requests here have no bodies: each ends at its blank line.
    methods = [request.split(b" ", 1)[0] for request in raw.split(b"\r\n\r\n") if request]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        found: list[Answer] = []
        while len(found) < answers:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                assert chunk, f"closed after {len(found)} answers: {data!r}"
                data += chunk
            head, data = data.split(b"\r\n\r\n", 1)
            status_line, *lines = head.split(b"\r\n")
            headers = [tuple(line.split(b": ", 1)) for line in lines]
            answer = Answer(status_line, headers, b"")  # type: ignore[arg-type]
            length = int(answer.header(b"content-length") or 0)
            if methods[len(found)] == b"HEAD":
                length = 0
            while len(data) < length:
                chunk = sock.recv(65536)
                assert chunk, "closed within a body"
                data += chunk
            answer.body, data = data[:length], data[length:]
            found.append(answer)
        assert not data, f"more than {answers} answers: {data!r}"
        sock.settimeout(0.5)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
    return found, closed


def get(slug: str, *headers: str, version: str = "1.1", method: str = "GET") -> bytes:
    lines = [f"{method} {PATH}{slug} HTTP/{version}", "Host: test", *headers, "", ""]
    return "\r\n".join(lines).encode()


def until_near(port: int, slug: str) -> None:
    """Read ``slug`` until the near cache answers it (its doorkeeper admits a second read)."""
    for _ in range(50):
        (answer,), _ = exchange(port, get(slug))
        if b"detail=l1" in (answer.header(b"cache-status") or b""):
            return
        time.sleep(0.02)
    raise AssertionError(f"{slug} never answered from the near cache on port {port}")


def metric_lines(port: int, route: bytes) -> list[bytes]:
    """The ``http_requests_total`` samples of ``route`` in the server's ``/metrics``."""
    (answer,), _ = exchange(port, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
    return sorted(
        line
        for line in answer.body.splitlines()
        if line.startswith(b"http_requests_total{") and b'route="' + route + b'"' in line
    )


@pytest.fixture
async def two_servers(
    servers: Servers, app_on: AppOn, key_prefix: str
) -> AsyncIterator[tuple[int, int]]:
    await truncate(servers.database_url)
    async with app_on(servers.database_url, servers.redis_url) as api:
        await api.publish_articles(*SLUGS, COLD)
    # Each its own keys, so that both see the same history (a miss on each).
    fast_settings = make_settings(servers, f"{key_prefix}-fast")
    plain_settings = make_settings(servers, f"{key_prefix}-plain")
    CountingProtocol.written = 0
    with (
        serving(fast_settings, CountingProtocol) as fast,
        serving(plain_settings, "httptools") as plain,
    ):
        for port in (fast, plain):
            for slug in SLUGS:
                until_near(port, slug)
        yield fast, plain


def both(ports: tuple[int, int], raw: bytes, answers: int = 1) -> tuple[list[Answer], bool]:
    """Ask both servers; check the answers agree; return the fast path's."""
    fast, fast_closed = exchange(ports[0], raw, answers)
    plain, plain_closed = exchange(ports[1], raw, answers)
    assert [a.compared() for a in fast] == [a.compared() for a in plain], raw
    assert fast_closed == plain_closed, raw
    return fast, fast_closed


def answered_fast(
    ports: tuple[int, int], raw: bytes, answers: int = 1, *, near: bool = True
) -> list[Answer]:
    """Ask both; check the fast path wrote every answer, from the near cache or from Redis."""
    before = CountingProtocol.written
    found, _ = both(ports, raw, answers)
    assert CountingProtocol.written - before == answers, raw
    for answer in found:
        status = answer.header(b"cache-status") or b""
        assert status.startswith(b"content-service; hit;") and (b"detail=l1" in status) == near
    return found


async def test_near_hits_are_answered_fast_as_the_task_answers_them(
    two_servers: tuple[int, int],
) -> None:
    ports = two_servers
    (plain,) = answered_fast(ports, get("fast-a"))
    assert plain.status_line == b"HTTP/1.1 200 OK" and b'"fast-a"' in plain.body
    assert plain.header(b"x-request-id") and plain.header(b"server-timing")
    etag = plain.header(b"etag")
    assert etag is not None
    answered_fast(ports, get("fast-a", "Accept-Encoding: gzip"))
    answered_fast(ports, get("fast-a", "Accept-Encoding: br, gzip"))
    (not_modified,) = answered_fast(ports, get("fast-a", f"If-None-Match: {etag.decode()}"))
    assert not_modified.status_line == b"HTTP/1.1 304 Not Modified" and not not_modified.body
    (named,) = answered_fast(ports, get("fast-a", "X-Request-ID: trace-42"))
    assert named.header(b"x-request-id") == b"trace-42"
    assert named.headers[-1] == (b"x-request-id", b"trace-42")


async def test_a_hit_read_from_redis_is_answered_fast_and_a_miss_by_the_task(
    two_servers: tuple[int, int],
) -> None:
    ports = two_servers
    before = CountingProtocol.written
    (miss,) = both(ports, get(COLD))[0]
    assert miss.header(b"x-cache") == b"MISS" and CountingProtocol.written == before
    # The near cache keeps a key read twice: the second read is a hit from Redis.
    (redis_hit,) = answered_fast(ports, get(COLD, "X-Request-ID: cold-2"), near=False)
    assert redis_hit.header(b"x-cache") == b"HIT" and redis_hit.body == miss.body
    answered_fast(ports, get(COLD))
    # Pipelined: a miss (answered by its task) before a hit, and the order is kept.
    missing, hit = both(ports, get("no-such-article") + get(COLD), answers=2)[0]
    assert missing.status_line == b"HTTP/1.1 404 Not Found" and b'"fast-cold"' in hit.body


async def test_connections_close_and_pipelined_requests_keep_their_order(
    two_servers: tuple[int, int],
) -> None:
    ports = two_servers
    (closing,) = answered_fast(ports, get("fast-a", "Connection: close"))
    assert closing.header(b"connection") == b"close"
    assert both(ports, get("fast-b", "Connection: close"))[1], "the connection stayed open"
    (old,) = answered_fast(ports, get("fast-b", version="1.0"))
    assert old.status_line.startswith(b"HTTP/1.1 200") and old.header(b"connection") == b"close"
    a, b = answered_fast(ports, get("fast-a") + get("fast-b"), answers=2)
    assert b'"fast-a"' in a.body and b'"fast-b"' in b.body
    # Behind a request that its task answers (a HEAD), a hit waits its turn.
    before = CountingProtocol.written
    head, hit = both(ports, get("fast-b", method="HEAD") + get("fast-a"), answers=2)[0]
    assert head.status_line == b"HTTP/1.1 200 OK" and not head.body
    assert b'"fast-a"' in hit.body
    assert CountingProtocol.written - before == 1


async def test_other_requests_go_to_the_task_and_every_answer_is_counted(
    two_servers: tuple[int, int],
) -> None:
    ports = two_servers
    before = CountingProtocol.written
    for raw in (
        get("fast-a", method="HEAD"),
        get("fast-a?fields=x"),
        get("no-such-article"),
        get("fast%00a"),
        get("fast-a/comments"),
        b"POST /api/v1/articles/fast-a HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n",
    ):
        both(ports, raw)
    assert CountingProtocol.written == before
    route = b"/api/v1/articles/{slug}"
    assert metric_lines(ports[0], route) == metric_lines(ports[1], route)
    assert metric_lines(ports[0], route), "no answer of the route counted"
