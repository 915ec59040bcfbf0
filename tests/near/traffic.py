"""Writers and readers of hot articles through several instances, every read checked.

Writers set the titles of a few hot articles to increasing versions (``"<slug> v<n>"``),
each article by one writer at a time; readers read the items and the list page of the hot
articles' author. Every read is checked by :class:`tests.consistency.AcknowledgedVersions`
against the versions acknowledged before it was sent.

Readers use keep-alive connections, each renewed (``Connection: close`` on its last request)
every few dozen requests, so that over a run each lands on every worker of its instance (the
workers of one instance share its listening socket; the kernel gives each new connection to
one of them).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.apps import EDITOR
from tests.consistency import AcknowledgedVersions
from tests.near.instances import Instance
from tests.near.sockets import worker_of

#: requests a connection serves before the reader asks for a new one
RENEW_EVERY = 40
#: seconds any request may take, a frozen holder included
REQUEST_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Hot:
    """The hot articles of one run, all by one author of their own."""

    author: str
    slugs: tuple[str, ...]

    @property
    def list_path(self) -> str:
        """The list page that holds exactly the hot articles, by title."""
        return f"/api/v1/articles?author={self.author}&sort=title"


async def publish_hot(url: str, count: int) -> Hot:
    """Create an author and ``count`` published articles at version 0 through ``url``."""
    suffix = uuid.uuid4().hex[:8]
    hot = Hot(f"near-{suffix}", tuple(f"hot-{i}-{suffix}" for i in range(count)))
    async with httpx.AsyncClient(base_url=url, headers=EDITOR, timeout=10) as client:
        r = await client.post(
            "/api/v1/authors", json={"username": hot.author, "display_name": "Near"}
        )
        assert r.status_code == 201, r.text
        for slug in hot.slugs:
            r = await client.post(
                "/api/v1/articles",
                json={"title": f"{slug} v0", "slug": slug, "body": "b", "author": hot.author,
                      "status": "published"},
            )  # fmt: skip
            assert r.status_code == 201, r.text
    return hot


@dataclass(frozen=True)
class WriteTiming:
    """One answered write: through which instance, when it was sent and answered."""

    via: str
    slug: str
    version: int
    started: float  # time.monotonic() seconds
    finished: float

    @property
    def seconds(self) -> float:
        return self.finished - self.started


@dataclass(frozen=True)
class ReadTiming:
    """One answered read: through which instance, its cache state, when sent and answered."""

    via: str
    worker: int | None  # the pid that answered (None: not found)
    detail: str  # cache_detail() of the answer
    started: float  # time.monotonic() seconds
    finished: float


class Connection:
    """One keep-alive connection to ``instance`` at a time, renewed every ``renew_every``.

    Attributes:
        worker: the pid of the worker that answered the last request (None: not found).
    """

    def __init__(self, instance: Instance, renew_every: int = RENEW_EVERY) -> None:
        self.instance = instance
        self.renew_every = renew_every
        self.sent = 0
        self.worker: int | None = None
        self._client_port = 0
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.client = httpx.AsyncClient(
            base_url=instance.url, limits=limits, timeout=REQUEST_TIMEOUT_SECONDS
        )

    async def get(self, path: str) -> httpx.Response:
        """GET ``path``; the last request of each ``renew_every`` asks to close the connection.

        Sets :attr:`worker` to the worker that answered (looked up once per connection).
        """
        self.sent += 1
        last = self.sent % self.renew_every == 0
        r = await self.client.get(path, headers={"Connection": "close"} if last else None)
        if last:  # closed by now; answered by the worker of the requests before
            return r
        stream = r.extensions.get("network_stream")
        try:
            address = stream.get_extra_info("client_addr") if stream is not None else None
        except OSError:  # the server closed it (its keep-alive timeout)
            address = None
        port = int(address[1]) if address else 0
        if port != self._client_port:
            self._client_port = port
            self.worker = worker_of(self.instance.served.port, port, self.instance.pids)
        return r

    def renew(self) -> None:
        """Ask for a new connection: the next request closes this one after its answer."""
        self.sent += self.renew_every - 1 - self.sent % self.renew_every

    async def aclose(self) -> None:
        await self.client.aclose()


def cache_detail(response: httpx.Response) -> str:
    """Return ``X-Cache`` and, for an L1 answer, ``+l1`` (``"HIT+l1"``, ``"MISS"``...)."""
    l1 = "detail=l1" in response.headers.get("cache-status", "")
    return str(response.headers.get("x-cache", "-")) + ("+l1" if l1 else "")


@dataclass
class Traffic:
    """The writes, reads and checks of one run over the hot articles.

    Attributes:
        acked: the acknowledged versions and the violations found.
        budget: operations left (reads, chase reads and writes each spend one); None: no limit.
        stop_after_violations: the run stops once it found this many; None: never.
        counts: reads, list reads, chase reads, writes.
        answers: answers by instance, worker and cache state (``("a", 4321, "HIT+l1")``...).
        writes: every answered write.
        reads: every answered read (chase reads too).
        failures: requests not answered as expected (a status, a transport error).
    """

    hot: Hot
    rng: random.Random
    budget: int | None = None
    stop_after_violations: int | None = None
    acked: AcknowledgedVersions = field(init=False)
    counts: Counter[str] = field(default_factory=Counter)
    answers: Counter[tuple[str, int | None, str]] = field(default_factory=Counter)
    writes: list[WriteTiming] = field(default_factory=list)
    reads: list[ReadTiming] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _versions: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.acked = AcknowledgedVersions(self.hot.slugs)
        self._versions = dict.fromkeys(self.hot.slugs, 0)

    def spend(self) -> bool:
        """Take one operation from the budget; False once it is spent (or enough was found)."""
        found = len(self.acked.violations)
        if self.stop_after_violations is not None and found >= self.stop_after_violations:
            return False
        if self.budget is None:
            return True
        if self.budget <= 0:
            return False
        self.budget -= 1
        return True

    async def read(self, connection: Connection, list_share: float = 0.3) -> None:
        """Read one hot item (or the list page, with probability ``list_share``) and check it."""
        name = connection.instance.name
        floors = self.acked.floors()
        path = self.hot.list_path
        slug = None
        if self.rng.random() >= list_share:
            slug = self.rng.choice(self.hot.slugs)
            path = f"/api/v1/articles/{slug}"
        r = await self._get(connection, path, f"GET {path} via {name}")
        if r is None:
            return
        where = self._answered(connection, r, floors.taken_at)
        if slug is not None:
            self.counts["reads"] += 1
            self.acked.check(floors, slug, r.json()["title"], f"item {where}")
            return
        self.counts["list reads"] += 1
        items = r.json()["items"]
        assert sorted(i["slug"] for i in items) == sorted(self.hot.slugs), items
        for item in items:
            self.acked.check(floors, item["slug"], item["title"], f"list {where}")

    async def write(self, client: httpx.AsyncClient, via: str, slug: str) -> WriteTiming | None:
        """Set ``slug``'s title to its next version through ``client``; acknowledge it if answered.

        Returns:
            The write's timing; None when it was not answered 200 (counted in ``failures``).
        """
        self._versions[slug] += 1
        version = self._versions[slug]
        started = time.monotonic()
        try:
            r = await client.patch(
                f"/api/v1/articles/{slug}", json={"title": f"{slug} v{version}"}, headers=EDITOR
            )
        except httpx.TransportError as exc:
            self.failures.append(f"PATCH {slug} v{version} via {via}: {exc!r}")
            return None
        finished = time.monotonic()
        if r.status_code != 200:
            self.failures.append(f"PATCH {slug} v{version} via {via}: {r.status_code} {r.text}")
            return None
        self.acked.acknowledge(slug, version)
        self.counts["writes"] += 1
        timing = WriteTiming(via, slug, version, started, finished)
        self.writes.append(timing)
        return timing

    async def reader(
        self, connections: Sequence[Connection], going: Callable[[], bool], list_share: float = 0.3
    ) -> None:
        """Read through a connection drawn from ``connections`` each time, while ``going()``."""
        while going() and self.spend():
            await self.read(self.rng.choice(connections), list_share)

    async def writer(
        self,
        slug: str,
        clients: dict[str, httpx.AsyncClient],
        going: Callable[[], bool],
        pause_seconds: float,
        chasers: Mapping[str, Sequence[Connection]] | None = None,
        rest_chance: float = 0.0,
        rest_seconds: float = 0.0,
    ) -> None:
        """Write ``slug`` through a client drawn from ``clients`` (by instance) while ``going()``.

        Args:
            slug: the article this writer alone writes.
            clients: a writing client of each instance, by instance name.
            going: the writer stops once it is false (or the budget is spent).
            pause_seconds: the most it waits between writes (drawn uniformly).
            chasers: reading connections of each instance: after each acknowledgement, those of
                the other instances (than the write's) read ``slug`` at once, the moment a
                holder that has not yet dropped its copy would answer what the write replaced.
            rest_chance, rest_seconds: after a write, with probability ``rest_chance``, the
                writer rests ``rest_seconds`` instead (long enough, its article's entries
                expire and are served stale).
        """
        while going() and self.spend():
            via = self.rng.choice(sorted(clients))
            timing = await self.write(clients[via], via, slug)
            if timing is not None and chasers:
                others = [c for name, cs in chasers.items() if name != via for c in cs]
                await asyncio.gather(*(self._chase(c, slug) for c in others))
            if self.rng.random() < rest_chance:
                await asyncio.sleep(rest_seconds)
            else:
                await asyncio.sleep(self.rng.random() * pause_seconds)

    async def _get(self, connection: Connection, path: str, what: str) -> httpx.Response | None:
        """GET ``path``; a transport error or a status other than 200 is a failure (None)."""
        try:
            r = await connection.get(path)
        except httpx.TransportError as exc:
            self.failures.append(f"{what}: {exc!r}")
            return None
        if r.status_code != 200:
            self.failures.append(f"{what}: {r.status_code} {r.text[:200]}")
            return None
        return r

    async def _chase(self, connection: Connection, slug: str) -> None:
        if not self.spend():
            return
        name = connection.instance.name
        floors = self.acked.floors()
        r = await self._get(connection, f"/api/v1/articles/{slug}", f"chase {slug} via {name}")
        if r is None:
            return
        where = self._answered(connection, r, floors.taken_at)
        self.counts["chase reads"] += 1
        self.acked.check(floors, slug, r.json()["title"], f"chase {where}")

    def _answered(self, connection: Connection, response: httpx.Response, started: float) -> str:
        """Count the answer; return where it came from: instance, worker and cache state."""
        via, worker, detail = connection.instance.name, connection.worker, cache_detail(response)
        self.answers[(via, worker, detail)] += 1
        finished = time.monotonic()
        self.reads.append(ReadTiming(via, worker, detail, started, finished))
        request_id = response.headers.get("x-request-id")
        return (
            f"via {via} worker {worker} ({detail}, sent {started:.3f},"
            f" answered {finished:.3f}, id {request_id})"
        )

    def summary(self) -> dict[str, Any]:
        """Return the figures of the run for a test's printout."""
        durations = sorted(w.seconds for w in self.writes)
        return {
            **self.counts,
            "checked": self.acked.checked,
            "violations": len(self.acked.violations),
            "failures": len(self.failures),
            "answers": dict(sorted(self.answers.items())),
            "write_ms_median": round(durations[len(durations) // 2] * 1000, 1) if durations else 0,
            "write_ms_max": round(durations[-1] * 1000, 1) if durations else 0,
        }


def connections_to(instances: Sequence[Instance], each: int) -> dict[str, list[Connection]]:
    """Open ``each`` reading connections to every instance, by instance name."""
    return {i.name: [Connection(i) for _ in range(each)] for i in instances}


async def close_all(connections: dict[str, list[Connection]]) -> None:
    """Close every connection of :func:`connections_to`."""
    await asyncio.gather(*(c.aclose() for cs in connections.values() for c in cs))


def writing_clients(instances: Sequence[Instance]) -> dict[str, httpx.AsyncClient]:
    """A writing client of every instance, by instance name (the caller closes them)."""
    return {
        i.name: httpx.AsyncClient(base_url=i.url, timeout=REQUEST_TIMEOUT_SECONDS)
        for i in instances
    }
