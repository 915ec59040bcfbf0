"""The fast path answers cache hits in the HTTP protocol exactly as uvicorn's task would.

On the run's PostgreSQL and Redis: two uvicorn servers of the same settings, in threads, over
real sockets; one with :class:`service.fast_path.FastPathProtocol` (as ``content-service
serve`` runs), one with uvicorn's own httptools protocol. Each question is asked of both, in
the same order, as raw HTTP/1.1 bytes; the answers must be the same bytes but for what differs
between any two answers (the date, a new request id, durations, seconds left).
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from cache import AutoPipeline
from service.app import ContentApp, create_app
from service.fast_path import FastPathProtocol
from service.responses import FastAnswer
from tests.apps import AppOn, app_with_articles, make_settings, uvicorn_thread
from tests.servers import Servers

SLUGS = ("fast-a", "fast-b")
#: hits pipelined in one write behind a request that its task answers
PIPELINED = 400
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


class KeptRecords(logging.Handler):
    """Keeps the records it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


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


@dataclass(frozen=True)
class Served:
    port: int
    app: ContentApp


@contextmanager
def serving(settings: Any, http: Any) -> Iterator[Served]:
    """Run the app of ``settings`` under uvicorn with ``http`` in a thread while it lasts."""
    app = create_app(settings)
    assert isinstance(app, ContentApp)
    with uvicorn_thread(app, http=http, access_log=False, proxy_headers=False) as port:
        yield Served(port, app)


def exchange(
    port: int, raw: bytes, answers: int = 1, *, closes: bool | None = None
) -> list[Answer]:
    """Send ``raw``; read ``answers`` answers and return them.

    With ``closes``, check that the server then closes the connection (True) or keeps it.
    """
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
            headers = []
            for line in lines:
                name, _, value = line.partition(b": ")
                headers.append((name, value))
            answer = Answer(status_line, headers, b"")
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
        if closes is not None:
            sock.settimeout(0.5)
            try:
                closed = sock.recv(1) == b""
            except TimeoutError:
                closed = False
            assert closed is closes, raw
    return found


def get(slug: str, *headers: str, version: str = "1.1", method: str = "GET") -> bytes:
    lines = [f"{method} {PATH}{slug} HTTP/{version}", "Host: test", *headers, "", ""]
    return "\r\n".join(lines).encode()


def until_near(port: int, slug: str) -> None:
    """Read ``slug`` until the near cache answers it (its doorkeeper admits a second read)."""
    for _ in range(50):
        (answer,) = exchange(port, get(slug))
        if b"detail=l1" in (answer.header(b"cache-status") or b""):
            return
        time.sleep(0.02)
    raise AssertionError(f"{slug} never answered from the near cache on port {port}")


def answers_counted(port: int, route: bytes) -> dict[bytes, float]:
    """The ``http_requests_total`` samples of ``route`` in the server's ``/metrics``."""
    (answer,) = exchange(port, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
    counted = {}
    for line in answer.body.splitlines():
        if line.startswith(b"http_requests_total{") and b'route="' + route + b'"' in line:
            labels, _, value = line.rpartition(b" ")
            counted[labels] = float(value)
    return counted


@pytest.fixture
async def two_servers(
    servers: Servers, app_on: AppOn, key_prefix: str
) -> AsyncIterator[tuple[Served, Served]]:
    async with app_with_articles(app_on, servers, *SLUGS, COLD):
        pass  # published; the servers below open apps of their own
    # Each its own keys, so that both see the same history (a miss on each).
    fast_settings = make_settings(servers, f"{key_prefix}-fast")
    plain_settings = make_settings(servers, f"{key_prefix}-plain")
    CountingProtocol.written = 0
    with (
        serving(fast_settings, CountingProtocol) as fast,
        serving(plain_settings, "httptools") as plain,
    ):
        for served in (fast, plain):
            for slug in SLUGS:
                until_near(served.port, slug)
        yield fast, plain


def both(
    pair: tuple[Served, Served], raw: bytes, answers: int = 1, *, closes: bool | None = None
) -> list[Answer]:
    """Ask both servers; check the answers agree; return the fast path's."""
    fast = exchange(pair[0].port, raw, answers, closes=closes)
    plain = exchange(pair[1].port, raw, answers, closes=closes)
    assert [a.compared() for a in fast] == [a.compared() for a in plain], raw
    return fast


def redis_reads(
    pair: tuple[Served, Served], raw: bytes, slug: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[Answer], list[int]]:
    """Ask each server in turn; return the answers and how many reads of ``slug``'s entry
    each took (the cache's reads of Redis, :meth:`cache.AutoPipeline.get`, counted)."""
    read_keys: list[str] = []
    get = AutoPipeline.get

    def counted_get(self: AutoPipeline, key: str) -> Any:
        read_keys.append(key)
        return get(self, key)

    monkeypatch.setattr(AutoPipeline, "get", counted_get)
    answers, reads = [], []
    for served in pair:
        entry_key = f"{served.app.state.settings.cache_prefix}:e:article:{slug}"
        before = read_keys.count(entry_key)
        answers += exchange(served.port, raw)
        reads.append(read_keys.count(entry_key) - before)
    monkeypatch.undo()
    return answers, reads


def answered_fast(
    pair: tuple[Served, Served],
    raw: bytes,
    answers: int = 1,
    *,
    near: bool = True,
    closes: bool | None = None,
) -> list[Answer]:
    """Ask both; check the fast path wrote every answer, from the near cache or from Redis."""
    before = CountingProtocol.written
    found = both(pair, raw, answers, closes=closes)
    assert CountingProtocol.written - before == answers, raw
    for answer in found:
        status = answer.header(b"cache-status") or b""
        assert status.startswith(b"content-service; hit;") and (b"detail=l1" in status) == near
    return found


async def test_near_hits_are_answered_fast_as_the_task_answers_them(
    two_servers: tuple[Served, Served],
) -> None:
    pair = two_servers
    (plain,) = answered_fast(pair, get("fast-a"))
    assert plain.status_line == b"HTTP/1.1 200 OK" and b'"fast-a"' in plain.body
    assert plain.header(b"x-request-id") and plain.header(b"server-timing")
    etag = plain.header(b"etag")
    assert etag is not None
    answered_fast(pair, get("fast-a", "Accept-Encoding: gzip"))
    answered_fast(pair, get("fast-a", "Accept-Encoding: br, gzip"))
    (not_modified,) = answered_fast(pair, get("fast-a", f"If-None-Match: {etag.decode()}"))
    assert not_modified.status_line == b"HTTP/1.1 304 Not Modified" and not not_modified.body
    (named,) = answered_fast(pair, get("fast-a", "X-Request-ID: trace-42"))
    assert named.header(b"x-request-id") == b"trace-42"
    assert named.headers[-1] == (b"x-request-id", b"trace-42")


async def test_a_hit_read_from_redis_is_answered_fast_and_a_miss_by_the_task(
    two_servers: tuple[Served, Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = two_servers
    before = CountingProtocol.written
    (miss, plain_miss), reads = redis_reads(pair, get(COLD), COLD, monkeypatch)
    assert miss.compared() == plain_miss.compared()
    assert miss.header(b"x-cache") == b"MISS" and CountingProtocol.written == before
    # The fast path's read is the endpoint's: a miss reads Redis once, as without it.
    assert reads == [1, 1], f"Redis reads of a miss (fast path, uvicorn's): {reads}"
    # The near cache keeps a key read twice: the second read is a hit from Redis.
    (redis_hit,) = answered_fast(pair, get(COLD, "X-Request-ID: cold-2"), near=False)
    assert redis_hit.header(b"x-cache") == b"HIT" and redis_hit.body == miss.body
    answered_fast(pair, get(COLD))
    # Pipelined: a miss (answered by its task) before a hit, and the order is kept.
    missing, hit = both(pair, get("no-such-article") + get(COLD), answers=2)
    assert missing.status_line == b"HTTP/1.1 404 Not Found" and b'"fast-cold"' in hit.body


async def test_connections_close_and_pipelined_requests_keep_their_order(
    two_servers: tuple[Served, Served],
) -> None:
    pair = two_servers
    (closing,) = answered_fast(pair, get("fast-a", "Connection: close"), closes=True)
    assert closing.header(b"connection") == b"close"
    answered_fast(pair, get("fast-a"), closes=False)
    (old,) = answered_fast(pair, get("fast-b", version="1.0"), closes=True)
    assert old.status_line.startswith(b"HTTP/1.1 200") and old.header(b"connection") == b"close"
    a, b = answered_fast(pair, get("fast-a") + get("fast-b"), answers=2)
    assert b'"fast-a"' in a.body and b'"fast-b"' in b.body
    # Behind a request that its task answers (a HEAD), a hit waits its turn.
    before = CountingProtocol.written
    head, hit = both(pair, get("fast-b", method="HEAD") + get("fast-a"), answers=2)
    assert head.status_line == b"HTTP/1.1 200 OK" and not head.body
    assert b'"fast-a"' in hit.body
    assert CountingProtocol.written - before == 1
    # A long pipeline of hits behind it: each answered, in order, none nested in another.
    slugs = [SLUGS[i % 2] for i in range(PIPELINED)]
    before = CountingProtocol.written
    head, *hits = both(
        pair,
        get("fast-b", method="HEAD") + b"".join(get(slug) for slug in slugs),
        answers=1 + PIPELINED,
    )
    answered = [f'"slug":"{slug}"'.encode() in a.body for a, slug in zip(hits, slugs, strict=True)]
    assert answered == [True] * PIPELINED
    assert CountingProtocol.written - before == PIPELINED


async def test_a_failing_fast_answer_leaves_the_request_to_its_task(
    two_servers: tuple[Served, Served],
) -> None:
    pair = two_servers

    def failing(scope: Any) -> None:
        raise RuntimeError("the fast answer broke")

    handler = KeptRecords()
    logger = logging.getLogger("service.fast_path")
    logger.addHandler(handler)
    pair[0].app.fast_answer = failing  # type: ignore[method-assign]
    before = CountingProtocol.written
    try:
        (answer,) = both(pair, get("fast-a"))
    finally:
        logger.removeHandler(handler)
    assert answer.status_line == b"HTTP/1.1 200 OK" and CountingProtocol.written == before
    (record,) = handler.records
    assert record.exc_info and "broke" in str(record.exc_info[1])


async def test_other_requests_go_to_the_task_and_every_answer_is_counted(
    two_servers: tuple[Served, Served],
) -> None:
    pair = two_servers
    route = b"/api/v1/articles/{slug}"
    counted = [answers_counted(served.port, route) for served in pair]
    before = CountingProtocol.written
    for raw in (
        get("fast-a", method="HEAD"),
        get("fast-a?fields=x"),
        get("no-such-article"),
        get("fast%00a"),
        get("fast-a/comments"),
        b"POST /api/v1/articles/fast-a HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n",
    ):
        both(pair, raw)
    assert CountingProtocol.written == before
    answered_fast(pair, get("fast-a") + get("fast-b", "If-None-Match: *"), answers=2)
    added = []
    for served, earlier in zip(pair, counted, strict=True):
        now = answers_counted(served.port, route)
        added.append({k: v - earlier.get(k, 0.0) for k, v in now.items() if v != earlier.get(k)})
    assert added[0] == added[1] and added[0], added
