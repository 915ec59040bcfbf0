"""A randomized run over two instances of two workers each: no read misses an acknowledged write.

Writers set the titles of four hot articles to increasing versions through either instance;
readers, on keep-alive connections to both instances (renewed, so that every worker serves),
read the items and the list page. After each acknowledged write, two reads of the article are
sent at once through the other instance: the moment when a holder that has not dropped its
copy yet would answer what the write replaced. For every read, each article's version must be
at least the last one acknowledged before the read was sent (:mod:`tests.consistency`).

Entries live a second in Redis and in the near caches, so the workers answer from L1 between
writes; writers rest now and then for longer, so that entries also expire and are served stale.

With leases checked and writes acknowledged (the default), no read may fail the check, and
every worker must have answered from its L1. The control run, the same with
``CACHE_L1_LEASE_CHECK=false`` (holders serve without a lease, writers do not wait), must fail
it: else the check could not tell.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from tests.near.conftest import Pair
from tests.near.instances import Instance, get_stats, l1_hits_by_pid, l1_workers, listed_pids
from tests.near.traffic import (
    Connection,
    Traffic,
    close_all,
    connections_to,
    publish_hot,
    writing_clients,
)
from tests.polling import eventually

OPERATIONS = 10_000
HOT_ARTICLES = 4
#: reader tasks; each keeps a connection to each instance
READERS = 8
#: chase connections of each instance
CHASERS = 4


async def randomized_run(pair: Pair, operations: int, seed: int) -> Traffic:
    """Run writers and readers over ``pair`` until ``operations`` are spent; return the run."""
    hot = await publish_hot(pair.a.url, HOT_ARTICLES)
    traffic = Traffic(hot, random.Random(seed), budget=operations)
    readers = [[Connection(i) for i in pair.instances] for _ in range(READERS)]
    chasers = connections_to(pair.instances, CHASERS)
    clients = writing_clients(pair.instances)
    try:
        await asyncio.gather(
            *(
                traffic.writer(
                    slug,
                    clients,
                    lambda: True,
                    pause_seconds=0.01,
                    chasers=chasers,
                    rest_chance=0.01,
                    rest_seconds=1.6,
                )
                for slug in hot.slugs
            ),
            *(traffic.reader(connections, lambda: True) for connections in readers),
        )
    finally:
        await asyncio.gather(*(c.aclose() for cs in readers for c in cs))
        await close_all(chasers)
        await asyncio.gather(*(c.aclose() for c in clients.values()))
    return traffic


async def l1_hits_of_every_worker(instances: tuple[Instance, ...]) -> dict[str, dict[int, float]]:
    """Wait until every listed worker of ``instances`` has published L1 hits; return them by pid.

    Raises:
        AssertionError: some worker had published none within 5 s.
    """
    hits: dict[str, dict[int, float]] = {}

    async def all_hit() -> bool:
        stats = await asyncio.to_thread(get_stats, instances[0].url)
        for instance in instances:
            by_pid = l1_hits_by_pid(instance)
            hits[instance.name] = {p: by_pid.get(p, 0.0) for p in listed_pids(stats, instance.name)}
        return all(
            len(h) == i.workers and all(n > 0 for n in h.values())
            for i, h in zip(instances, hits.values(), strict=True)
        )

    try:
        await eventually(all_hit, 5, interval=0.2)
    except AssertionError:
        raise AssertionError(f"a worker answered no read from its L1: {hits}") from None
    return hits


def l1_figures(pair: Pair) -> dict[str, Any]:
    """Return ``/stats``'s L1 figures: the tiers and every worker's row, for a printout."""
    stats = get_stats(pair.a.url)
    rows = {i.name: l1_workers(stats, i.name) for i in pair.instances}
    return {"tiers": stats["cache"]["tiers"], "workers": rows}


async def test_no_read_misses_an_acknowledged_write_with_near_caches_on_every_worker(
    acknowledged: Pair,
) -> None:
    started = time.monotonic()
    traffic = await randomized_run(acknowledged, OPERATIONS, seed=20261126)
    seconds = time.monotonic() - started
    figures = traffic.summary()
    print(f"\nacknowledged run, {seconds:.1f} s: {figures}")
    assert traffic.acked.violations == [], (traffic.acked.summary(), l1_figures(acknowledged))
    assert traffic.failures == [], traffic.failures[:5]
    spent = traffic.counts["reads"] + traffic.counts["list reads"] + traffic.counts["chase reads"]
    assert spent + traffic.counts["writes"] >= OPERATIONS, figures
    # Expired entries were served stale too, so the stale paths ran.
    assert any(detail.startswith("STALE") for _, detail in traffic.answers), figures
    hits = await l1_hits_of_every_worker(acknowledged.instances)
    stats = l1_figures(acknowledged)
    print(f"L1 hits by worker: {hits}; /stats: {stats}")
    for instance in acknowledged.instances:
        assert traffic.answers[(instance.name, "HIT+l1")] > 0, figures
        rows = stats["workers"][instance.name]
        assert set(rows) == set(hits[instance.name]), (rows, hits)
    assert stats["tiers"]["l1"]["hits"] > 0, stats


async def test_best_effort_near_caches_answer_what_acknowledged_writes_replaced(
    best_effort: Pair,
) -> None:
    """The control: the same run, holders without leases and writers without waiting."""
    started = time.monotonic()
    traffic = await randomized_run(best_effort, OPERATIONS, seed=20261127)
    seconds = time.monotonic() - started
    print(f"\nbest-effort run, {seconds:.1f} s: {traffic.summary()}")
    print(traffic.acked.summary())
    assert traffic.failures == [], traffic.failures[:5]
    assert len(traffic.acked.violations) > 0, traffic.summary()
    assert all("+l1" in v.where for v in traffic.acked.violations), traffic.acked.summary(20)
