"""A randomized run over two instances of two workers each: no read misses an acknowledged write.

Writers set the titles of four hot articles to increasing versions through either instance;
readers, on keep-alive connections to both instances (renewed, so that every worker serves),
read the items and the list page. After each acknowledged write, reads of the article are sent
at once through the other instance: the moment when a holder that has not dropped its copy yet
would answer what the write replaced. Instance ``b`` hears the bus 30 ms late (see
:mod:`tests.near.conftest`), so that moment lasts. For every read, each article's version must
be at least the last one acknowledged before the read was sent (:mod:`tests.consistency`).

Entries live a second in Redis and in the near caches, so the workers answer from L1 between
writes; writers rest now and then for longer, so that entries also expire and are served stale.

With leases checked and writes acknowledged (the default), no read may fail the check, and
every worker must have answered from its L1. The control run, the same with
``CACHE_L1_LEASE_CHECK=false`` (holders serve without a lease, writers do not wait), must fail
it, else the check could not tell; it stops once it has found :data:`CONTROL_VIOLATIONS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

from tests.near.conftest import Pair
from tests.near.instances import get_stats
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
#: the control run stops once it found this many violations (it must find some)
CONTROL_VIOLATIONS = 20


async def randomized_run(
    pair: Pair, operations: int, seed: int, stop_after_violations: int | None = None
) -> Traffic:
    """Run writers and readers over ``pair`` until ``operations`` are spent; return the run.

    With ``stop_after_violations``, it stops sooner once it found that many.
    """
    hot = await publish_hot(pair.a.url, HOT_ARTICLES)
    traffic = Traffic(hot, random.Random(seed), operations, stop_after_violations)
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


def l1_answers_by_worker(traffic: Traffic, pair: Pair) -> dict[str, dict[int, int]]:
    """Return the answers each worker gave from its L1 (``Cache-Status: ...; detail=l1``)."""
    return {
        i.name: {pid: traffic.answers[(i.name, pid, "HIT+l1")] for pid in i.pids}
        for i in pair.instances
    }


def near_figures(pair: Pair) -> dict[str, Any]:
    """Return what ``/stats`` says of the near caches: L1 hits, tiers, and each worker's row."""
    stats = get_stats(pair.a.url)
    l1 = stats["l1"]
    shown = ("entries", "invalidations", "fills_refused", "ack_waits", "lapsed_leases")
    return {
        "l1_hits": stats["cache"]["l1_hits"],
        "tiers": stats["cache"]["tiers"],
        "lease_check": l1["lease_check"],
        "workers": {
            (row["instance"], row["pid"]): {
                **{name: row[name] for name in shown},
                "lease_valid": row["lease_valid"],
            }
            for row in l1["workers"]
        },
    }


async def settled_l1_hits(pair: Pair) -> int:
    """Return ``/stats``'s ``l1_hits`` once two reads 0.3 s apart agree (every flush landed)."""
    last = -1

    async def unchanged() -> bool:
        nonlocal last
        hits = int((await asyncio.to_thread(get_stats, pair.a.url))["cache"]["l1_hits"])
        same, last = hits == last, hits
        return same

    await eventually(unchanged, 10, interval=0.3)
    return last


async def test_no_read_misses_an_acknowledged_write_with_near_caches_on_every_worker(
    acknowledged: Pair,
) -> None:
    l1_hits_before = await settled_l1_hits(acknowledged)
    started = time.monotonic()
    traffic = await randomized_run(acknowledged, OPERATIONS, seed=20261126)
    seconds = time.monotonic() - started
    figures = traffic.summary()
    print(f"\nacknowledged run, {seconds:.1f} s: {figures}")
    assert traffic.acked.violations == [], (traffic.acked.summary(), near_figures(acknowledged))
    assert traffic.failures == [], traffic.failures[:5]
    spent = traffic.counts["reads"] + traffic.counts["list reads"] + traffic.counts["chase reads"]
    assert spent + traffic.counts["writes"] >= OPERATIONS, figures
    # Expired entries were served stale too, so the stale paths ran.
    assert any(detail.startswith("STALE") for _, _, detail in traffic.answers), figures
    by_worker = l1_answers_by_worker(traffic, acknowledged)
    for instance in acknowledged.instances:
        answered = by_worker[instance.name]
        assert len(answered) == 2 and all(n > 0 for n in answered.values()), by_worker
    # The service counted the same L1 hits during the run (once every worker flushed them).
    l1_hits = sum(n for w in by_worker.values() for n in w.values())
    figures_l1: dict[str, Any] = {}

    async def counted() -> bool:
        figures_l1.update(await asyncio.to_thread(near_figures, acknowledged))
        return bool(figures_l1["l1_hits"] - l1_hits_before == l1_hits)

    with contextlib.suppress(AssertionError):
        await eventually(counted, 5, interval=0.2)
    print(f"L1 answers by worker: {by_worker}; /stats: {figures_l1}")
    assert figures_l1["l1_hits"] - l1_hits_before == l1_hits, (l1_hits_before, figures_l1)
    assert figures_l1["tiers"]["l1"]["hits"] == figures_l1["l1_hits"], figures_l1
    # Each worker lists its near cache, which applied the invalidations of the writes.
    assert figures_l1["lease_check"] is True, figures_l1
    rows = figures_l1["workers"]
    for instance in acknowledged.instances:
        for pid in instance.pids:
            row = rows[(instance.name, pid)]
            assert row["invalidations"] >= traffic.counts["writes"], (instance.name, pid, row)


async def test_best_effort_near_caches_answer_what_acknowledged_writes_replaced(
    best_effort: Pair,
) -> None:
    """The control: the same run, holders without leases and writers without waiting."""
    started = time.monotonic()
    traffic = await randomized_run(
        best_effort, OPERATIONS, seed=20261127, stop_after_violations=CONTROL_VIOLATIONS
    )
    seconds = time.monotonic() - started
    print(f"\nbest-effort run, {seconds:.1f} s: {traffic.summary()}")
    print(traffic.acked.summary())
    assert traffic.failures == [], traffic.failures[:5]
    assert near_figures(best_effort)["lease_check"] is False
    assert len(traffic.acked.violations) > 0, traffic.summary()
    assert all("+l1" in v.where for v in traffic.acked.violations), traffic.acked.summary(20)
