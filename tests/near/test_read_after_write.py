"""One client writes an article through instance ``a``, then reads it through ``b`` at once.

``b``'s workers hear the bus late (see :data:`tests.near.conftest.SUBSCRIPTION_DELAY_SECONDS`)
and hold the article in their L1 (read through ``b`` before each write). Each write is also
invalidated a second time by the outbox relay shortly after: an invalidation that may empty
the article's tag sets while its message is still on its way to ``b``, so that the next write
finds them empty. Every read sent after a write was answered must show that write's version.
"""

from __future__ import annotations

import httpx

from tests.apps import EDITOR
from tests.consistency import AcknowledgedVersions
from tests.near.conftest import Pair
from tests.near.traffic import cache_detail, publish_hot

ROUNDS = 40
#: reads through b before each write (they fill its L1), and right after it
READS_BEFORE, READS_AFTER = 3, 2


async def test_a_read_sent_after_a_write_was_answered_shows_it_on_the_other_instance(
    acknowledged: Pair,
) -> None:
    a, b = acknowledged.a, acknowledged.b
    hot = await publish_hot(a.url, 1)
    slug = hot.slugs[0]
    acked = AcknowledgedVersions(hot.slugs)
    after: list[str] = []
    async with (
        httpx.AsyncClient(base_url=a.url, headers=EDITOR, timeout=15) as writing,
        httpx.AsyncClient(base_url=b.url, timeout=15) as reading,
    ):
        for version in range(1, ROUNDS + 1):
            for _ in range(READS_BEFORE):
                assert (await reading.get(f"/api/v1/articles/{slug}")).status_code == 200
            w = await writing.patch(
                f"/api/v1/articles/{slug}", json={"title": f"{slug} v{version}"}
            )
            assert w.status_code == 200, w.text
            acked.acknowledge(slug, version)
            for _ in range(READS_AFTER):
                floors = acked.floors()
                r = await reading.get(f"/api/v1/articles/{slug}")
                assert r.status_code == 200, r.text
                after.append(cache_detail(r))
                acked.check(floors, slug, r.json()["title"], f"via b ({cache_detail(r)})")
    print(f"\nread after write: {acked.checked} reads, answered {sorted(set(after))}")
    assert acked.violations == [], acked.summary()
    assert acked.checked == ROUNDS * READS_AFTER
