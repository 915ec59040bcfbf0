"""Instances of ``content-service serve`` whose workers hold near caches (L1) over one Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.near.instances import Instance, running_instance
from tests.near.proxy import TcpProxy
from tests.servers import Servers

#: How late instance ``b``'s workers hear the messages of their subscriptions, seconds (their
#: commands are answered at once): ``b``'s holders learn of each write answered by ``a`` well
#: after the client that was answered can ask ``b`` again: the window in which a holder must
#: not answer from its near cache, which writers must wait out.
SUBSCRIPTION_DELAY_SECONDS = 0.03


@dataclass(frozen=True)
class Pair:
    """Two instances of two workers each, sharing the database, the Redis and a key prefix.

    ``a`` reaches Redis directly, ``b`` through a proxy that delays the messages of its
    subscriptions by :data:`SUBSCRIPTION_DELAY_SECONDS`.
    """

    a: Instance
    b: Instance
    prefix: str

    @property
    def instances(self) -> tuple[Instance, Instance]:
        return (self.a, self.b)


@contextmanager
def running_pair(servers: Servers, folder: Path, **env: str) -> Iterator[Pair]:
    """Run instances ``a`` and ``b`` (``serve --workers 2`` each) with ``env``; stop them after."""
    prefix = f"near-{uuid.uuid4().hex[:10]}"
    with ExitStack() as stack:
        proxy = stack.enter_context(
            TcpProxy.for_redis(servers.redis_url, SUBSCRIPTION_DELAY_SECONDS)
        )
        redis_urls = (servers.redis_url, proxy.url_of(servers.redis_url))
        a, b = (
            stack.enter_context(
                running_instance(
                    servers.database_url,
                    redis_url,
                    folder,
                    name,
                    prefix=prefix,
                    workers=2,
                    **env,
                )
            )
            for name, redis_url in zip(("a", "b"), redis_urls, strict=True)
        )
        yield Pair(a, b, prefix)


@pytest.fixture(scope="package")
def acknowledged(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Two instances whose near caches check their leases and writers wait for acknowledgements.

    The default mode (``CACHE_L1_LEASE_CHECK=true``); shared by the tests of the package.
    """
    with running_pair(servers, tmp_path_factory.mktemp("acknowledged")) as pair:
        yield pair


@pytest.fixture
def best_effort(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Two instances in best-effort mode (``CACHE_L1_LEASE_CHECK=false``), for the control run."""
    folder = tmp_path_factory.mktemp("best-effort")
    with running_pair(servers, folder, CACHE_L1_LEASE_CHECK="false") as pair:
        yield pair
