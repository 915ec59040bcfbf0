from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.settings import Settings


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "API_TOKENS",
        "CACHE_TTLS",
        "CACHE_PREFIX",
        "REDIS_MODE",
        "REDIS_SENTINELS",
        "REDIS_SENTINEL_MASTER",
    ):
        monkeypatch.delenv(name, raising=False)


def test_malformed_tokens_fail_at_construction_without_echoing_them() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None, api_tokens="s3cret-value:boss")
    assert "s3cret-value" not in str(info.value)


def test_tokens_and_namespace_ttls_parse() -> None:
    s = Settings(
        _env_file=None, api_tokens="a:editor, b:admin", cache_ttls="article=600,articles=60"
    )
    assert s.tokens() == {"a": "editor", "b": "admin"}
    assert s.namespace_ttls() == {"article": 600.0, "articles": 60.0}
    with pytest.raises(ValidationError):
        Settings(_env_file=None, cache_ttls="article=soon")
    with pytest.raises(ValidationError):
        Settings(_env_file=None, cache_prefix="a:b")


def test_one_url_without_the_other_is_refused() -> None:
    with pytest.raises(ValidationError, match="both"):
        Settings(_env_file=None, redis_url="redis://127.0.0.1:6379/0")


def test_the_readme_configuration_table_is_the_one_settings_generate() -> None:
    from pathlib import Path

    from service.settings import Settings, configuration_table

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    start = readme.index("| variable | default | meaning |")
    end = readme.index("<!-- end of the generated table -->")
    assert readme[start:end] == configuration_table(), (
        "README's configuration table differs: regenerate it with `python -m service.settings`"
    )
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"


SENTINEL = {
    "database_url": "postgresql+asyncpg://postgres@127.0.0.1/content",
    "redis_mode": "sentinel",
    "redis_sentinels": "10.0.0.1:26379, [::1]:26380,sentinel-c:5000",
    "redis_sentinel_master": "content",
}


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({**SENTINEL, "redis_url": "redis://127.0.0.1:6379/0"}, "unset REDIS_URL"),
        ({**SENTINEL, "database_url": None}, "needs DATABASE_URL"),
        ({**SENTINEL, "redis_sentinel_master": " "}, "needs REDIS_SENTINEL_MASTER"),
        ({**SENTINEL, "redis_sentinels": ""}, "needs REDIS_SENTINELS"),
        ({**SENTINEL, "redis_sentinels": "10.0.0.1"}, "is not host:port"),
        ({**SENTINEL, "redis_sentinels": "10.0.0.1:0"}, "is not host:port"),
        ({**SENTINEL, "redis_sentinels": ":26379"}, "is not host:port"),
        ({**SENTINEL, "redis_mode": "replicated"}, "redis_mode"),
        ({"redis_mode": "cluster", "redis_url": "redis://10.0.0.1:7000"}, "both"),
        ({"redis_mode": "cluster", "database_url": "postgresql+asyncpg://h/d"}, "both"),
        ({"redis_mode": "cluster"}, "REDIS_MODE=cluster needs REDIS_URL"),
    ],
)
def test_redis_mode_settings_are_refused_when_incomplete(
    values: dict[str, object], error: str
) -> None:
    with pytest.raises(ValidationError, match=error):
        Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "addresses", "embedded"),
    [
        (SENTINEL, [("10.0.0.1", 26379), ("::1", 26380), ("sentinel-c", 5000)], False),
        (
            {**SENTINEL, "redis_mode": "SENTINEL", "redis_url": ""},
            [("10.0.0.1", 26379), ("::1", 26380), ("sentinel-c", 5000)],
            False,
        ),
        ({}, [], True),
    ],
)
def test_redis_mode_settings_parse(
    values: dict[str, object], addresses: list[tuple[str, int]], embedded: bool
) -> None:
    settings = Settings(_env_file=None, **values)  # type: ignore[arg-type]
    assert settings.sentinel_addresses() == addresses
    assert settings.is_embedded is embedded, settings
