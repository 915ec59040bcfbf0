"""``DATABASE_REPLICA_URLS``: parsed into URLs, refused with a message that names no secret."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from service.settings import Settings

PRIMARY = {"database_url": "postgresql+asyncpg://u@db/content", "redis_url": "redis://r"}


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize(
    ("value", "urls"),
    [
        ("", []),
        (" , ", []),
        (
            "postgresql+asyncpg://u:pw@r1:5432/content",
            ["postgresql+asyncpg://u:pw@r1:5432/content"],
        ),
        (
            "postgresql+asyncpg://u@r1/content, postgresql+asyncpg://u@r2/content",
            ["postgresql+asyncpg://u@r1/content", "postgresql+asyncpg://u@r2/content"],
        ),
        (
            "postgresql+asyncpg://u@/content?host=/run/pg",
            ["postgresql+asyncpg://u@/content?host=/run/pg"],
        ),
    ],
)
def test_replica_urls_are_split_on_commas_in_order(value: str, urls: list[str]) -> None:
    assert settings(**PRIMARY, database_replica_urls=value).replica_urls() == urls


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not a url", "not a URL"),
        ("postgresql://u:hunter2@r1/content", "postgresql+asyncpg://"),
        ("postgresql+asyncpg:///content", "with a host"),
        ("postgresql+asyncpg://u@r1/c,postgresql+asyncpg://u@r1/c", "twice"),
    ],
)
def test_a_malformed_replica_list_is_refused_without_echoing_it(value: str, message: str) -> None:
    with pytest.raises(ValidationError) as error:
        settings(**PRIMARY, database_replica_urls=value)
    assert message in str(error.value) and "hunter2" not in str(error.value), str(error.value)


def test_replicas_need_a_primary_url() -> None:
    with pytest.raises(ValidationError, match="needs DATABASE_URL"):
        settings(
            database_url=None,
            redis_url=None,
            database_replica_urls="postgresql+asyncpg://u@r1/content",
        )
