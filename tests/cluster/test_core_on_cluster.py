"""The core integration tests, run again on a Redis Cluster (see ``conftest.py``).

Reads (hit, miss, stale, negative entries), writes and their invalidations (items, lists,
counts, renames, a second instance), the outbox relay's tags, purges, statistics, warming
(hot keys, jobs), the near caches' acknowledged invalidation (over shard channels), and the
randomized consistency run with the forced stale set.
"""

from tests.faults.test_consistency import *  # noqa: F403
from tests.service.test_invalidation import *  # noqa: F403
from tests.service.test_near_service import *  # noqa: F403
from tests.service.test_outbox_tags import *  # noqa: F403
from tests.service.test_reads import *  # noqa: F403
from tests.service.test_stats import *  # noqa: F403
from tests.service.test_warming import *  # noqa: F403
from tests.service.test_writes import *  # noqa: F403

# It expects the pool bound of one server; on a cluster the bound is per node, which
# test_cluster_layout.py checks instead.
globals().pop("test_every_live_instance_is_listed_and_summed_then_leaves_at_once_on_shutdown")
