"""The service on Redis Sentinel: it reads and writes through the master, follows a failover
within seconds answering ``BYPASS`` meanwhile (never a 5xx), and never serves an entry that an
invalidation lost in the failover should have deleted.

Two apps ("workers", each with its own pool, breaker and outbox relay) share the run's database
and a private Sentinel group (:mod:`tests.sentinel.group`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from tests.apps import EDITOR, Api, AppOn
from tests.polling import eventually
from tests.sentinel.group import MASTER_NAME, SentinelGroup
from tests.servers import Servers, run_sql, truncate
from tests.service.served import serving

ARTICLES = 8
#: How long a read may take before the test counts it as hung, seconds.
READ_TIMEOUT_SECONDS = 5.0


def sentinel_settings(group: SentinelGroup, **overrides: Any) -> dict[str, Any]:
    """The settings of an app on ``group``: sentinel mode, default timeouts."""
    return {
        "redis_mode": "sentinel",
        "redis_sentinels": group.sentinel_addresses,
        "redis_sentinel_master": MASTER_NAME,
        **overrides,
    }


@asynccontextmanager
async def two_workers(
    app_on: AppOn, servers: Servers, group: SentinelGroup, **overrides: Any
) -> AsyncIterator[tuple[Api, Api]]:
    """Two apps on ``group`` with ``ARTICLES`` published articles ``a1``...; nothing cached.

    The outbox's kept rows are emptied after the setup, so that a replay applies only what
    the test wrote (the setup's ``TRUNCATE`` would purge everything).
    """
    await truncate(servers.database_url)
    settings = sentinel_settings(group, **overrides)
    # No REDIS_URL: an empty one is unset.
    async with (
        app_on(servers.database_url, "", **settings) as one,
        app_on(servers.database_url, "", **settings) as two,
    ):
        await one.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
        for n in range(1, ARTICLES + 1):
            await one.create(
                "/api/v1/articles",
                {"title": f"Title {n}", "slug": f"a{n}", "body": "b", "author": "ann",
                 "status": "published"},
            )  # fmt: skip
        await two.settle()
        await run_sql(servers.database_url, "TRUNCATE cache_outbox_applied")
        yield one, two


def replicated(group: SentinelGroup) -> None:
    """Wait until the replica has everything the master has (``WAIT``)."""
    with group.master.client() as master:
        assert master.wait(1, 5000) == 1, "the replica did not acknowledge"


@dataclass(frozen=True)
class Read:
    worker: int
    started: float  # time.monotonic()
    seconds: float
    slug: str
    outcome: str  # "200 HIT", ..., or the exception
    title: str | None


async def read(api: Api, worker: int, slug: str) -> Read:
    started = time.monotonic()
    try:
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            r = await api.client.get(f"/api/v1/articles/{slug}")
    except Exception as exc:
        return Read(worker, started, time.monotonic() - started, slug, repr(exc), None)
    title = r.json().get("title") if r.status_code == 200 else None
    outcome = f"{r.status_code} {r.headers.get('x-cache')}"
    return Read(worker, started, time.monotonic() - started, slug, outcome, title)


async def readers(
    workers: Sequence[Api], slugs: Sequence[str], stop: asyncio.Event, reads: list[Read]
) -> None:
    """Four loops per worker reading random ``slugs`` until ``stop`` is set."""

    async def loop(worker: int) -> None:
        while not stop.is_set():
            reads.append(await read(workers[worker], worker, random.choice(slugs)))
            await asyncio.sleep(0.005)

    await asyncio.gather(*(loop(w) for w in range(len(workers)) for _ in range(4)))


def first_hit_after(reads: Sequence[Read], moment: float, worker: int) -> float | None:
    """Seconds from ``moment`` to the start of ``worker``'s first HIT that began after it."""
    starts = [
        r.started for r in reads if r.worker == worker and r.started > moment and "HIT" in r.outcome
    ]
    return min(starts) - moment if starts else None


async def test_reads_and_writes_go_through_the_master_the_sentinels_name(
    app_on: AppOn, servers: Servers, sentinel_group: SentinelGroup
) -> None:
    async with two_workers(app_on, servers, sentinel_group) as (one, two):
        first = await one.client.get("/api/v1/articles/a1")
        again = await two.client.get("/api/v1/articles/a1")
        assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
        entry = one.state.keys.article.key("a1").redis_key
        with sentinel_group.master.client() as master:
            assert master.exists(entry) == 1, f"{entry} is not on the master"
        replicated(sentinel_group)
        with sentinel_group.replica.client() as replica:
            assert replica.exists(entry) == 1, f"{entry} did not reach the replica"

        w = await one.client.patch("/api/v1/articles/a1", json={"title": "New"}, headers=EDITOR)
        assert w.status_code == 200, w.text
        for api in (two, one, two):
            r = await api.client.get("/api/v1/articles/a1")
            assert (r.status_code, r.json()["title"]) == (200, "New"), r.text
        assert r.headers["x-cache"] == "HIT"
        ready = await one.client.get("/health/ready")
        assert ready.json()["redis"] == "ok", ready.text
        for api in (one, two):
            assert api.state.redis_breaker.allows() and api.state.redis_breaker.opened_count == 0
            assert api.state.unit_of_work.invalidation_failures == 0


async def test_serve_runs_its_workers_on_the_master_the_sentinels_name(
    servers: Servers, sentinel_group: SentinelGroup, tmp_path: Path
) -> None:
    """``content-service serve --workers 2`` with ``REDIS_MODE=sentinel`` and no ``REDIS_URL``."""
    await truncate(servers.database_url)
    await run_sql(
        servers.database_url, "INSERT INTO authors (username, display_name) VALUES ('ann', 'Ann')"
    )
    await run_sql(
        servers.database_url,
        "INSERT INTO articles (slug, title, body, body_format, author_id, status, published_at)"
        " SELECT 'served', 'Served', 'b', 'markdown', id, 'published', now() FROM authors",
    )
    environment = {
        "REDIS_MODE": "sentinel",
        "REDIS_SENTINELS": sentinel_group.sentinel_addresses,
        "REDIS_SENTINEL_MASTER": MASTER_NAME,
    }
    log = tmp_path / "serve.log"
    with serving(servers.database_url, "", log, "--workers", "2", **environment) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            states = []
            for _ in range(20):  # both workers answer some of them
                r = await client.get("/api/v1/articles/served")
                assert r.status_code == 200, (r.text, log.read_text()[-3000:])
                states.append(r.headers["x-cache"])
            ready = (await client.get("/health/ready")).json()
    assert states[0] == "MISS" and states[-1] == "HIT" and "BYPASS" not in states, states
    assert ready["redis"] == "ok", ready
    assert log.read_text().count("acknowledged after") == 2, "each worker acknowledges once"


async def test_a_killed_master_is_followed_within_seconds_answering_bypass_meanwhile(
    app_on: AppOn, servers: Servers, sentinel_group: SentinelGroup
) -> None:
    """SIGKILL of the master under concurrent reads of two workers, and a write meanwhile."""
    slugs = [f"a{n}" for n in range(1, ARTICLES + 1)]
    async with two_workers(app_on, servers, sentinel_group) as workers:
        for api in workers:
            for slug in slugs:
                assert (await api.client.get(f"/api/v1/articles/{slug}")).status_code == 200
        replicated(sentinel_group)
        reads: list[Read] = []
        stop = asyncio.Event()
        reading = asyncio.create_task(readers(workers, slugs, stop, reads))
        try:
            await asyncio.sleep(0.5)
            killed = time.monotonic()
            sentinel_group.master.kill()
            switch = asyncio.create_task(
                asyncio.to_thread(sentinel_group.wait_for_master, sentinel_group.replica.port)
            )
            await asyncio.sleep(0.3)
            w = await workers[0].client.patch(
                "/api/v1/articles/a1", json={"title": "Written during the failover"},
                headers=EDITOR,
            )  # fmt: skip
            written = time.monotonic()
            assert w.status_code == 200, w.text

            async def both_hit_again() -> bool:
                return all(first_hit_after(reads, written, w) is not None for w in (0, 1))

            await eventually(both_hit_again, 30, interval=0.05)
            switched = await switch
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            await reading

    tally = Counter(r.outcome for r in reads)
    after_kill = [r for r in reads if r.started >= killed]
    bypass = sum(r.outcome == "200 BYPASS" for r in after_kill)
    new_title = w.json()["title"]
    stale = [r for r in reads if r.slug == "a1" and r.started > written and r.title != new_title]
    hit_after = [first_hit_after(reads, killed, worker) for worker in (0, 1)]
    print(
        f"\n{len(reads)} reads: {dict(tally.most_common())}; after the kill: {len(after_kill)}"
        f" reads, {bypass} BYPASS; the sentinels named the replica {switched:.2f} s after the"
        f" kill; first HIT after the kill: worker 1 after"
        f" {hit_after[0]:.2f} s, worker 2 after {hit_after[1]:.2f} s; slowest read"
        f" {max(r.seconds for r in reads) * 1000:.0f} ms; the write took"
        f" {(written - killed - 0.3) * 1000:.0f} ms"
    )
    failed = [r for r in reads if r.outcome not in {"200 HIT", "200 MISS", "200 BYPASS"}]
    assert not failed, f"{len(failed)} reads failed, e.g. {failed[:5]}"
    assert bypass > 0, "no read bypassed the cache while the master was down"
    assert not stale, f"{len(stale)} reads after the write answered the old title: {stale[:3]}"
    assert max(h for h in hit_after if h is not None) < 15, hit_after


@dataclass(frozen=True)
class LostInvalidation:
    """What the readers saw after a failover to a replica that lacks a write's invalidation."""

    reads: list[Read]
    stale: list[Read]
    entry_left: bytes | None  # the entry on the new master after the readers stopped


def restore_keyspace(replica: Redis, snapshot: dict[bytes, tuple[int, bytes]], prefix: str) -> None:
    """Make ``replica``'s keys under ``prefix`` what ``snapshot`` holds (``DUMP`` and TTL).

    The replica then lacks every effect of what the master did since the snapshot, as a replica
    that replication had not caught up would.
    """
    replica.config_set("replica-read-only", "no")
    for key in list(replica.scan_iter(match=f"{prefix}:*", count=1000)):
        if key not in snapshot:
            replica.delete(key)
    for key, (pttl, dumped) in snapshot.items():
        replica.restore(key, max(pttl, 0), dumped, replace=True)


def dump_keyspace(master: Redis, prefix: str) -> dict[bytes, tuple[int, bytes]]:
    """Every key under ``prefix``: its TTL in milliseconds (0 for none) and its ``DUMP``."""
    snapshot = {}
    for key in master.scan_iter(match=f"{prefix}:*", count=1000):
        dumped, pttl = master.dump(key), master.pttl(key)
        if dumped is not None:
            snapshot[key] = (pttl if pttl > 0 else 0, dumped)
    return snapshot


async def lose_an_invalidation_then_fail_over(
    app_on: AppOn, servers: Servers, group: SentinelGroup, **overrides: Any
) -> LostInvalidation:
    """Cache ``a1``, change its title, give the replica the keys of before, fail over, read.

    Deterministic: the replica's keys under the app's prefix are replaced by a snapshot taken
    on the master before the write (``DUMP`` / ``RESTORE``), so the promoted replica holds the
    old entry, and the sequence and tag records of before, exactly as if replication had not
    carried the write's invalidations yet. ``SENTINEL FAILOVER`` then promotes it while the
    old master stays up (and a master) for a few seconds. Readers start once the sentinels
    name the new master, and the workers read ``a1`` in turn until each has answered from the
    cache 100 times since.
    """
    async with two_workers(app_on, servers, group, **overrides) as workers:
        one, two = workers
        prefix = one.state.settings.cache_prefix
        entry = one.state.keys.article.key("a1").redis_key
        assert (await one.client.get("/api/v1/articles/a1")).headers["x-cache"] == "MISS"
        assert (await two.client.get("/api/v1/articles/a1")).headers["x-cache"] == "HIT"
        replicated(group)
        with group.master.client() as master:
            snapshot = dump_keyspace(master, prefix)
        assert entry.encode() in snapshot

        w = await one.client.patch("/api/v1/articles/a1", json={"title": "New"}, headers=EDITOR)
        assert w.status_code == 200, w.text
        await one.settle()  # the outbox's copy of the invalidation too
        replicated(group)
        with group.replica.client() as replica:
            assert replica.get(entry) is None, "the invalidation did not reach the replica"
            restore_keyspace(replica, snapshot, prefix)
            stale_entry = replica.get(entry)
        assert stale_entry is not None and b'"title":"Title 1"' in stale_entry, stale_entry

        group.failover()
        await asyncio.to_thread(group.wait_for_master, group.replica.port)
        switched = time.monotonic()
        reads: list[Read] = []
        cached = [0, 0]
        deadline = time.monotonic() + 20
        while min(cached) < 100 and time.monotonic() < deadline:
            for worker in (0, 1):
                r = await read(workers[worker], worker, "a1")
                reads.append(r)
                cached[worker] += r.outcome == "200 HIT"
            await asyncio.sleep(0.005)
        with group.replica.client() as new_master:
            entry_left = new_master.get(entry)
    stale = [r for r in reads if r.title != "New"]
    tally = Counter((r.worker, r.outcome) for r in reads)
    hits = [first_hit_after(reads, switched, worker) for worker in (0, 1)]
    print(
        f"\n{len(reads)} reads of a1 after the failover: {dict(sorted(tally.items()))};"
        f" {len(stale)} answered the replaced title; first HIT after the switch: {hits}"
    )
    return LostInvalidation(reads, stale, entry_left)


async def test_an_invalidation_lost_in_a_failover_is_never_served(
    app_on: AppOn, servers: Servers, sentinel_group: SentinelGroup
) -> None:
    seen = await lose_an_invalidation_then_fail_over(app_on, servers, sentinel_group)
    failed = [r for r in seen.reads if not r.outcome.startswith("200")]
    assert not failed, failed[:5]
    assert not seen.stale, f"{len(seen.stale)} stale reads, e.g. {seen.stale[:3]}"
    assert sum(r.outcome == "200 HIT" for r in seen.reads) >= 200
    assert seen.entry_left is None or b'"title":"New"' in seen.entry_left, seen.entry_left


async def test_without_a_retention_period_the_lost_invalidation_would_be_served(
    app_on: AppOn, servers: Servers, sentinel_group: SentinelGroup
) -> None:
    """The control: the loss forced above is real. With no rows kept to apply again, the
    promoted replica's stale entry is served (so ``OUTBOX_RETENTION_SECONDS`` must not be 0).
    """
    seen = await lose_an_invalidation_then_fail_over(
        app_on, servers, sentinel_group, outbox_retention_seconds=0
    )
    assert seen.stale, "no stale read: the test no longer forces a lost invalidation"
    assert all(r.outcome == "200 HIT" for r in seen.stale), seen.stale[:3]
