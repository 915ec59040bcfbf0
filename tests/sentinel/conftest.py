"""Fixtures of the Sentinel tests: a fresh group per test.

They need Debian's ``redis-server`` and ``redis-sentinel``; without them the tests skip, unless
``CI_REQUIRE_SENTINEL`` is set (as ``.ci/run`` does): then they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.sentinel.group import SentinelGroup, missing_binaries


@pytest.fixture
def sentinel_group() -> Iterator[SentinelGroup]:
    """A started master, replica and three sentinels; stopped after the test."""
    missing = missing_binaries()
    if missing:
        if os.environ.get("CI_REQUIRE_SENTINEL"):
            pytest.fail(f"CI_REQUIRE_SENTINEL is set but {', '.join(missing)} is not installed")
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install redis-sentinel)")
    group = SentinelGroup()
    try:
        group.start()
        yield group
    finally:
        group.stop()
