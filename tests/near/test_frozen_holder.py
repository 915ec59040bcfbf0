"""A holder frozen (SIGSTOP) for a second delays writes by at most its lease, and answers nothing
that an acknowledged write replaced once it runs again.

One worker of instance ``b`` is stopped while it holds the hot articles in its L1 and readers
have requests in its hands; writes go on through instance ``a``. A frozen holder acknowledges
nothing, so each write waits until its lease has surely lapsed (a bound of the lease and a
margin for this machine is checked, not the time measured), and writes answered while it is
frozen prove it. After SIGCONT the worker finds in its sockets both the requests sent while it
was frozen and the invalidations it missed; whichever it takes first, no answer may show a
version older than the last one acknowledged before its request was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time

import httpx

from tests.near.conftest import Pair
from tests.near.instances import WRITE_WAIT_BOUND_SECONDS
from tests.near.traffic import Connection, Traffic, publish_hot

#: reading connections to instance b (its two workers share them, as the kernel gives them out)
READERS = 8
FREEZE_SECONDS = 1.0
#: seconds of traffic before the freeze and after it
BEFORE_SECONDS, AFTER_SECONDS = 0.6, 1.5
#: seconds between one writer's writes: the hot articles stay cached near for a while between
#: them, so that the worker's answers from L1 before and after the freeze are seen
WRITE_PAUSE_SECONDS = 0.05


async def spread_connections(connections: list[Connection], frozen: int, slug: str) -> None:
    """Reconnect until the worker ``frozen`` and another one both hold some of ``connections``.

    Raises:
        AssertionError: they did not within 20 attempts.
    """
    for _ in range(20):
        for c in connections:
            r = await c.get(f"/api/v1/articles/{slug}")
            assert r.status_code == 200, r.text
        workers = {c.worker for c in connections}
        if frozen in workers and len(workers - {frozen, None}) > 0:
            return
        for c in connections:
            c.renew()
            await c.get(f"/api/v1/articles/{slug}")
    raise AssertionError(f"the connections reached workers {workers} only")


async def test_a_frozen_holder_delays_writes_by_at_most_its_lease_and_answers_no_replaced_version(
    acknowledged: Pair,
) -> None:
    a, b = acknowledged.a, acknowledged.b
    frozen = b.pids[0]
    hot = await publish_hot(a.url, 3)
    traffic = Traffic(hot, random.Random(20261129))
    # Connections that are never renewed during the run: those on the frozen worker stay there.
    connections = [Connection(b, renew_every=1_000_000) for _ in range(READERS)]
    writing = httpx.AsyncClient(base_url=a.url, timeout=15)
    going = True
    stopped = False
    try:
        await spread_connections(connections, frozen, hot.slugs[0])
        run = asyncio.gather(
            *(
                traffic.writer(slug, {a.name: writing}, lambda: going, WRITE_PAUSE_SECONDS)
                for slug in hot.slugs
            ),
            *(traffic.reader([c], lambda: going) for c in connections),
        )
        await asyncio.sleep(BEFORE_SECONDS)
        frozen_at = time.monotonic()
        os.kill(frozen, signal.SIGSTOP)
        stopped = True
        await asyncio.sleep(FREEZE_SECONDS)
        thawed_at = time.monotonic()
        os.kill(frozen, signal.SIGCONT)
        stopped = False
        await asyncio.sleep(AFTER_SECONDS)
        going = False
        await run
    finally:
        going = False
        if stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(frozen, signal.SIGCONT)
        await asyncio.gather(writing.aclose(), *(c.aclose() for c in connections))

    by_frozen = [r for r in traffic.reads if r.worker == frozen]
    held = [r for r in by_frozen if r.started < thawed_at < r.finished]
    l1_before = [r for r in by_frozen if r.finished < frozen_at and r.detail.endswith("+l1")]
    l1_after = [r for r in by_frozen if r.started > thawed_at and r.detail.endswith("+l1")]
    while_frozen = [w for w in traffic.writes if frozen_at < w.started and w.finished < thawed_at]
    longest = max(traffic.writes, key=lambda w: w.seconds)
    print(
        f"\nfrozen worker {frozen}: {traffic.summary()}; {len(while_frozen)} writes answered while"
        f" it was frozen (longest write {longest.seconds:.3f} s); {len(held)} reads it held"
        f" through the freeze; L1 answers before {len(l1_before)}, after {len(l1_after)}"
    )
    assert traffic.acked.violations == [], traffic.acked.summary()
    assert traffic.failures == [], traffic.failures[:5]
    assert longest.seconds <= WRITE_WAIT_BOUND_SECONDS, longest
    assert while_frozen, "no write was answered while the holder was frozen"
    assert held, "the frozen worker held no read through the freeze"
    assert l1_before and l1_after, (len(l1_before), len(l1_after))
