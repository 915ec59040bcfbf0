"""A holder cut off from Redis never answers what an acknowledged write replaced.

Instance ``c`` (one worker, one near cache) reaches Redis through a proxy the test controls.
Once ``c`` answers the hot articles from its L1, the proxy is cut (every connection closed,
new ones refused) or stalled (connections kept, nothing forwarded: requests get no answer),
while writes go on through instance ``a``, which reaches Redis directly. ``c`` cannot hear the
invalidations: it must stop answering from its L1 before any writer stops waiting for it, so
every read through ``c`` shows at least the version acknowledged before it was sent; and no
write waits for ``c`` longer than its lease (and a margin for this machine: a bound on the
wait, not a measure of it). Once the link is back, ``c`` answers from its L1 again.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.near.conftest import Pair
from tests.near.instances import WRITE_WAIT_BOUND_SECONDS, Instance, running_instance
from tests.near.proxy import TcpProxy
from tests.near.traffic import Connection, Hot, Traffic, publish_hot
from tests.polling import eventually
from tests.servers import Servers

#: reading connections to the cut holder
READERS = 4
#: seconds of each phase: the holder serving, cut off, and back
BEFORE_SECONDS, CUT_SECONDS, AFTER_SECONDS = 0.6, 2.0, 1.0


@dataclass(frozen=True)
class CutHolder:
    """Instance ``c`` and the proxy between it and Redis."""

    instance: Instance
    link: TcpProxy


@pytest.fixture
def cut_holder(
    servers: Servers, acknowledged: Pair, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CutHolder]:
    """Instance ``c`` (one worker) of ``acknowledged``'s group, its Redis through a proxy."""
    folder: Path = tmp_path_factory.mktemp("cut-holder")
    with (
        TcpProxy.for_redis(servers.redis_url) as link,
        running_instance(
            servers.database_url,
            link.url_of(servers.redis_url),
            folder,
            "c",
            prefix=acknowledged.prefix,
            workers=1,
        ) as instance,
    ):
        yield CutHolder(instance, link)


async def answered_from_l1(connection: Connection, hot: Hot) -> bool:
    """Read every hot item once through ``connection``; True if each came from the L1."""
    details = []
    for slug in hot.slugs:
        r = await connection.get(f"/api/v1/articles/{slug}")
        assert r.status_code == 200, r.text
        details.append("detail=l1" in r.headers["cache-status"])
    return all(details)


@pytest.mark.parametrize("failure", ["cut", "stall"])
async def test_a_holder_cut_from_redis_never_answers_a_replaced_version(
    acknowledged: Pair, cut_holder: CutHolder, failure: str
) -> None:
    holder, link = cut_holder.instance, cut_holder.link
    hot = await publish_hot(acknowledged.a.url, 3)
    traffic = Traffic(hot, random.Random(20261128))
    connections = [Connection(holder) for _ in range(READERS)]
    writing = httpx.AsyncClient(base_url=acknowledged.a.url, timeout=15)
    going = True
    try:
        await eventually(lambda: answered_from_l1(connections[0], hot), 5, interval=0.05)
        run = asyncio.gather(
            *(
                traffic.writer(slug, {acknowledged.a.name: writing}, lambda: going, 0.02)
                for slug in hot.slugs
            ),
            *(traffic.reader([c], lambda: going) for c in connections),
        )
        await asyncio.sleep(BEFORE_SECONDS)
        cut_at = time.monotonic()
        await asyncio.to_thread(link.cut if failure == "cut" else link.stall)
        await asyncio.sleep(CUT_SECONDS)
        restored_at = time.monotonic()
        await asyncio.to_thread(link.restore)
        await asyncio.sleep(AFTER_SECONDS)
        going = False
        await run
        # Back on its link, the holder answers from its L1 again.
        back = await eventually(lambda: answered_from_l1(connections[0], hot), 5, interval=0.05)
    finally:
        going = False
        await asyncio.gather(writing.aclose(), *(c.aclose() for c in connections))

    during = [w for w in traffic.writes if cut_at <= w.started < restored_at]
    reads_during = [r for r in traffic.reads if cut_at <= r.started < restored_at]
    l1_before = [r for r in traffic.reads if r.started < cut_at and r.detail.endswith("+l1")]
    print(
        f"\n{failure}: {traffic.summary()}; {len(during)} writes while cut off (longest"
        f" {max(w.seconds for w in during):.3f} s), {len(reads_during)} reads through the holder;"
        f" back on L1 {back:.2f} s after the run"
    )
    assert traffic.acked.violations == [], traffic.acked.summary()
    assert traffic.failures == [], traffic.failures[:5]
    assert l1_before, "the holder answered nothing from its L1 before it was cut off"
    assert during and reads_during, (len(during), len(reads_during))
    longest = max(traffic.writes, key=lambda w: w.seconds)
    assert longest.seconds <= WRITE_WAIT_BOUND_SECONDS, longest
