"""Two replicas (``content-service serve --workers 2`` each) behind nginx, as compose runs them.

nginx runs deploy/nginx/nginx.conf (see ``tests.deploy.balancer``); both replicas share this
run's PostgreSQL and Redis and one ``CACHE_PREFIX``, and believe ``X-Forwarded-For`` from
127.0.0.1 (``TRUSTED_PROXIES``). The tests show that the client's address and request id pass
through; that a read whose replica dies with the request in hand is passed to the other one and
a write never is; and, in a randomized run, that no read through the balancer misses a write
acknowledged before it started, while one replica is killed halfway (SIGKILL, workers and all)
and no reader sees an error.

Without /usr/sbin/nginx the tests skip, unless ``CI_REQUIRE_NGINX`` is set: then they fail.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apps import EDITOR
from tests.deploy.balancer import AccessLine, Balancer, balancing, require_nginx
from tests.polling import eventually
from tests.servers import Servers
from tests.service.served import Served, kill_instance, requests_by_pid, serving

#: the read limit of the replicas: never reached, there to show whom each read is counted against
#: (a day's window, so that no window turns over during the test and the counts stay exact)
READ_QUOTA = 1_000_000
#: entries expire within milliseconds and are refreshed early, so that loads race writes
REPLICA_SETTINGS = {
    "API_TOKENS": "editor-token:editor",
    "TRUSTED_PROXIES": "127.0.0.1",
    "RATE_LIMIT_READS": f"{READ_QUOTA}/day",
    "CACHE_TTLS": "article=0.05,articles=0.05,tag=0.05",
    "CACHE_JITTER_RATIO": "0.5",
    "CACHE_STALE_WHILE_REVALIDATE_SECONDS": "0.2",
    "CACHE_EARLY_REFRESH_BETA": "5.0",
    "DB_POOL_SIZE": "5",
    "DB_MAX_OVERFLOW": "5",
}
VERSION = re.compile(r" v(\d+)$")
REMAINING = re.compile(r'"reads";r=(\d+)')

READS = 2_400
KILL_AFTER_READS = 1_000
READERS = 12


@dataclass(frozen=True)
class Replica:
    name: str
    served: Served
    metrics_dir: Path  # its PROMETHEUS_MULTIPROC_DIR: one sample file per worker

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.served.port}"


@dataclass(frozen=True)
class Replicas:
    a: Replica  # takes the writes of the randomized run directly; never killed
    b: Replica  # killed halfway through the randomized run (the last test of the module)


def wait_until_ready(url: str, timeout_seconds: float = 30) -> None:
    """Wait until ``url``'s ``/health/ready`` answers 200 (both workers' lifespans may lag)."""
    deadline = time.monotonic() + timeout_seconds
    with httpx.Client(base_url=url, timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                if client.get("/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"{url}/health/ready did not answer 200 within {timeout_seconds} s")


@pytest.fixture(scope="module")
def replicas(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    require_nginx()
    folder = tmp_path_factory.mktemp("replicas")
    prefix = f"balanced-{uuid.uuid4().hex[:10]}"
    with ExitStack() as stack:
        started = []
        for name in ("a", "b"):
            metrics_dir = folder / f"metrics-{name}"
            metrics_dir.mkdir()
            served = stack.enter_context(
                serving(
                    servers.database_url,
                    servers.redis_url,
                    folder / f"{name}.log",
                    "--workers", "2", "--access-log",
                    CACHE_PREFIX=prefix,
                    INSTANCE_NAME=name,
                    PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
                    **REPLICA_SETTINGS,
                )
            )  # fmt: skip
            started.append(Replica(name, served, metrics_dir))
        for replica in started:
            wait_until_ready(replica.served.url)
        yield Replicas(*started)


@pytest.fixture(scope="module")
def balancer(replicas: Replicas) -> Iterator[Balancer]:
    with balancing([replicas.a.address, replicas.b.address]) as running:
        yield running


@asynccontextmanager
async def client_from(address: str, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose connections come from ``address`` (any of 127.0.0.0/8 on Linux)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=10) as client:
        yield client


async def logged(balancer: Balancer, *request_ids: str) -> dict[str, AccessLine]:
    """Return nginx's access log lines of ``request_ids``, waiting for them (up to 5 s).

    nginx writes a line as its request ends, which may be after the client has the answer.
    """
    lines: dict[str, AccessLine] = {}

    async def all_present() -> bool:
        lines.update((x.request_id, x) for x in balancer.access_lines())
        return all(rid in lines for rid in request_ids)

    await eventually(all_present, 5)
    return {rid: lines[rid] for rid in request_ids}


async def remaining_reads(client: httpx.AsyncClient, **headers: str) -> tuple[int, str]:
    """GET a list; return the reads left to whoever it was counted against, and its request id."""
    r = await client.get("/api/v1/tags", headers=headers)
    assert r.status_code == 200, (r.status_code, r.text)
    match = REMAINING.search(r.headers["ratelimit"])
    assert match is not None, r.headers["ratelimit"]
    return int(match[1]), r.headers["x-request-id"]


async def test_the_client_address_and_request_id_pass_through_the_balancer(
    replicas: Replicas, balancer: Balancer
) -> None:
    async with (
        client_from("127.0.0.2", balancer.url) as two,
        client_from("127.0.0.3", balancer.url) as three,
    ):
        first = [await remaining_reads(two) for _ in range(4)]
        # A forged header is kept, and nginx appends the real peer: the service reads from the
        # right, so the forger is still counted as itself.
        forged = await remaining_reads(three, **{"X-Forwarded-For": "127.0.0.2"})
        fifth = await remaining_reads(two)
        traced = await two.get("/api/v1/tags", headers={"X-Request-ID": "balanced-trace-1"})
        untraced = await two.get("/api/v1/tags")

    counted = [n for n, _ in first]
    assert counted == [READ_QUOTA - n for n in (1, 2, 3, 4)], counted
    assert (forged[0], fifth[0]) == (READ_QUOTA - 1, READ_QUOTA - 5), (forged, fifth)
    generated = untraced.headers["x-request-id"]
    lines = await logged(balancer, *(rid for _, rid in first), "balanced-trace-1", generated)
    # Round robin: the four reads of 127.0.0.2 went to both replicas, and were counted as one
    # client's (the counters are in the shared Redis).
    assert {lines[rid].upstreams[-1] for _, rid in first} == {
        replicas.a.address,
        replicas.b.address,
    }, [lines[rid] for _, rid in first]
    assert {lines[rid].client for _, rid in first} == {"127.0.0.2"}

    # The client's X-Request-ID reaches the replica that answered and comes back; without one,
    # the replica gets nginx's, which nginx logged.
    assert traced.headers["x-request-id"] == "balanced-trace-1"
    by_address = {r.address: r for r in (replicas.a, replicas.b)}
    answered_by = by_address[lines["balanced-trace-1"].upstreams[-1]]

    async def in_replica_log() -> bool:
        return '"request_id": "balanced-trace-1"' in answered_by.served.log.read_text()

    await eventually(in_replica_log, 5)
    assert re.fullmatch(r"[0-9a-f]{32}", generated), generated


class DyingReplica:
    """A replica that takes each request whole, then dies with it: closes without an answer.

    Listens on a free port of 127.0.0.1 in a thread of its own; ``requests`` holds the method
    and ``X-Request-ID`` of every request it took, in order.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self.requests: list[tuple[str, str]] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> DyingReplica:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join()
        self._listener.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                self._take(connection)

    def _take(self, connection: socket.socket) -> None:
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            if not chunk:
                return
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = (line.split(":", 1) for line in lines[1:])
        headers = {name.strip().lower(): value.strip() for name, value in fields}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                break
            body += chunk
        self.requests.append((lines[0].split(" ", 1)[0], headers.get("x-request-id", "")))


@pytest.mark.parametrize(
    ("method", "passed_on"),
    [("GET", True), ("HEAD", True), ("POST", False), ("PATCH", False), ("DELETE", False)],
)
async def test_a_read_whose_replica_dies_is_passed_on_and_a_write_never_is(
    replicas: Replicas, method: str, passed_on: bool
) -> None:
    suffix = uuid.uuid4().hex[:8]
    slug, author = f"kept-{suffix}", f"writer-{suffix}"
    async with httpx.AsyncClient(base_url=replicas.a.served.url, headers=EDITOR) as direct:
        r = await direct.post("/api/v1/authors", json={"username": author, "display_name": "W"})
        assert r.status_code == 201, r.text
        article = {"title": "kept v0", "slug": slug, "body": "b", "author": author,
                   "status": "published"}  # fmt: skip
        r = await direct.post("/api/v1/articles", json=article)
        assert r.status_code == 201, r.text
        requests: dict[str, tuple[str, dict[str, Any] | None]] = {
            "GET": (f"/api/v1/articles/{slug}", None),
            "HEAD": (f"/api/v1/articles/{slug}", None),
            "POST": ("/api/v1/articles", {**article, "slug": f"new-{suffix}"}),
            "PATCH": (f"/api/v1/articles/{slug}", {"title": "kept v1"}),
            "DELETE": (f"/api/v1/articles/{slug}", None),
        }
        path, body = requests[method]
        request_id = f"dying-{method}-{suffix}"
        # nginx's round robin starts with the first server: the dying one.
        with DyingReplica() as dying, balancing([dying.address, replicas.a.address]) as balancer:
            async with httpx.AsyncClient(base_url=balancer.url, headers=EDITOR) as client:
                answer = await client.request(
                    method, path, json=body, headers={"X-Request-ID": request_id}
                )
            line = (await logged(balancer, request_id))[request_id]
        assert dying.requests == [(method, request_id)], dying.requests
        after = await direct.get(f"/api/v1/articles/{slug}")
        created = await direct.get(f"/api/v1/articles/new-{suffix}")

    if passed_on:
        assert line.upstreams == (dying.address, replicas.a.address), line
        assert answer.status_code == 200, (answer.status_code, answer.text)
        assert answer.headers["x-request-id"] == request_id
        return
    assert line.upstreams == (dying.address,), line
    assert answer.status_code == 502, (answer.status_code, answer.text)
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["status"] == 502
    # Nothing happened: no article was created, changed or deleted.
    assert (after.status_code, after.json()["title"], created.status_code) == (200, "kept v0", 404)


@dataclass
class Run:
    """What the randomized run counted and found."""

    reads: int = 0
    reads_after_kill: int = 0  # reads that started after replica b was killed
    writes: int = 0
    checked: int = 0  # versions compared with their floor (several per list read)
    violations: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # reads that got no 200


async def test_reads_through_the_balancer_never_miss_an_acknowledged_write_while_a_replica_dies(
    replicas: Replicas, balancer: Balancer
) -> None:
    """Writers PATCH through replica a; readers GET through nginx; replica b dies halfway.

    For every read, each title and tag name must be at least the version acknowledged before
    the read started; every read must be a 200 (nginx passes those that b drops to a).
    """
    started = time.monotonic()
    rng = random.Random(20261205)
    suffix = uuid.uuid4().hex[:8]
    tag, hot = f"news-{suffix}", [f"{name}-{suffix}" for name in ("alpha", "beta", "gamma")]
    acked = dict.fromkeys([*hot, tag], 0)
    run = Run()
    violations, failures = run.violations, run.failures
    killed: list[int] = []
    halfway, readers_done = asyncio.Event(), asyncio.Event()

    writer_client = httpx.AsyncClient(base_url=replicas.a.served.url, headers=EDITOR, timeout=10)
    reader_limits = httpx.Limits(max_connections=READERS)
    reader_client = httpx.AsyncClient(base_url=balancer.url, limits=reader_limits, timeout=10)
    async with writer_client, reader_client:
        r = await writer_client.post(
            "/api/v1/authors", json={"username": f"ann-{suffix}", "display_name": "Ann"}
        )
        assert r.status_code == 201, r.text
        r = await writer_client.post("/api/v1/tags", json={"slug": tag, "name": f"{tag} v0"})
        assert r.status_code == 201, r.text
        for slug in hot:
            r = await writer_client.post(
                "/api/v1/articles",
                json={"title": f"{slug} v0", "slug": slug, "body": "b", "author": f"ann-{suffix}",
                      "status": "published", "tags": [tag]},
            )  # fmt: skip
            assert r.status_code == 201, r.text

        def check(key: str, text: str, floor: int, where: str) -> None:
            match = VERSION.search(text)
            assert match is not None, (where, text)
            run.checked += 1
            if int(match[1]) < floor:
                violations.append(f"{where}: {text!r} read after v{floor} was acknowledged")

        def check_article(item: dict[str, Any], floors: dict[str, int], where: str) -> None:
            check(item["slug"], item["title"], floors[item["slug"]], where)
            names = [t["name"] for t in item["tags"] if t["slug"] == tag]
            assert len(names) == 1, (where, item["tags"])
            check(tag, names[0], floors[tag], f"{where} (tag)")

        async def writer(key: str) -> None:
            version = 0
            while not readers_done.is_set():
                version += 1
                if key == tag:
                    r = await writer_client.patch(
                        f"/api/v1/tags/{tag}", json={"name": f"{tag} v{version}"}
                    )
                else:
                    r = await writer_client.patch(
                        f"/api/v1/articles/{key}", json={"title": f"{key} v{version}"}
                    )
                assert r.status_code == 200, (key, r.status_code, r.text)
                acked[key] = max(acked[key], version)
                run.writes += 1
                await asyncio.sleep(rng.random() * 0.004)

        async def reader() -> None:
            while run.reads < READS:
                after_kill = bool(killed)
                floors = dict(acked)
                choice = rng.random()
                try:
                    if choice < 0.6:
                        slug = rng.choice(hot)
                        r = await reader_client.get(f"/api/v1/articles/{slug}")
                        if r.status_code == 200:
                            check_article(r.json(), floors, f"item {slug}")
                    elif choice < 0.85:
                        r = await reader_client.get(f"/api/v1/articles?tag={tag}&sort=title")
                        if r.status_code == 200:
                            items = r.json()["items"]
                            assert sorted(i["slug"] for i in items) == hot, items
                            for item in items:
                                check_article(item, floors, "list")
                    else:
                        r = await reader_client.get(f"/api/v1/tags/{tag}")
                        if r.status_code == 200:
                            check(tag, r.json()["name"], floors[tag], "tag")
                    if r.status_code != 200:
                        failures.append(f"{r.request.url.path}: {r.status_code} {r.text[:200]}")
                except httpx.TransportError as exc:
                    failures.append(f"transport error: {exc!r}")
                run.reads += 1
                run.reads_after_kill += after_kill
                if run.reads == KILL_AFTER_READS:
                    halfway.set()

        async def kill_b() -> None:
            await halfway.wait()
            killed.extend(await asyncio.to_thread(kill_instance, replicas.b.served))

        writers = [asyncio.create_task(writer(key)) for key in acked]
        await asyncio.gather(kill_b(), *(reader() for _ in range(READERS)))
        readers_done.set()
        await asyncio.gather(*writers)
        stats = (await writer_client.get("/stats")).json()["cache"]
    seconds = time.monotonic() - started

    # Who answered the reads, by nginx's log (the last replica tried answered) and by each
    # replica's workers (their own sample files; b's hold what it published before it died).
    def run_reads() -> list[AccessLine]:
        return [x for x in balancer.access_lines() if x.method == "GET" and suffix in x.target]

    async def all_logged() -> bool:  # nginx logs a request as it ends, maybe after the client
        return len(run_reads()) == run.reads

    await eventually(all_logged, 5)
    reads = run_reads()
    by_replica = Counter(x.upstreams[-1] for x in reads)
    passed_on = [x for x in reads if len(x.upstreams) > 1]
    workers = {
        r.name: requests_by_pid(r.metrics_dir, "/api/", method="GET")
        for r in (replicas.a, replicas.b)
    }
    print(
        f"\nbalanced run: {run.reads} reads ({run.reads_after_kill} after b was killed),"
        f" {run.writes} writes, {run.checked} versions checked, {len(violations)} violations,"
        f" {len(failures)} failed reads; nginx: {dict(by_replica)}, {len(passed_on)} passed on"
        f" to the other replica; reads by worker: {workers}; cache: {stats['misses']} misses,"
        f" {stats['stale']} stale, {stats['store_rejected']} stores rejected; {seconds:.1f} s"
    )
    assert violations == [], (len(violations), violations[:5])
    assert failures == [], (len(failures), failures[:5])
    assert run.reads >= 2_000 and run.reads_after_kill >= 1_000, run
    assert len(killed) >= 3 and replicas.b.served.process.poll() is not None, killed
    assert set(by_replica) == {replicas.a.address, replicas.b.address}, by_replica
    assert passed_on and all(
        x.upstreams == (replicas.b.address, replicas.a.address) for x in passed_on
    ), passed_on[:5]
    for name, per_worker in workers.items():
        assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), (name, workers)
