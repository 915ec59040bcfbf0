from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.settings import Settings


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "API_TOKENS", "CACHE_TTLS", "CACHE_PREFIX"):
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
