"""Instances of ``content-service serve`` whose workers hold near caches (L1) over one Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.near.instances import Instance, running_instance
from tests.servers import Servers


@dataclass(frozen=True)
class Pair:
    """Two instances of two workers each, sharing the database, the Redis and a key prefix."""

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
        a, b = (
            stack.enter_context(
                running_instance(
                    servers.database_url,
                    servers.redis_url,
                    folder,
                    name,
                    prefix=prefix,
                    workers=2,
                    **env,
                )
            )
            for name in ("a", "b")
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
