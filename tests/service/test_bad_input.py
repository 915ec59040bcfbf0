from __future__ import annotations

from typing import Any

from tests.apps import EDITOR, Api


async def test_a_nul_character_in_input_is_a_400_not_an_outage(
    api: Api, content: dict[str, Any]
) -> None:
    for r in (
        await api.client.get("/api/v1/articles/a%00b"),
        await api.client.get("/api/v1/articles", params={"q": "a\x00b"}),
        await api.client.get("/api/v1/tags/a%00b"),
        await api.client.post("/api/v1/tags", json={"name": "bad\x00name"}, headers=EDITOR),
    ):
        assert r.status_code == 400, r.text
    assert api.state.database_breaker.allows()
