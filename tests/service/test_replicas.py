"""Replica names, and the ``/stats`` document's states and reasons, which must be the router's."""

from __future__ import annotations

from typing import get_args

import pytest

from service.operations_representations import ReplicaFigures, ReplicaSkips
from service.replicas import SKIP_REASONS, STATES, replica_name


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("postgresql+asyncpg://u:secret@db-r1:5433/content", "db-r1:5433/content"),
        ("postgresql+asyncpg://u@db-r2/content", "db-r2:5432/content"),
        ("postgresql+asyncpg://u@/content?host=/run/pg&port=6000", "/run/pg:6000/content"),
    ],
)
def test_a_replica_is_named_by_host_port_and_database_never_its_password(
    url: str, name: str
) -> None:
    assert replica_name(url) == name


def test_the_documented_states_and_skip_reasons_are_the_routers() -> None:
    documented = get_args(ReplicaFigures.model_fields["state"].annotation)
    assert documented == STATES, (documented, STATES)
    assert tuple(ReplicaSkips.model_fields) == SKIP_REASONS, (
        ReplicaSkips.model_fields,
        SKIP_REASONS,
    )
